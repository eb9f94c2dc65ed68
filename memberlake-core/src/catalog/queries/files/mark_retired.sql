-- These finished versions' rows are gone from the store.
UPDATE files
SET retired_at = now()
WHERE file_id = ANY($1) AND state IN ('ingested', 'failed', 'cancelled')
