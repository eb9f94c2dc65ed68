-- Returns units whose lease expired (the worker died or stalled) to the queue, or fails those
-- that have used their attempts (cleanup units never fail: unit_counts_attempts).
UPDATE ranges
SET state = CASE WHEN attempts >= $1 AND unit_counts_attempts(stage)
                 THEN 'failed'::range_state ELSE 'queued'::range_state END,
    last_error = 'lease expired: worker ' || coalesce(lease_owner, '?') || ' stopped heartbeating',
    lease_owner = NULL,
    lease_token = NULL,
    lease_expires_at = NULL,
    queued_at = now()
WHERE state = 'leased' AND lease_expires_at < now()
RETURNING file_id, range_index, state
