-- Done ranges of files that are ingesting again (retried while retirement deleted their
-- rows) are queued again.
UPDATE ranges r
SET state = 'queued', attempts = 0, queued_at = now()
FROM files f
WHERE f.file_id = r.file_id AND f.file_id = ANY($1) AND f.state = 'ingesting' AND r.state = 'done'
