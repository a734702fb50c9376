-- Reviews whose item (parent_asin) has no metadata line, per category.
SELECT
    r.category,
    count(*) AS orphan_reviews,
    count(DISTINCT r.parent_asin) AS orphan_items,
    round(count(*) / any_value(t.reviews), 4) AS share_of_reviews
FROM reviews AS r
ANTI JOIN items AS i ON i.parent_asin = r.parent_asin
JOIN (SELECT category, count(*) AS reviews FROM reviews GROUP BY category) AS t
    ON t.category = r.category
GROUP BY r.category
ORDER BY r.category;
