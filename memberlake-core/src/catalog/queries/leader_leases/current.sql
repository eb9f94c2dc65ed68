-- The live holder of a role, if any.
SELECT holder, term, expires_at FROM leader_leases WHERE role = $1 AND expires_at > now()
