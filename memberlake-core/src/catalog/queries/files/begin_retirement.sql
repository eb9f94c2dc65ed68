-- A legacy retirement pass (versions ingested before change-proportional versions, with rows
-- in `memberships`) takes the versions whose rows may leave the store: superseded lists
-- (ingested, not active) and failed or cancelled ones, finished long enough ago ($1 seconds,
-- > the lease TTL) that no worker still holding a revoked lease can be writing their rows.
-- Marking them retiring (under the row locks of this statement) fences operators' retries until
-- finish_retirement.sql records them retired. A pass that died is simply taken again.
UPDATE files f
SET retiring_at = now()
FROM advertisers a
WHERE a.advertiser_id = f.advertiser_id
  AND f.store_format = 'rows'
  AND f.retired_at IS NULL
  AND f.finished_at < now() - make_interval(secs => $1)
  AND ((f.state = 'ingested' AND f.file_id IS DISTINCT FROM a.active_file_id)
       OR f.state IN ('failed', 'cancelled'))
RETURNING f.file_id, f.advertiser_id
