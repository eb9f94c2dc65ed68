-- Every range of the file is done and its rejects are within the limit.
UPDATE files SET state = 'ingested', finished_at = now() WHERE file_id = $1
