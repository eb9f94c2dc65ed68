-- Locks a version a rollback would restore (the manifest expiry takes the same lock), with
-- what decides whether it can be: its advertiser, format, whether it was ever active (only
-- then is its manifest complete), and whether its manifest has expired.
SELECT file_id, advertiser_id, store_format, activated_at, manifest_expired_at, bucket_bits
FROM files
WHERE file_id = $1
FOR UPDATE
