-- Every advertiser's active list version (the file id of its active list), whether it is a
-- legacy version (rows in `memberships`, ingested before change-proportional versions), and
-- when it stops matching: its upload time plus the advertiser's lifespan (NULL: never); and
-- what a matcher needs to load its membership filter: its bucket width (NULL for a legacy
-- version) and its member count (the filter's size).
SELECT a.advertiser_id, a.active_file_id AS version, f.store_format = 'rows' AS legacy,
       f.last_modified + a.lifespan AS expires_at, f.bucket_bits, f.members
FROM advertisers a
JOIN files f ON f.file_id = a.active_file_id
