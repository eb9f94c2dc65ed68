-- The latest error of each of a file's units that had one.
SELECT stage, range_index, attempts, last_error AS error
FROM ranges
WHERE file_id = $1 AND last_error IS NOT NULL
ORDER BY stage, range_index
LIMIT 20
