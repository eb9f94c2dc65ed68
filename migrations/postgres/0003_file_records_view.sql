-- A file as operators, the CLI and tests see it: its row, plus whether it is its advertiser's
-- active list. One definition for every read of a file (catalog/queries/files/*.sql).
CREATE VIEW file_records AS
SELECT f.file_id, f.advertiser_id, f.bucket, f.object_key, f.etag, f.size_bytes, f.compression,
       f.state, f.priority, f.paused, f.ranges_total, f.ranges_done, f.rows_ingested,
       f.rows_rejected, f.failure_reason, f.registered_at, f.split_at, f.finished_at,
       f.retired_at, coalesce(a.active_file_id = f.file_id, false) AS active
FROM files f
JOIN advertisers a ON a.advertiser_id = f.advertiser_id;
