-- Gives up a role if this term still holds it, so a standby can take over at once.
DELETE FROM leader_leases WHERE role = $1 AND term = $2
