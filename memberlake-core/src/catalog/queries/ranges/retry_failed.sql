-- An operator retries a file: its failed ranges are queued again with fresh attempts — and,
-- when the file's rows were retired from the store ($2), every range, since the rows of its done
-- ranges are gone too.
UPDATE ranges
SET state = 'queued', attempts = 0, lease_token = NULL, lease_owner = NULL,
    lease_expires_at = NULL, queued_at = now(),
    rows_ingested = CASE WHEN $2 THEN 0 ELSE rows_ingested END,
    rows_rejected = CASE WHEN $2 THEN 0 ELSE rows_rejected END,
    rejection_samples = CASE WHEN $2 THEN '[]'::jsonb ELSE rejection_samples END,
    finished_at = CASE WHEN $2 THEN NULL ELSE finished_at END
WHERE file_id = $1 AND (state = 'failed' OR $2)
