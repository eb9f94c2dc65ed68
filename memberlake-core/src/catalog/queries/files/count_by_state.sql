-- Files per state: every file of an in-flight state (file_in_flight: registered, ingesting,
-- merging, held), and the files that reached a terminal state (ingested, failed, cancelled)
-- within the last $1 seconds (files only accumulate in those: a total would only grow).
-- Cost: in-flight files through files_by_state (state, file_id): O(files in flight); terminal
-- ones through files_finished (state, finished_at; migration 0010): O(files finished in the
-- window). Never a scan of the history.
SELECT state, count(*) AS files
FROM files
WHERE file_in_flight(state)
GROUP BY state
UNION ALL
SELECT state, count(*) AS files
FROM files
WHERE state IN ('ingested', 'failed', 'cancelled') AND finished_at > now() - make_interval(secs => $1)
GROUP BY state
