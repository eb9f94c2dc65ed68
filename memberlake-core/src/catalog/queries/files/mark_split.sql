-- A file's ranges exist: workers may lease them. Its bucket width ($4) is fixed now: every run
-- its ranges write, and its manifest, are bucketed alike.
UPDATE files
SET state = 'ingesting', ranges_total = $2, range_size = $3, bucket_bits = $4, split_at = now()
WHERE file_id = $1
