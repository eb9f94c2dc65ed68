-- The oldest version of an advertiser still on its way to activation, if any.
SELECT file_id, state FROM files
WHERE advertiser_id = $1 AND file_in_flight(state)
ORDER BY file_id
LIMIT 1
