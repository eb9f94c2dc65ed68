-- Records an erasure of hash $1 requested by $2, once: a repeated request returns the existing
-- row (an erasure is idempotent). Returns the row and whether this request created it.
WITH inserted AS (
    INSERT INTO erasures (email_hash, requested_by)
    VALUES ($1, $2)
    ON CONFLICT (email_hash) DO NOTHING
    RETURNING seq, email_hash, requested_at, requested_by, passes, last_pass_at, objects_rewritten, completed_at
)
SELECT seq, email_hash, requested_at, requested_by, passes, last_pass_at, objects_rewritten, completed_at,
       true AS created
FROM inserted
UNION ALL
SELECT seq, email_hash, requested_at, requested_by, passes, last_pass_at, objects_rewritten, completed_at,
       false AS created
FROM erasures
WHERE email_hash = $1 AND NOT EXISTS (SELECT 1 FROM inserted)
