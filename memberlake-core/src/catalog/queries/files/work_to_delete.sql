-- Versions whose work objects are to be deleted, at most $1: expired (every object), or
-- activated with runs not yet deleted (only the version's own merge read them, and a version
-- never merges again once active: a rollback reads its manifest).
SELECT file_id, advertiser_id, manifest_expired_at IS NOT NULL AS expired
FROM files
WHERE store_format = 'changes'
  AND ((manifest_expired_at IS NOT NULL AND work_deleted_at IS NULL)
       OR (activated_at IS NOT NULL AND runs_deleted_at IS NULL AND manifest_expired_at IS NULL))
ORDER BY file_id
LIMIT $1
