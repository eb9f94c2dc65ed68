-- The erased hashes in [$1, $2) (bytea compares bytewise, like the hashes' order; $2 NULL: no
-- upper bound): the erasure list of one hash bucket, which a merge unit drops from its inputs.
SELECT email_hash FROM erasures WHERE email_hash >= $1 AND ($2::bytea IS NULL OR email_hash < $2) ORDER BY email_hash
