-- Change-proportional list versions (docs/versions.md).
--
-- A file is a list version. Its work units are rows of `ranges`, now of four stages:
--   ingest  one per byte range (as before): hash the range, write its sorted run(s);
--   merge   one per hash bucket: merge the runs, diff against the base version, write the
--           difference to the store (membership_changes);
--   undo    one per bucket of a version that wrote rows and then failed, was cancelled or was
--           superseded before activation: delete exactly the rows its diff recorded;
--   retire  one per bucket of the successor's diff, for a version that was active and was
--           superseded: delete the rows that no longer answer anything.
-- Every stage is leased, prioritized, heartbeated and fenced alike (catalog/queries/ranges/).

CREATE TYPE work_stage AS ENUM ('ingest', 'merge', 'undo', 'retire');

ALTER TABLE ranges ADD COLUMN stage work_stage NOT NULL DEFAULT 'ingest';
ALTER TABLE ranges DROP CONSTRAINT ranges_pkey;
ALTER TABLE ranges ADD PRIMARY KEY (file_id, stage, range_index);
-- ingest: how many sorted runs the range wrote (a range spills a run every so many hashes).
ALTER TABLE ranges ADD COLUMN run_parts INTEGER NOT NULL DEFAULT 0;
-- merge: the bucket's member count and difference; merge, undo, retire: store rows written.
ALTER TABLE ranges ADD COLUMN members BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ranges ADD COLUMN added BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ranges ADD COLUMN removed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ranges ADD COLUMN rows_written BIGINT NOT NULL DEFAULT 0;

-- How a version's rows are stored. 'rows': written before change-proportional versions, one
-- row per member in `memberships` (a lookup matches the version exactly); 'changes': rows in
-- `membership_changes` (a lookup takes the newest row at or below the active version). Every
-- file that exists at this migration keeps its rows where they are.
ALTER TABLE files ADD COLUMN store_format TEXT NOT NULL DEFAULT 'rows'
    CHECK (store_format IN ('rows', 'changes'));
ALTER TABLE files ALTER COLUMN store_format SET DEFAULT 'changes';
-- The active version this one is diffed against (set when merging starts); NULL: a first
-- version, written in full.
ALTER TABLE files ADD COLUMN base_version BIGINT REFERENCES files (file_id);
-- The version that replaced this one as active: its diff says which of this version's rows
-- to retire.
ALTER TABLE files ADD COLUMN superseded_by BIGINT REFERENCES files (file_id);
ALTER TABLE files ADD COLUMN bucket_bits SMALLINT CHECK (bucket_bits BETWEEN 1 AND 16);
ALTER TABLE files ADD COLUMN buckets_done INTEGER NOT NULL DEFAULT 0;
-- Undo or retire units queued for this version, and done.
ALTER TABLE files ADD COLUMN cleanup_total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE files ADD COLUMN cleanup_done INTEGER NOT NULL DEFAULT 0;
ALTER TABLE files ADD COLUMN members BIGINT;
ALTER TABLE files ADD COLUMN added BIGINT NOT NULL DEFAULT 0;
ALTER TABLE files ADD COLUMN removed BIGINT NOT NULL DEFAULT 0;
-- Store rows written by this version's merge units, and by its undo or retire units.
ALTER TABLE files ADD COLUMN rows_written BIGINT NOT NULL DEFAULT 0;
ALTER TABLE files ADD COLUMN rows_deleted BIGINT NOT NULL DEFAULT 0;
ALTER TABLE files ADD COLUMN held_reason TEXT;
ALTER TABLE files ADD COLUMN merged_at TIMESTAMPTZ;
ALTER TABLE files ADD COLUMN activated_at TIMESTAMPTZ;

-- Whether a unit of `stage` may be worked on while its file is in `state`: ingest units while
-- the file ingests, merge units while it merges; undo and retire units whatever happens (their
-- deletes are exact and idempotent). Claims, heartbeats and completions all ask this one
-- function, so a cancelled or failed file revokes its ingest and merge leases at once.
CREATE FUNCTION unit_is_live(stage work_stage, state file_state) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE stage
        WHEN 'ingest' THEN state = 'ingesting'
        WHEN 'merge' THEN state = 'merging'
        ELSE true
    END
$$;

-- Units that may be retried without limit: cleanup never gives up (a store outage delays it).
CREATE FUNCTION unit_counts_attempts(stage work_stage) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT stage IN ('ingest', 'merge')
$$;

CREATE OR REPLACE VIEW file_records AS
SELECT f.file_id, f.advertiser_id, f.bucket, f.object_key, f.etag, f.size_bytes, f.compression,
       f.state, f.priority, f.paused, f.ranges_total, f.ranges_done, f.rows_ingested,
       f.rows_rejected, f.failure_reason, f.registered_at, f.split_at, f.finished_at,
       f.retired_at, coalesce(a.active_file_id = f.file_id, false) AS active,
       f.store_format, f.base_version, f.superseded_by, f.bucket_bits, f.buckets_done,
       f.cleanup_total, f.cleanup_done, f.members, f.added, f.removed, f.rows_written,
       f.rows_deleted, f.held_reason, f.merged_at, f.activated_at
FROM files f
JOIN advertisers a ON a.advertiser_id = f.advertiser_id;

-- Files in flight at this upgrade start over as change-format versions: registered again, to
-- be split afresh with a bucket width. Rows their ranges wrote to `memberships` are never read
-- (only a legacy *active* version is looked up there); `memberlake store repair` removes them.
DELETE FROM ranges WHERE file_id IN (SELECT file_id FROM files WHERE state IN ('registered', 'ingesting'));
UPDATE files
SET store_format = 'changes', state = 'registered', split_at = NULL, range_size = NULL,
    ranges_total = 0, ranges_done = 0, rows_ingested = 0, rows_rejected = 0
WHERE state IN ('registered', 'ingesting');
