-- Files by terminal state and finish time: the splitter leader counts the files that reached
-- each terminal state recently (catalog/queries/files/count_by_state.sql, exported as
-- memberlake_files{state}) with a range scan of this index, O(files finished in the window),
-- instead of every file that ever finished. In-flight files have no finished_at: not indexed.
CREATE INDEX files_finished ON files (state, finished_at) WHERE finished_at IS NOT NULL;
