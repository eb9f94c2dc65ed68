-- The sorted runs an ingested file's ranges wrote: (range, parts), in range order.
SELECT range_index, run_parts FROM ranges WHERE file_id = $1 AND stage = 'ingest' ORDER BY range_index
