-- One file as operators see it.
SELECT * FROM file_records WHERE file_id = $1
