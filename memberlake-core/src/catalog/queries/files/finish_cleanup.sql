-- Versions whose every undo or retire unit is done: their rows are gone from the store.
UPDATE files
SET retired_at = now()
WHERE cleanup_total > 0 AND cleanup_done >= cleanup_total AND retired_at IS NULL
RETURNING file_id
