-- Ingesting files whose every range is done (their runs written), locked until the settle
-- transaction commits: they are held on too many rejects (unless an operator approved them,
-- held_reason), or start merging.
SELECT file_id, rows_ingested, rows_rejected, held_reason
FROM files
WHERE state = 'ingesting' AND ranges_done = ranges_total
ORDER BY file_id
FOR UPDATE
