-- A failed or cancelled file's outstanding ingest and merge units fail and their leases are
-- revoked: heartbeats and completions of those leases now find nothing, so their workers stop.
-- (Its undo units come later, and are never revoked.)
UPDATE ranges
SET state = 'failed', lease_token = NULL, lease_expires_at = NULL
WHERE file_id = $1 AND stage IN ('ingest', 'merge') AND state IN ('queued', 'leased')
