-- A worker claims the most urgent queued work unit (any stage: ingest, merge, undo, retire) of
-- a file whose state lets that stage run (unit_is_live, migrations/postgres/0006) and that is
-- not paused.
--   $1 owner, $2 lease seconds,
--   $3 lane: largest file size this lane takes (NULL: any), $4 ... or files with priority >= $4,
--   $5 per-file cap on concurrent leases (<= 0: none),
--   $6..$9 effective-priority knobs (see effective_priority in the migrations),
--   $10 the worker's lake (files.bucket): a worker never claims a file of another lake, so a
--       replica started with a wrong MEMBERLAKE_LAKE_URL idles instead of failing good files.
-- SKIP LOCKED lets concurrent workers claim different units without waiting on each other.
-- Every claim draws a fresh lease token: completions and heartbeats must present it (fencing);
-- the token alone identifies the unit.
-- A merge unit also returns its version's bucket width and base (the version it is diffed
-- against, with that version's bucket width); a retire unit returns the successor whose diff
-- says what to retire, with its bucket width; a rollback's merge unit returns the version whose
-- manifest it restores, with its bucket width.
WITH candidate AS (
    SELECT r.file_id, r.stage, r.range_index
    FROM ranges r
    JOIN files f ON f.file_id = r.file_id
    JOIN advertisers a ON a.advertiser_id = f.advertiser_id
    WHERE r.state = 'queued'
      AND unit_is_live(r.stage, f.state)
      AND f.bucket = $10
      AND NOT f.paused
      AND ($3::BIGINT IS NULL OR f.size_bytes <= $3 OR f.priority >= $4)
      AND ($5 <= 0 OR (SELECT count(*) FROM ranges l WHERE l.file_id = f.file_id AND l.state = 'leased') < $5)
    ORDER BY effective_priority(f.priority, a.weight, extract(epoch FROM now() - f.registered_at)::float8,
                                f.size_bytes, $6, $7, $8, $9) DESC,
             f.file_id, r.stage, r.range_index
    LIMIT 1
    FOR UPDATE OF r SKIP LOCKED
)
UPDATE ranges r
SET state = 'leased',
    lease_owner = $1,
    lease_token = nextval('lease_tokens'),
    lease_expires_at = now() + make_interval(secs => $2),
    attempts = r.attempts + 1
FROM candidate c, files f
WHERE r.file_id = c.file_id AND r.stage = c.stage AND r.range_index = c.range_index AND f.file_id = r.file_id
RETURNING r.file_id, r.stage, r.range_index, r.start_offset, r.end_offset, r.lease_token, r.attempts,
          f.advertiser_id, f.bucket, f.object_key, f.etag, f.size_bytes, f.compression,
          f.bucket_bits, f.base_version,
          (SELECT b.bucket_bits FROM files b WHERE b.file_id = f.base_version) AS base_bucket_bits,
          f.superseded_by,
          (SELECT s.bucket_bits FROM files s WHERE s.file_id = f.superseded_by) AS successor_bucket_bits,
          f.rollback_of,
          (SELECT o.bucket_bits FROM files o WHERE o.file_id = f.rollback_of) AS rollback_bucket_bits
