-- Locks a file's row before a unit completion updates its unit's row and then the file: every
-- transaction that touches both takes the file's row first (operators' cancel and reject, the
-- leader's supersede and fail, through end_file_in), so that none can wait on the other in
-- the opposite order (a deadlock Postgres breaks by aborting one of them).
SELECT 1 FROM files WHERE file_id = $1 FOR NO KEY UPDATE
