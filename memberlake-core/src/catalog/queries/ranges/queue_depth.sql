-- Queued ranges an express lane may take (files <= $1 bytes or with priority >= $2), the
-- other queued ranges, and leased ranges, over ingesting files.
SELECT count(*) FILTER (WHERE r.state = 'queued' AND (f.size_bytes <= $1 OR f.priority >= $2)) AS queued_express,
       count(*) FILTER (WHERE r.state = 'queued' AND NOT (f.size_bytes <= $1 OR f.priority >= $2)) AS queued_bulk,
       count(*) FILTER (WHERE r.state = 'leased') AS leased
FROM ranges r
JOIN files f ON f.file_id = r.file_id
WHERE f.state = 'ingesting'
