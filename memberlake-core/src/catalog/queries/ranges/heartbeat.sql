-- Extends a lease the caller still holds, while its file's state lets the unit's stage run (a
-- cancelled or failed file revokes its ingest and merge leases: the heartbeat then finds
-- nothing and the worker stops).
UPDATE ranges r
SET lease_expires_at = now() + make_interval(secs => $4)
FROM files f
WHERE r.file_id = $1 AND r.range_index = $2 AND r.lease_token = $3 AND r.state = 'leased'
  AND f.file_id = r.file_id AND unit_is_live(r.stage, f.state)
RETURNING r.lease_expires_at
