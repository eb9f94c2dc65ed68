-- Every advertiser's active list version (the file id of its active list), and whether it is a
-- legacy version (rows in `memberships`, ingested before change-proportional versions).
SELECT a.advertiser_id, a.active_file_id AS version, f.store_format = 'rows' AS legacy
FROM advertisers a
JOIN files f ON f.file_id = a.active_file_id
