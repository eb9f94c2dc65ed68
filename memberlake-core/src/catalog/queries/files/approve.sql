-- An operator approves a held version. Held before merging (too many rejects): it goes back to
-- ingesting, every range done, marked approved for its rejects ($3, leadership::APPROVED_REJECTS),
-- so the next settle pass starts its merge and the shrink guard still looks at it. Held after
-- merging (the shrink guard): it goes back to merging marked approved ($2, leadership::APPROVED),
-- and the next settle pass activates it without asking the guard.
UPDATE files
SET state = CASE WHEN merged_at IS NULL THEN 'ingesting'::file_state ELSE 'merging'::file_state END,
    held_reason = CASE WHEN merged_at IS NULL THEN $3 ELSE $2 END
WHERE file_id = $1 AND state = 'held'
