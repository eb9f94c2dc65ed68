-- Every advertiser's active list version (the file id of its active list).
SELECT advertiser_id, active_file_id AS version
FROM advertisers
WHERE active_file_id IS NOT NULL
