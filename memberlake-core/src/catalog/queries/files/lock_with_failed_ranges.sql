-- Ingesting or merging files with a failed unit, locked for the settle transaction. The lock
-- comes first and the units are read again after it (ranges/first_failed.sql, a new snapshot):
-- an operator's retry of the same file (which locks the file row too) has then either committed
-- — and its requeued units are seen — or waits for the settle to commit; a retry is never
-- undone.
SELECT f.file_id
FROM files f
WHERE f.state IN ('ingesting', 'merging')
  AND EXISTS (SELECT 1 FROM ranges r WHERE r.file_id = f.file_id AND r.state = 'failed'
                                       AND r.stage IN ('ingest', 'merge'))
ORDER BY f.file_id
FOR UPDATE
