-- Gives a lease back. After a transient failure ($6 = true) the attempt counts: the unit is
-- queued again, or failed for good once it has used its attempts — except cleanup units (undo,
-- retire), which are retried without limit (unit_counts_attempts). A release at shutdown
-- ($6 = false) hands the attempt back.
UPDATE ranges
SET state = CASE WHEN $6 AND attempts >= $5 AND unit_counts_attempts(stage)
                 THEN 'failed'::range_state ELSE 'queued'::range_state END,
    attempts = CASE WHEN $6 THEN attempts ELSE greatest(attempts - 1, 0) END,
    lease_owner = NULL,
    lease_token = NULL,
    lease_expires_at = NULL,
    last_error = $4,
    queued_at = now()
WHERE file_id = $1 AND range_index = $2 AND lease_token = $3 AND state = 'leased'
RETURNING state
