-- Files, newest first, optionally of one state ($1) and one advertiser ($2).
SELECT *
FROM file_records
WHERE ($1::file_state IS NULL OR state = $1)
  AND ($2::text IS NULL OR advertiser_id = $2)
ORDER BY file_id DESC
LIMIT $3
