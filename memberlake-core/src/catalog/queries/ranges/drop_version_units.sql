-- A retried file's merge and cleanup units go: a retry starts its merge afresh.
DELETE FROM ranges WHERE file_id = $1 AND stage <> 'ingest'
