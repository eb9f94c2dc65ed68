-- Locks a file's row for an operator's retry: its state, whether a retirement pass is deleting
-- (retiring_at) or has deleted (retired_at) its rows from the store, and how it stores them
-- (a change-format version that started merging, merged_at, may have written rows: they must
-- be undone first), and whether its work objects passed their retention (manifest_expired_at).
SELECT state, retiring_at, retired_at, store_format, merged_at, manifest_expired_at FROM files WHERE file_id = $1 FOR UPDATE
