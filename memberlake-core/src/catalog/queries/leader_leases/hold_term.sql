-- The fence of every leader transaction: this term still holds the role. FOR SHARE keeps the
-- term from changing hands until the transaction ends.
SELECT term
FROM leader_leases
WHERE role = $1 AND term = $2 AND expires_at > now()
FOR SHARE
