-- Every file, oldest first.
SELECT * FROM file_records ORDER BY file_id
