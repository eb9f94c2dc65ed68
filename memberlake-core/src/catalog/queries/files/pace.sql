-- Seconds since the file was split (until it finished) and its effective priority now
-- ($2..$5: the priority knobs, as in ranges/claim.sql).
SELECT extract(epoch FROM coalesce(f.finished_at, now()) - coalesce(f.split_at, f.registered_at))::float8
           AS elapsed_seconds,
       effective_priority(f.priority, a.weight, extract(epoch FROM now() - f.registered_at)::float8,
                          f.size_bytes, $2, $3, $4, $5) AS effective_priority
FROM files f
JOIN advertisers a ON a.advertiser_id = f.advertiser_id
WHERE f.file_id = $1
