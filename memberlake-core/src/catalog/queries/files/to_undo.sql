-- Failed or cancelled versions (change format) whose rows are not yet undone and whose undo is
-- not yet queued, finished at least $1 seconds ago (> the lease TTL: no worker still holding a
-- revoked lease can be writing their rows). Those that never started merging (merged_at NULL)
-- wrote no rows.
SELECT file_id, bucket_bits, merged_at IS NOT NULL AS merged
FROM files
WHERE store_format = 'changes' AND state IN ('failed', 'cancelled')
  AND retired_at IS NULL AND cleanup_total = 0
  AND finished_at < now() - make_interval(secs => $1)
ORDER BY file_id
FOR UPDATE SKIP LOCKED
