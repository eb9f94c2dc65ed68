-- A file's rejected rows by reason, summed over its ingest ranges (done ones: a range's counts
-- are written when it completes).
SELECT e.key AS reason, sum(e.value::bigint)::bigint AS rows
FROM ranges r, jsonb_each_text(r.rejects_by_reason) e
WHERE r.file_id = $1 AND r.stage = 'ingest' AND r.state = 'done'
GROUP BY e.key
ORDER BY rows DESC, e.key
