-- Returns ranges whose lease expired (the worker died or stalled) to the queue, or fails them
-- once they have used their attempts.
UPDATE ranges
SET state = CASE WHEN attempts >= $1 THEN 'failed'::range_state ELSE 'queued'::range_state END,
    last_error = 'lease expired: worker ' || coalesce(lease_owner, '?') || ' stopped heartbeating',
    lease_owner = NULL,
    lease_token = NULL,
    lease_expires_at = NULL,
    queued_at = now()
WHERE state = 'leased' AND lease_expires_at < now()
RETURNING file_id, range_index, state
