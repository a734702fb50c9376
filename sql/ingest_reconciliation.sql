-- Per raw file: lines read = rows ingested + lines quarantined, and the rows its bronze holds now.
WITH bronze AS (
    SELECT 'items/' || category AS key, count(*) AS rows_in_bronze FROM items GROUP BY category
    UNION ALL
    SELECT 'reviews/' || category AS key, count(*) AS rows_in_bronze FROM reviews GROUP BY category
)
SELECT
    f.key,
    f.lines_read,
    f.rows_ingested,
    f.lines_quarantined,
    coalesce(b.rows_in_bronze, 0) AS rows_in_bronze,
    f.lines_read = f.rows_ingested + f.lines_quarantined
        AND coalesce(b.rows_in_bronze, 0) = f.rows_ingested AS reconciles,
    f.file_errors
FROM ingest_files AS f
LEFT JOIN bronze AS b USING (key)
ORDER BY f.key;
