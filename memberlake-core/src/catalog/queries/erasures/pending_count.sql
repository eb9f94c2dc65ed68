-- Erasures not yet complete, and the age in seconds of the oldest.
SELECT count(*) AS pending,
       coalesce(extract(epoch FROM now() - min(requested_at)), 0)::float8 AS oldest_age_secs
FROM erasures
WHERE completed_at IS NULL
