-- Fences the erasures the leader sees for the first time: `lease_fence` is a lease token drawn
-- now, after their commit. An ingest or merge unit leased under a later token loads the erasure
-- list after its claim, so it sees them and drops their hashes itself; only units leased at or
-- below the fence may write a hash without having seen its erasure (queries/erasures/pending.sql).
UPDATE erasures
SET lease_fence = nextval('lease_tokens'), fenced_at = now()
WHERE lease_fence IS NULL AND completed_at IS NULL
