-- The oldest version of an advertiser still on its way to activation, if any.
SELECT file_id, state FROM files
WHERE advertiser_id = $1 AND state IN ('registered', 'ingesting', 'merging', 'held')
ORDER BY file_id
LIMIT 1
