-- The first failed ingest or merge unit of each of these (locked) files: the reason the file
-- fails.
SELECT DISTINCT ON (file_id)
       file_id, stage, range_index, attempts, coalesce(last_error, 'unknown error') AS last_error
FROM ranges
WHERE file_id = ANY($1) AND state = 'failed' AND stage IN ('ingest', 'merge')
ORDER BY file_id, stage, range_index
