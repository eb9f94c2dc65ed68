-- Locks a file's row for an operator's retry: its state, and whether a retirement pass is
-- deleting (retiring_at) or has deleted (retired_at) its rows from the store.
SELECT state, retiring_at, retired_at FROM files WHERE file_id = $1 FOR UPDATE
