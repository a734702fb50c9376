-- Items' rating_number per category: quantiles, share under 10 and over 10,000.
SELECT
    category,
    count(*) AS items,
    quantile_cont(rating_number, 0.10) AS p10,
    quantile_cont(rating_number, 0.50) AS median,
    quantile_cont(rating_number, 0.90) AS p90,
    quantile_cont(rating_number, 0.99) AS p99,
    max(rating_number) AS max,
    round(avg((rating_number < 10)::INT), 4) AS share_under_10,
    count(*) FILTER (WHERE rating_number > 10000) AS items_over_10000
FROM items
GROUP BY category
ORDER BY category;
