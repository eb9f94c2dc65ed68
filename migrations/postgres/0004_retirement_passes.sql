-- When a retirement pass took this finished, inactive version to delete its rows from the store.
-- Until the pass records the version retired, an operator's retry is refused: the pass may still
-- delete rows that the retried ranges would write, and the version could then activate without
-- them (catalog/queries/files/begin_retirement.sql, files/lock_for_retry.sql).
ALTER TABLE files ADD COLUMN retiring_at TIMESTAMPTZ;
