-- Merging files whose every bucket is done, locked until the settle transaction commits, with
-- what the guard and the activation need: the base version's member count, and whether an
-- older version of the advertiser still has rows to undo (it must be undone first: its rows
-- would answer for this version too, since a lookup takes the newest row at or below it).
SELECT f.file_id, f.advertiser_id, f.members, f.base_version, b.members AS base_members,
       EXISTS (SELECT 1 FROM files o
               WHERE o.advertiser_id = f.advertiser_id AND o.file_id < f.file_id
                 AND o.store_format = 'changes' AND o.state IN ('failed', 'cancelled')
                 AND o.merged_at IS NOT NULL AND o.retired_at IS NULL) AS older_undo_pending,
       f.held_reason
FROM files f
LEFT JOIN files b ON b.file_id = f.base_version
WHERE f.state = 'merging' AND f.buckets_done = (1 << f.bucket_bits)
ORDER BY f.file_id
FOR UPDATE OF f
