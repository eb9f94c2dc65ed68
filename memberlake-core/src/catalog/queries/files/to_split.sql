-- Registered files waiting to be cut into ranges, oldest first. SKIP LOCKED: a second leader
-- transaction (never expected, but harmless) would take other files.
SELECT file_id, size_bytes, compression
FROM files
WHERE state = 'registered'
ORDER BY file_id
LIMIT $1
FOR UPDATE SKIP LOCKED
