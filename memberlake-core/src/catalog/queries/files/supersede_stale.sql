-- In-flight files of an advertiser for which a newer file is in flight or active, locked: the
-- newest upload wins, and per advertiser one version is in flight at a time
-- (docs/versions.md). Newer: a later (last_modified, file_id) — or, for the active version, a
-- higher file id too: a lookup takes the newest row at or below the active version's id, so a
-- version must never activate over one with a higher id (an operator's retry of an old file).
-- The settle transaction cancels them; their rows, if any, are undone before any newer version
-- activates.
SELECT f.file_id,
       (SELECT n.file_id FROM files n
        WHERE n.advertiser_id = f.advertiser_id AND n.file_id <> f.file_id
          AND ((file_in_flight(n.state)
                AND (n.last_modified, n.file_id) > (f.last_modified, f.file_id))
               OR (n.file_id = (SELECT a.active_file_id FROM advertisers a WHERE a.advertiser_id = f.advertiser_id)
                   AND ((n.last_modified, n.file_id) > (f.last_modified, f.file_id) OR n.file_id > f.file_id)))
        ORDER BY n.last_modified DESC, n.file_id DESC
        LIMIT 1) AS newer
FROM files f
WHERE file_in_flight(f.state)
ORDER BY f.file_id
FOR UPDATE
