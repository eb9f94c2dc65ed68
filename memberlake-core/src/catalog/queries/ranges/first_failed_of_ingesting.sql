-- For each ingesting file with a failed range, its first failed range: the file fails.
SELECT DISTINCT ON (r.file_id)
       r.file_id, r.range_index, r.attempts, coalesce(r.last_error, 'unknown error') AS last_error
FROM ranges r
JOIN files f ON f.file_id = r.file_id
WHERE f.state = 'ingesting' AND r.state = 'failed'
ORDER BY r.file_id, r.range_index
