-- An advertiser's list lifespan in seconds ($2; NULL: unlimited); creates the row if needed.
-- Returns when the active list stops (or stopped) matching under it, if it has one.
WITH set AS (
    INSERT INTO advertisers (advertiser_id, lifespan) VALUES ($1, make_interval(secs => $2))
    ON CONFLICT (advertiser_id) DO UPDATE SET lifespan = EXCLUDED.lifespan
    RETURNING active_file_id, lifespan
)
SELECT f.last_modified + s.lifespan AS expires_at
FROM set s
LEFT JOIN files f ON f.file_id = s.active_file_id
