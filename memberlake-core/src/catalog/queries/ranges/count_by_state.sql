-- How many of a file's ingest ranges are in each state.
SELECT state, count(*) AS ranges FROM ranges WHERE file_id = $1 AND stage = 'ingest' GROUP BY state
