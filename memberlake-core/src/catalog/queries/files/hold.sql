-- Holds a merged version for an operator's decision (the shrink guard).
UPDATE files SET state = 'held', held_reason = $2 WHERE file_id = $1 AND state = 'merging'
