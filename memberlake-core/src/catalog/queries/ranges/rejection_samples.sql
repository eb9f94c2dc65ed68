-- A file's rejection samples ({offset, reason} pairs, never contents), range by range.
SELECT rejection_samples FROM ranges WHERE file_id = $1 AND stage = 'ingest' ORDER BY range_index
