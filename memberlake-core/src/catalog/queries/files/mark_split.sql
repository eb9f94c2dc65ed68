-- A file's ranges exist: workers may lease them.
UPDATE files
SET state = 'ingesting', ranges_total = $2, range_size = $3, split_at = now()
WHERE file_id = $1
