-- A file's range plan: one row per range, queued.
INSERT INTO ranges (file_id, range_index, start_offset, end_offset)
SELECT $1, * FROM UNNEST($2::int[], $3::bigint[], $4::bigint[])
