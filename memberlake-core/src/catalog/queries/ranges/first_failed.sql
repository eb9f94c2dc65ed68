-- The first failed range of each of these (locked) files: the reason the file fails.
SELECT DISTINCT ON (file_id)
       file_id, range_index, attempts, coalesce(last_error, 'unknown error') AS last_error
FROM ranges
WHERE file_id = ANY($1) AND state = 'failed'
ORDER BY file_id, range_index
