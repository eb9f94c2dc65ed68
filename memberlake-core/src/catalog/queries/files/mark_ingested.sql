-- Every unit of the file is done and it is now its advertiser's active version.
UPDATE files SET state = 'ingested', finished_at = now(), activated_at = now()
WHERE file_id = $1
