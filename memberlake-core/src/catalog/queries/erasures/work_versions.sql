-- Every list version that may still hold objects at the work location: its manifest and diff
-- until they are deleted, its runs until they are.
SELECT file_id, advertiser_id, bucket_bits, runs_deleted_at IS NULL AS has_runs
FROM files
WHERE store_format = 'changes' AND bucket_bits IS NOT NULL AND work_deleted_at IS NULL
ORDER BY file_id
