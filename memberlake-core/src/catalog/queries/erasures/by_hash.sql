-- One erasure, by hash.
SELECT seq, email_hash, requested_at, requested_by, passes, last_pass_at, objects_rewritten, completed_at,
       false AS created
FROM erasures
WHERE email_hash = $1
