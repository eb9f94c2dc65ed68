-- The active version of advertiser $1 with what it takes to read its manifest (a dry run diffs
-- a list against it): bucket width, whether it is a legacy version (no manifest), and whether
-- its manifest is still retained.
SELECT a.active_file_id AS version, f.bucket_bits, f.store_format = 'rows' AS legacy,
       f.manifest_expired_at IS NOT NULL AS manifest_expired
FROM advertisers a
JOIN files f ON f.file_id = a.active_file_id
WHERE a.advertiser_id = $1
