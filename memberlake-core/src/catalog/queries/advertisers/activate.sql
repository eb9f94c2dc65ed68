-- Makes a file its advertiser's active list, unless a newer version (later last_modified,
-- then higher id) is already active. Versions only move forward.
UPDATE advertisers a
SET active_file_id = $2, activated_at = now()
WHERE a.advertiser_id = $1
  AND (a.active_file_id IS NULL
       OR (SELECT (cur.last_modified, cur.file_id) FROM files cur WHERE cur.file_id = a.active_file_id)
          < (SELECT (f.last_modified, f.file_id) FROM files f WHERE f.file_id = $2))
RETURNING a.advertiser_id
