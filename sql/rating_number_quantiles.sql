-- Items' rating_number per category: quantiles, share under 10 and over 10,000.
SELECT
    category,
    count(*) AS items,
    round(quantile_cont(rating_number, 0.10), 1) AS p10,
    round(quantile_cont(rating_number, 0.50), 1) AS median,
    round(quantile_cont(rating_number, 0.90), 1) AS p90,
    round(quantile_cont(rating_number, 0.99), 1) AS p99,
    max(rating_number) AS max,
    round(avg((rating_number < 10)::INT), 4) AS share_under_10,
    count(*) FILTER (WHERE rating_number > 10000) AS items_over_10000
FROM items
GROUP BY category
ORDER BY category;
