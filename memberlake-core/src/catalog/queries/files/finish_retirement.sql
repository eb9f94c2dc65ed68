-- These versions' rows are gone from the store. Only versions a pass took (retiring) are
-- recorded: nothing can have reopened them meanwhile (retries are refused while retiring).
UPDATE files
SET retired_at = now(), retiring_at = NULL
WHERE file_id = ANY($1) AND retiring_at IS NOT NULL
