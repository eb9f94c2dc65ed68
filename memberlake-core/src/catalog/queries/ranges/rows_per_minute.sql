-- Rows ingested per minute over the last $1 minutes, oldest first (every minute listed).
SELECT m AS minute, coalesce(sum(r.rows_ingested), 0)::bigint AS rows
FROM generate_series(date_trunc('minute', now()) - make_interval(mins => $1 - 1),
                     date_trunc('minute', now()), interval '1 minute') m
LEFT JOIN ranges r ON r.finished_at >= m AND r.finished_at < m + interval '1 minute'
GROUP BY m
ORDER BY m
