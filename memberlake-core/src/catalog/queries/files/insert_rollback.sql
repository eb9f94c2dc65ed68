-- A rollback version of advertiser $1 restoring version $2 over the active version $3: a file
-- row of its own (same lake object as $2, an etag of its own so the row is unique), already
-- merging (it has no ranges: its member set is $2's manifest), diffed against $3, at $2's
-- bucket width, pre-approved ($5: leadership::APPROVED; an operator asked for it). Its lake
-- timestamp is now, or just after the active version's, so it activates forward and a later
-- upload supersedes it.
WITH id AS (SELECT nextval(pg_get_serial_sequence('files', 'file_id')) AS file_id)
INSERT INTO files (file_id, advertiser_id, bucket, object_key, etag, size_bytes, last_modified,
                   compression, state, store_format, split_at, merged_at, base_version,
                   rollback_of, bucket_bits, held_reason)
SELECT id.file_id, t.advertiser_id, t.bucket, t.object_key, 'rollback:' || id.file_id, t.size_bytes,
       greatest(now(), $4::timestamptz + interval '1 millisecond'), t.compression, 'merging', 'changes',
       now(), now(), $3, t.file_id, t.bucket_bits, $5
FROM id, files t
WHERE t.file_id = $2 AND t.advertiser_id = $1
RETURNING file_id
