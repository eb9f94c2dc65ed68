-- Takes the role if it is free or expired, or renews it if we already hold this term.
-- A take bumps the term (the fencing token); a renewal keeps it.
INSERT INTO leader_leases AS l (role, holder, term, expires_at)
VALUES ($1, $2, nextval('leader_terms'), now() + make_interval(secs => $3))
ON CONFLICT (role) DO UPDATE
SET holder = EXCLUDED.holder,
    term = CASE WHEN l.holder = EXCLUDED.holder AND l.term = $4 THEN l.term ELSE EXCLUDED.term END,
    expires_at = EXCLUDED.expires_at,
    acquired_at = CASE WHEN l.holder = EXCLUDED.holder AND l.term = $4 THEN l.acquired_at ELSE now() END
WHERE l.expires_at < now() OR (l.holder = EXCLUDED.holder AND l.term = $4)
RETURNING term, expires_at
