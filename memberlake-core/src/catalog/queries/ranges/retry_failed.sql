-- An operator retries a file: its failed ingest ranges are queued again with fresh attempts.
UPDATE ranges
SET state = 'queued', attempts = 0, lease_token = NULL, lease_owner = NULL,
    lease_expires_at = NULL, queued_at = now()
WHERE file_id = $1 AND stage = 'ingest' AND state = 'failed'
