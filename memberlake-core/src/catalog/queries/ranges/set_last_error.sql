-- Why a range stopped, for operators.
UPDATE ranges SET last_error = $3 WHERE file_id = $1 AND range_index = $2
