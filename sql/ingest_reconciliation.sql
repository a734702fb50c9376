-- Per raw file: lines read = rows ingested + lines quarantined, and file-level errors.
SELECT
    key,
    lines_read,
    rows_ingested,
    lines_quarantined,
    lines_read = rows_ingested + lines_quarantined AS reconciles,
    file_errors
FROM ingest_files
ORDER BY key;
