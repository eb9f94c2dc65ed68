-- A failed or cancelled file's outstanding ranges fail and their leases are revoked:
-- heartbeats and completions of those leases now find nothing, so their workers stop.
UPDATE ranges
SET state = 'failed', lease_token = NULL, lease_expires_at = NULL
WHERE file_id = $1 AND state IN ('queued', 'leased')
