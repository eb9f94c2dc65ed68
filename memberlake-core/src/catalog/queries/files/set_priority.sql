-- An operator's priority for a file (higher runs first).
UPDATE files SET priority = $2 WHERE file_id = $1
