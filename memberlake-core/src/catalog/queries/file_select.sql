-- A file with its progress and whether it is its advertiser's active list.
SELECT f.file_id, f.advertiser_id, f.object_key, f.etag, f.size_bytes, f.compression,
       f.state::text AS state, f.priority, f.paused, f.ranges_total, f.ranges_done,
       f.rows_ingested, f.rows_rejected, f.failure_reason, f.registered_at, f.finished_at,
       f.retired_at, coalesce(a.active_file_id = f.file_id, false) AS active
FROM files f
JOIN advertisers a ON a.advertiser_id = f.advertiser_id
