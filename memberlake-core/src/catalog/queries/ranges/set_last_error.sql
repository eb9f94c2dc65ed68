-- Why a unit stopped, for operators (the unit whose lease token is $2).
UPDATE ranges SET last_error = $3 WHERE file_id = $1 AND lease_token = $2
