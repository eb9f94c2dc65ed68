-- Erasures not yet complete, oldest first (at most $2), and whether each has settled: fenced
-- (queries/erasures/fence.sql), no ingest or merge lease drawn at or below its fence still held
-- (those may write runs, manifests or rows holding the hash), and the
-- grace $1 seconds passed since the fence (longer than a lease: a worker whose lease was taken
-- from it has stopped writing). A pass that starts settled completes the erasure.
SELECT e.email_hash,
       e.lease_fence IS NOT NULL
       AND e.fenced_at + make_interval(secs => $1) <= now()
       AND NOT EXISTS (SELECT 1 FROM ranges r
                       WHERE r.state = 'leased' AND r.stage IN ('ingest', 'merge') AND r.lease_token <= e.lease_fence)
         AS settled
FROM erasures e
WHERE e.completed_at IS NULL
ORDER BY e.requested_at
LIMIT $2
