-- Marks expired the work objects of versions that nothing will read again (no rollback to
-- them, no retry of them from now on), $1 seconds (the retention) after their rows left the
-- store, at most $2: not active, not in flight, not the base or the restored version of a
-- version in flight, and not the successor whose diff an unfinished retirement still reads.
-- Locked with the rollback's lock on its target, so a rollback never starts from an expiring
-- manifest.
UPDATE files f
SET manifest_expired_at = now()
WHERE f.file_id IN (
    SELECT c.file_id FROM files c
    WHERE c.store_format = 'changes' AND c.manifest_expired_at IS NULL
      AND NOT file_in_flight(c.state)
      AND c.retired_at < now() - make_interval(secs => $1)
      AND NOT EXISTS (SELECT 1 FROM advertisers a WHERE a.active_file_id = c.file_id)
      AND NOT EXISTS (SELECT 1 FROM files n
                      WHERE (n.base_version = c.file_id OR n.rollback_of = c.file_id)
                        AND file_in_flight(n.state))
      AND NOT EXISTS (SELECT 1 FROM files p WHERE p.superseded_by = c.file_id AND p.retired_at IS NULL)
    ORDER BY c.file_id
    LIMIT $2
    FOR UPDATE OF c SKIP LOCKED)
RETURNING f.file_id
