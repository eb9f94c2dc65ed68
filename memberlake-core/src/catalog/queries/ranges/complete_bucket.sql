-- Marks a merge unit (one hash bucket) done while the caller still holds its lease and the file
-- is still merging (unit_is_live); adds the bucket's members, difference, store rows and erased
-- hashes dropped to the file.
WITH done AS (
    UPDATE ranges
    SET state = 'done',
        members = $4,
        added = $5,
        removed = $6,
        rows_written = $7,
        erased = $8,
        finished_at = now(),
        lease_expires_at = NULL,
        last_error = NULL
    WHERE file_id = $1 AND stage = 'merge' AND range_index = $2 AND lease_token = $3 AND state = 'leased'
      AND EXISTS (SELECT 1 FROM files f WHERE f.file_id = $1 AND unit_is_live(ranges.stage, f.state))
    RETURNING file_id
)
UPDATE files f
SET buckets_done = f.buckets_done + 1,
    members = coalesce(f.members, 0) + $4,
    added = f.added + $5,
    removed = f.removed + $6,
    rows_written = f.rows_written + $7,
    erased = f.erased + $8
FROM done
WHERE f.file_id = done.file_id
RETURNING f.file_id
