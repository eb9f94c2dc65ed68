-- Queues $3 units of stage $2 (merge, undo, retire) of file $1, one per bucket; a unit left by
-- an earlier pass of the same stage is queued again.
INSERT INTO ranges (file_id, stage, range_index, start_offset, end_offset)
SELECT $1, $2, b, 0, 0 FROM generate_series(0, $3 - 1) b
ON CONFLICT (file_id, stage, range_index) DO UPDATE
SET state = 'queued', attempts = 0, lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
    last_error = NULL, queued_at = now(), finished_at = NULL, rows_written = 0
