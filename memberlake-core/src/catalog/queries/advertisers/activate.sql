-- Makes a file its advertiser's active list, unless a newer version (later last_modified,
-- then higher id) is already active. Versions only move forward. Returns the version it
-- replaces (NULL for a first version).
WITH previous AS (
    SELECT active_file_id FROM advertisers WHERE advertiser_id = $1 FOR UPDATE
)
UPDATE advertisers a
SET active_file_id = $2, activated_at = now()
FROM previous p
WHERE a.advertiser_id = $1
  AND (a.active_file_id IS NULL
       OR (SELECT (cur.last_modified, cur.file_id) FROM files cur WHERE cur.file_id = a.active_file_id)
          < (SELECT (f.last_modified, f.file_id) FROM files f WHERE f.file_id = $2))
RETURNING p.active_file_id AS previous
