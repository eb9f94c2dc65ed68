-- Gives a lease back after a transient failure: queued again, or failed for good once it has
-- used its attempts.
UPDATE ranges
SET state = CASE WHEN attempts >= $5 THEN 'failed'::range_state ELSE 'queued'::range_state END,
    lease_owner = NULL,
    lease_token = NULL,
    lease_expires_at = NULL,
    last_error = $4,
    queued_at = now()
WHERE file_id = $1 AND range_index = $2 AND lease_token = $3 AND state = 'leased'
RETURNING state::text
