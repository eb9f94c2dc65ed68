-- Files split and on their way to activation — hashing (ingesting), merging, or held for an
-- operator — newest first, at most $1: the overview's "files in flight".
SELECT *
FROM file_records
WHERE state IN ('ingesting', 'merging', 'held')
ORDER BY file_id DESC
LIMIT $1
