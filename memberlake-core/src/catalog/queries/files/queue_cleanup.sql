-- $2 cleanup units (undo or retire) are queued for file $1; with none, its rows are gone
-- already (it never wrote any).
UPDATE files
SET cleanup_total = $2, cleanup_done = 0,
    retired_at = CASE WHEN $2 = 0 THEN now() ELSE NULL END
WHERE file_id = $1
