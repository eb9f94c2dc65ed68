-- Ingesting files whose every range is done, locked until the settle transaction commits.
SELECT file_id, advertiser_id, rows_ingested, rows_rejected
FROM files
WHERE state = 'ingesting' AND ranges_done = ranges_total
ORDER BY file_id
FOR UPDATE
