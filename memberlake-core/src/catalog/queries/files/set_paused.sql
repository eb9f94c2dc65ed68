-- Paused files lease no new ranges; leases in flight finish.
UPDATE files SET paused = $2 WHERE file_id = $1
