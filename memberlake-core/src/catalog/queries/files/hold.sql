-- Holds a version for an operator's decision: a merged one (the shrink guard), or one whose
-- every range is done (too many rejected rows: held before it writes a single row).
UPDATE files SET state = 'held', held_reason = $2 WHERE file_id = $1 AND state IN ('merging', 'ingesting')
