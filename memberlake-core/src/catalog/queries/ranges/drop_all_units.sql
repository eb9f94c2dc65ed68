-- Every unit of a file goes: it is split afresh.
DELETE FROM ranges WHERE file_id = $1
