-- A retried file is ingesting again, as a change-format version that has not merged: its merge
-- and cleanup progress starts from zero (its rows, if it wrote any, were undone). Its ranges'
-- runs are kept, and so is its bucket width, which they were written with.
UPDATE files
SET state = 'ingesting', failure_reason = NULL, finished_at = NULL, retired_at = NULL,
    retiring_at = NULL,
    base_version = NULL, buckets_done = 0, cleanup_total = 0, cleanup_done = 0,
    members = NULL, added = 0, removed = 0, rows_written = 0, rows_deleted = 0, held_reason = NULL,
    merged_at = NULL
WHERE file_id = $1
