-- Registers one lake object. (bucket, object_key, etag) is unique, so concurrent
-- meta-services register it once: the loser's insert does nothing and returns no row.
INSERT INTO files (advertiser_id, bucket, object_key, etag, size_bytes, last_modified, compression)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (bucket, object_key, etag) DO NOTHING
RETURNING file_id
