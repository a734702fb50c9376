-- Silver items: rejected item lines per cleaning rule and category (see `curate clean`).
SELECT rule, category, count(*) AS rejected, any_value(reason) AS reason
FROM rejections
GROUP BY rule, category
ORDER BY rule, category;
