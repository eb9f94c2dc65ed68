-- Locks a range while the caller's lease on it holds (same token, still leased).
SELECT range_index
FROM ranges
WHERE file_id = $1 AND range_index = $2 AND lease_token = $3 AND state = 'leased'
FOR UPDATE
