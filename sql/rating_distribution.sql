-- Star ratings of the reviews per category: count and share of each star.
SELECT
    category,
    rating,
    count(*) AS reviews,
    round(count(*) / sum(count(*)) OVER (PARTITION BY category), 4) AS share
FROM reviews
WHERE rating IS NOT NULL
GROUP BY category, rating
ORDER BY category, rating;
