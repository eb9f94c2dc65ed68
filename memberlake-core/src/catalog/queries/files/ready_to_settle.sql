-- Ingesting files whose every range is done (their runs written), locked until the settle
-- transaction commits: they fail on too many rejects, or start merging.
SELECT file_id, rows_ingested, rows_rejected
FROM files
WHERE state = 'ingesting' AND ranges_done = ranges_total
ORDER BY file_id
FOR UPDATE
