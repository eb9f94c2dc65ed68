-- Work units waiting for a worker, per lane, and how long the oldest of each lane has waited:
-- the queue an operator alerts on (splitter leader, memberlake::telemetry).
--   $1 the express lane's largest file (bytes), $2 ... or files with priority >= $2.
-- A unit is counted when a worker could claim it now (claim.sql's conditions except the lake
-- and the per-file cap): queued, of a stage its file's state lets run (unit_is_live), file not
-- paused (an operator's pause is not a stuck queue). Its lane is 'express' when the express lane
-- may take it (small or urgent file; the bulk lane may take it too), else 'bulk'.
-- queued_at is set on insert and on every return to the queue (release, reap, retry), so the
-- age is the wait since the unit last became claimable.
-- Cost: an index scan of ranges_queued (partial index, state = 'queued': queued units only) and
-- one primary-key lookup of the file per unit: O(queued units), whatever the history.
SELECT CASE WHEN f.size_bytes <= $1 OR f.priority >= $2 THEN 'express' ELSE 'bulk' END AS lane,
       count(*) AS units,
       extract(epoch FROM now() - min(r.queued_at))::float8 AS oldest_seconds
FROM ranges r
JOIN files f ON f.file_id = r.file_id
WHERE r.state = 'queued' AND unit_is_live(r.stage, f.state) AND NOT f.paused
GROUP BY 1
