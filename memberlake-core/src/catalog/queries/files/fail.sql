-- Ends a file that is still in flight as $2 ('failed' or 'cancelled'); it never activates.
UPDATE files
SET state = $2, failure_reason = $3, finished_at = now()
WHERE file_id = $1 AND file_in_flight(state)
