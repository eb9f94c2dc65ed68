-- Recomputes the progress of ingesting files from their ranges (after done ranges were
-- queued again).
UPDATE files f
SET ranges_done = s.done, rows_ingested = s.rows, rows_rejected = s.rejected
FROM (SELECT file_id,
             count(*) FILTER (WHERE state = 'done')::int AS done,
             coalesce(sum(rows_ingested) FILTER (WHERE state = 'done'), 0)::bigint AS rows,
             coalesce(sum(rows_rejected) FILTER (WHERE state = 'done'), 0)::bigint AS rejected
      FROM ranges
      WHERE file_id = ANY($1)
      GROUP BY file_id) s
WHERE f.file_id = s.file_id AND f.state = 'ingesting'
