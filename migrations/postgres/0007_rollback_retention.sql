-- Rollback, the retention of version manifests (docs/versions.md), rejects by reason.
--
-- A rollback is a version of its own: a file row whose `rollback_of` names the earlier version
-- whose member set it restores. It skips ingestion (no ranges) and merges that version's
-- retained manifest against the active one, so it costs the difference like any version.
ALTER TABLE files ADD COLUMN rollback_of BIGINT REFERENCES files (file_id);

-- The work location keeps a version's objects (runs, manifest, diff) while something may read
-- them. Runs are read only by the version's own merge: deleted once it was activated.
-- Manifest and diff: kept for MEMBERLAKE_MANIFEST_RETENTION after the version's rows left the
-- store (rollback reads the manifest), then expired — from then on rollback and retry refuse
-- the version — and deleted (`work_deleted_at`; a deletion interrupted is redone).
ALTER TABLE files ADD COLUMN runs_deleted_at TIMESTAMPTZ;
ALTER TABLE files ADD COLUMN manifest_expired_at TIMESTAMPTZ;
ALTER TABLE files ADD COLUMN work_deleted_at TIMESTAMPTZ;

-- Rejected rows of an ingest range by reason ({"missing_at": 3, ...}): a version's report sums
-- them (`ranges/rejects_by_reason.sql`).
ALTER TABLE ranges ADD COLUMN rejects_by_reason JSONB NOT NULL DEFAULT '{}';

CREATE INDEX files_by_base_version ON files (base_version) WHERE base_version IS NOT NULL;
CREATE INDEX files_by_rollback_of ON files (rollback_of) WHERE rollback_of IS NOT NULL;

CREATE OR REPLACE VIEW file_records AS
SELECT f.file_id, f.advertiser_id, f.bucket, f.object_key, f.etag, f.size_bytes, f.compression,
       f.state, f.priority, f.paused, f.ranges_total, f.ranges_done, f.rows_ingested,
       f.rows_rejected, f.failure_reason, f.registered_at, f.split_at, f.finished_at,
       f.retired_at, coalesce(a.active_file_id = f.file_id, false) AS active,
       f.store_format, f.base_version, f.superseded_by, f.bucket_bits, f.buckets_done,
       f.cleanup_total, f.cleanup_done, f.members, f.added, f.removed, f.rows_written,
       f.rows_deleted, f.held_reason, f.merged_at, f.activated_at,
       f.rollback_of, f.manifest_expired_at
FROM files f
JOIN advertisers a ON a.advertiser_id = f.advertiser_id;
