-- Versions that were active and were replaced at least $1 seconds ago (every matcher has
-- followed the activation by then), whose retirement is not yet queued: one retire unit per
-- bucket of the successor's diff.
SELECT f.file_id, s.bucket_bits AS successor_bucket_bits
FROM files f
JOIN files s ON s.file_id = f.superseded_by
WHERE f.store_format = 'changes' AND f.state = 'ingested'
  AND f.retired_at IS NULL AND f.cleanup_total = 0
  AND s.store_format = 'changes' AND s.bucket_bits IS NOT NULL
  AND s.activated_at < now() - make_interval(secs => $1)
ORDER BY f.file_id
FOR UPDATE OF f SKIP LOCKED
