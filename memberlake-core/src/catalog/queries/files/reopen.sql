-- A retried file is ingesting again; its rows may have been retired meanwhile, so it is no
-- longer retired either.
UPDATE files
SET state = 'ingesting', failure_reason = NULL, finished_at = NULL, retired_at = NULL
WHERE file_id = $1
