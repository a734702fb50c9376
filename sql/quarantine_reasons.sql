-- Why lines were quarantined: count per file kind and reason, with one example line.
SELECT
    kind,
    reason,
    scope,
    count(*) AS lines,
    count(DISTINCT category) AS categories,
    any_value(left(raw_text, 80)) AS example
FROM quarantine
GROUP BY kind, reason, scope
ORDER BY kind, lines DESC;
