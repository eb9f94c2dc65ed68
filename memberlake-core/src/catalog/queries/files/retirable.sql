-- Versions whose rows may leave the store: superseded lists (ingested, not active) and failed
-- or cancelled ones, finished long enough ago ($1 seconds, > the lease TTL) that no worker
-- still holding a revoked lease can be writing their rows.
SELECT f.file_id, f.advertiser_id
FROM files f
JOIN advertisers a ON a.advertiser_id = f.advertiser_id
WHERE f.retired_at IS NULL
  AND f.finished_at < now() - make_interval(secs => $1)
  AND ((f.state = 'ingested' AND f.file_id IS DISTINCT FROM a.active_file_id)
       OR f.state IN ('failed', 'cancelled'))
ORDER BY f.file_id
