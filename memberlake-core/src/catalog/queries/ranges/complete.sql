-- Marks an ingest range done, only while the caller still holds its lease (same token, still
-- leased), and its file is still ingesting (unit_is_live, as for claims and heartbeats); adds its
-- counts (rows, rejects, rows dropped as erased) to the file in the same statement.
WITH done AS (
    UPDATE ranges
    SET state = 'done',
        rows_ingested = $4,
        rows_rejected = $5,
        rejection_samples = $6,
        run_parts = $7,
        rejects_by_reason = $8,
        erased = $9,
        finished_at = now(),
        lease_expires_at = NULL,
        last_error = NULL
    WHERE file_id = $1 AND stage = 'ingest' AND range_index = $2 AND lease_token = $3 AND state = 'leased'
      AND EXISTS (SELECT 1 FROM files f WHERE f.file_id = $1 AND unit_is_live(ranges.stage, f.state))
    RETURNING file_id
)
UPDATE files f
SET ranges_done = f.ranges_done + 1,
    rows_ingested = f.rows_ingested + $4,
    rows_rejected = f.rows_rejected + $5,
    erased = f.erased + $9
FROM done
WHERE f.file_id = done.file_id
RETURNING f.file_id
