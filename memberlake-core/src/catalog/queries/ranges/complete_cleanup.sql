-- Marks an undo or retire unit done while the caller still holds its lease; adds the rows it
-- deleted to the file.
WITH done AS (
    UPDATE ranges
    SET state = 'done', rows_written = $4, finished_at = now(), lease_expires_at = NULL, last_error = NULL
    WHERE file_id = $1 AND stage IN ('undo', 'retire') AND range_index = $2 AND lease_token = $3
      AND state = 'leased'
      AND EXISTS (SELECT 1 FROM files f WHERE f.file_id = $1 AND unit_is_live(ranges.stage, f.state))
    RETURNING file_id
)
UPDATE files f
SET cleanup_done = f.cleanup_done + 1, rows_deleted = f.rows_deleted + $4
FROM done
WHERE f.file_id = done.file_id
RETURNING f.file_id
