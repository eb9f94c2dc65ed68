-- Advertisers with a lifespan: each one's lifespan in seconds and, when it has an active list,
-- when that list stops (or stopped) matching. For the status views, the CLI and the leader's
-- expiry gauges; one row per advertiser with a lifespan (few).
SELECT a.advertiser_id,
       extract(epoch FROM a.lifespan)::double precision AS lifespan_secs,
       f.last_modified + a.lifespan AS expires_at
FROM advertisers a
LEFT JOIN files f ON f.file_id = a.active_file_id
WHERE a.lifespan IS NOT NULL
ORDER BY a.advertiser_id
