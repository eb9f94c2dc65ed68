-- Locks a file's row for the rest of the transaction and returns its state.
SELECT state FROM files WHERE file_id = $1 FOR UPDATE
