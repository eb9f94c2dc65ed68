-- How many of a file's ranges are in each state.
SELECT state, count(*) AS ranges FROM ranges WHERE file_id = $1 GROUP BY state
