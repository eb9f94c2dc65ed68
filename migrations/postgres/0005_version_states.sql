-- Change-proportional list versions (docs/versions.md): two file states between ingestion and
-- activation. Added alone: a new enum value cannot be used in the transaction that adds it.
--   merging  every range's sorted run is written; per bucket, the runs are merged into the
--            version's manifest, diffed against the active version's, and the difference
--            written to the store.
--   held     every bucket is done, but the version shrinks the active list by more than the
--            guard allows: it waits for an operator to approve or reject it.
ALTER TYPE file_state ADD VALUE IF NOT EXISTS 'merging' AFTER 'ingesting';
ALTER TYPE file_state ADD VALUE IF NOT EXISTS 'held' AFTER 'merging';
