-- Version $1 was active and $2 replaced it: $2's diff says which of $1's rows to retire.
UPDATE files SET superseded_by = $2 WHERE file_id = $1
