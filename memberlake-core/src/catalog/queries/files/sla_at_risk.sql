-- Files whose projected finish passes their registration + the SLA ($1 seconds), at the rate
-- they have progressed so far (see memberlake::catalog::PipelineHealth::sla_at_risk):
--   done     = ingest ranges done + merge buckets done
--   total    = ingest ranges + merge buckets (2^bucket_bits, fixed when the file is split;
--              before the split nothing is known: total 0, done 0)
--   elapsed  = now - registered_at
--   projected finish = registered_at + elapsed * total / done, which passes registered_at + SLA
--   iff done * SLA < elapsed * total — the fraction done lags the fraction of the SLA spent.
-- A file with nothing done yet has no rate: its finish is projected past any deadline.
-- A projection from less than a tenth of the SLA is noise (the first unit may not have
-- finished yet), so a file is judged from SLA/10 after its registration on.
-- Held and paused files wait for an operator by design and are not counted.
-- Cost: files_by_state (state, file_id) over the three working states: O(files in flight).
SELECT count(*) AS files
FROM files f
WHERE f.state IN ('registered', 'ingesting', 'merging')
  AND NOT f.paused
  AND f.registered_at <= now() - make_interval(secs => $1 / 10)
  AND (f.ranges_done + f.buckets_done)::float8 * $1
      < extract(epoch FROM now() - f.registered_at)
        * greatest(f.ranges_total + coalesce(1 << f.bucket_bits::int, 0), 1)
