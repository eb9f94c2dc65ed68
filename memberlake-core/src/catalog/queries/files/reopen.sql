-- A retried file is ingesting again and no longer retired; when its rows had been retired
-- ($2), every range is redone, so its progress starts from zero.
UPDATE files
SET state = 'ingesting', failure_reason = NULL, finished_at = NULL, retired_at = NULL,
    ranges_done = CASE WHEN $2 THEN 0 ELSE ranges_done END,
    rows_ingested = CASE WHEN $2 THEN 0 ELSE rows_ingested END,
    rows_rejected = CASE WHEN $2 THEN 0 ELSE rows_rejected END
WHERE file_id = $1
