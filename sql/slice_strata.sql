-- Splits of the silver items: items per split and main category, with the share of each split.
SELECT
    main_category,
    split,
    count(*) AS items,
    round(count(*) / sum(count(*)) OVER (PARTITION BY main_category), 3) AS share
FROM (
    SELECT s.split, coalesce(nullif(i.main_category, ''), '(none)') AS main_category
    FROM splits AS s
    JOIN silver_items AS i USING (parent_asin)
)
GROUP BY main_category, split
ORDER BY main_category, split;
