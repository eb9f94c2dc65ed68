-- A file starts merging (merged_at: from now on it may write rows), diffed against its
-- advertiser's active version if that one keeps its member set as a manifest (store_format
-- 'changes'); otherwise (no active version, or a legacy one) it is a first version and written
-- in full. Returns the base and the file's bucket width.
UPDATE files f
SET state = 'merging',
    merged_at = now(),
    buckets_done = 0,
    members = NULL, added = 0, removed = 0, rows_written = 0,
    base_version = (SELECT a.active_file_id
                    FROM advertisers a
                    JOIN files b ON b.file_id = a.active_file_id
                    WHERE a.advertiser_id = f.advertiser_id AND b.store_format = 'changes')
WHERE f.file_id = $1
RETURNING f.base_version, f.bucket_bits
