-- An operator approves a held version: it goes back to merging with its hold marked approved
-- (leadership::APPROVED, $2), and the next settle pass activates it without asking the guard.
UPDATE files SET state = 'merging', held_reason = $2 WHERE file_id = $1 AND state = 'held'
