-- Erasure (issue 20): a person's right to be forgotten. An erasure names an email hash (never
-- the email: the admin API hashes it and forgets it) and removes it from every advertiser's
-- lists: store rows, version manifests, diffs and runs at the work location, matcher answers.
-- The row stays for good: ingestion drops every erased hash it meets (counted as `erased` in the
-- file's report), so a later upload of an old file does not bring the person back.
--
-- Life of an erasure: requested (the row, audited in the same transaction; matchers answer
-- "not a member" from the moment they learn of it) -> each splitter-leader pass rewrites the
-- work objects that hold the hash and deletes its store partitions (`passes`, `last_pass_at`)
-- -> complete (`completed_at`) after a pass that started once no merge unit could still write
-- rows without having seen the erasure: the first pass draws a lease token after the erasure's
-- commit (`lease_fence`, from the `lease_tokens` sequence); every merge lease at or below it has
-- ended, and the retirement grace (longer than a lease: a worker that lost its lease has stopped
-- writing) has passed since (`fenced_at`).
CREATE TABLE erasures (
    seq                bigserial   NOT NULL UNIQUE,
    email_hash         bytea       PRIMARY KEY CHECK (octet_length(email_hash) IN (16, 32)),
    requested_at       timestamptz NOT NULL DEFAULT now(),
    requested_by       text        NOT NULL,
    lease_fence        bigint,
    fenced_at          timestamptz,
    passes             integer     NOT NULL DEFAULT 0,
    last_pass_at       timestamptz,
    objects_rewritten  bigint      NOT NULL DEFAULT 0,
    completed_at       timestamptz
);

CREATE INDEX erasures_pending ON erasures (requested_at) WHERE completed_at IS NULL;

-- Hashes a merge unit dropped because they are erased, per unit and per file.
ALTER TABLE ranges ADD COLUMN erased BIGINT NOT NULL DEFAULT 0;
ALTER TABLE files ADD COLUMN erased BIGINT NOT NULL DEFAULT 0;

CREATE OR REPLACE VIEW file_records AS
SELECT f.file_id, f.advertiser_id, f.bucket, f.object_key, f.etag, f.size_bytes, f.compression,
       f.state, f.priority, f.paused, f.ranges_total, f.ranges_done, f.rows_ingested,
       f.rows_rejected, f.failure_reason, f.registered_at, f.split_at, f.finished_at,
       f.retired_at, coalesce(a.active_file_id = f.file_id, false) AS active,
       f.store_format, f.base_version, f.superseded_by, f.bucket_bits, f.buckets_done,
       f.cleanup_total, f.cleanup_done, f.members, f.added, f.removed, f.rows_written,
       f.rows_deleted, f.held_reason, f.merged_at, f.activated_at,
       f.rollback_of, f.manifest_expired_at, f.erased
FROM files f
JOIN advertisers a ON a.advertiser_id = f.advertiser_id;
