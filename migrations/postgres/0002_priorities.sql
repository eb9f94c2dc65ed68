-- Effective priority of a file's ranges (higher runs first):
--
--   priority * per_priority                 operator priority dominates
-- + ln(weight) * per_log_weight             advertiser weight (1 = neutral)
-- + waited_seconds * per_second             aging: anything waiting long enough runs
-- - log2(1 + size_MiB) * per_size_doubling  small files first
--
-- The knobs are parameters so that workers and the operator API compute it alike from their
-- configuration (MEMBERLAKE_PRIORITY_*); README.md documents the defaults.
CREATE FUNCTION effective_priority(
    priority INTEGER,
    weight DOUBLE PRECISION,
    waited_seconds DOUBLE PRECISION,
    size_bytes BIGINT,
    per_priority DOUBLE PRECISION,
    per_log_weight DOUBLE PRECISION,
    per_second DOUBLE PRECISION,
    per_size_doubling DOUBLE PRECISION
) RETURNS DOUBLE PRECISION
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT priority * per_priority
         + ln(greatest(weight, 1e-9)) * per_log_weight
         + greatest(waited_seconds, 0) * per_second
         - ln(1 + size_bytes / 1048576.0) / ln(2) * per_size_doubling
$$;

-- The per-file lease cap counts a file's leased ranges.
CREATE INDEX ranges_leased_by_file ON ranges (file_id) WHERE state = 'leased';
