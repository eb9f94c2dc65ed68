-- A retried legacy version (ingested before change-proportional versions, its rows retired
-- from `memberships`) starts over as a change-format version: registered again, to be split
-- afresh (ranges/drop_all_units.sql removes its old ranges).
UPDATE files
SET state = 'registered', store_format = 'changes', failure_reason = NULL, finished_at = NULL,
    retired_at = NULL, retiring_at = NULL, split_at = NULL, range_size = NULL, ranges_total = 0,
    ranges_done = 0, rows_ingested = 0, rows_rejected = 0
WHERE file_id = $1
