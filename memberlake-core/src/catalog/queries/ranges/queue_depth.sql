-- Queued units an express lane may take (files <= $1 bytes or with priority >= $2), the other
-- queued units, and leased units, of every stage that may run now.
SELECT count(*) FILTER (WHERE r.state = 'queued' AND (f.size_bytes <= $1 OR f.priority >= $2)) AS queued_express,
       count(*) FILTER (WHERE r.state = 'queued' AND NOT (f.size_bytes <= $1 OR f.priority >= $2)) AS queued_bulk,
       count(*) FILTER (WHERE r.state = 'leased') AS leased
FROM ranges r
JOIN files f ON f.file_id = r.file_id
WHERE unit_is_live(r.stage, f.state) AND r.state IN ('queued', 'leased')
