-- Locks an advertiser's row (serializing rollbacks and activations of its versions) and
-- returns its active version with what a rollback needs of it: how it stores its rows, the
-- version it was diffed against (the one active before it), and its lake timestamp (a rollback
-- must order after it).
SELECT a.active_file_id, f.store_format, f.base_version, f.last_modified
FROM advertisers a
LEFT JOIN files f ON f.file_id = a.active_file_id
WHERE a.advertiser_id = $1
FOR UPDATE OF a
