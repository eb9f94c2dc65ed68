-- memberlake control plane. Small tables: files, their byte ranges and range leases,
-- advertisers with their active list version, leader leases, and the operator audit log.

CREATE TABLE advertisers (
    advertiser_id   TEXT PRIMARY KEY CHECK (advertiser_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    -- Operator weight in the effective priority (see catalog/queries/claim_range.sql).
    weight          DOUBLE PRECISION NOT NULL DEFAULT 1.0 CHECK (weight > 0),
    -- The newest fully ingested file; its id is the list version the matcher answers from.
    active_file_id  BIGINT,
    activated_at    TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TYPE file_state AS ENUM (
    'registered',   -- seen in the lake, not yet cut into ranges
    'ingesting',    -- ranges exist; workers lease them
    'ingested',     -- every range done; activated unless a newer version already was
    'failed',       -- a range failed for good, or too many rows were rejected; never activates
    'cancelled'     -- by an operator; never activates
);

CREATE TABLE files (
    file_id         BIGSERIAL PRIMARY KEY,
    advertiser_id   TEXT NOT NULL REFERENCES advertisers (advertiser_id),
    bucket          TEXT NOT NULL,
    object_key      TEXT NOT NULL,
    etag            TEXT NOT NULL,
    size_bytes      BIGINT NOT NULL CHECK (size_bytes >= 0),
    last_modified   TIMESTAMPTZ NOT NULL,
    -- 'none', 'gzip' or 'zstd': compressed objects cannot be split and are one range.
    compression     TEXT NOT NULL DEFAULT 'none' CHECK (compression IN ('none', 'gzip', 'zstd')),
    state           file_state NOT NULL DEFAULT 'registered',
    -- Operator priority: higher runs first.
    priority        INTEGER NOT NULL DEFAULT 0,
    paused          BOOLEAN NOT NULL DEFAULT FALSE,
    range_size      BIGINT,
    ranges_total    INTEGER NOT NULL DEFAULT 0,
    ranges_done     INTEGER NOT NULL DEFAULT 0,
    rows_ingested   BIGINT NOT NULL DEFAULT 0,
    rows_rejected   BIGINT NOT NULL DEFAULT 0,
    failure_reason  TEXT,
    registered_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    split_at        TIMESTAMPTZ,
    finished_at     TIMESTAMPTZ,
    -- Set once this (superseded, failed or cancelled) version's rows are gone from the store.
    retired_at      TIMESTAMPTZ,
    UNIQUE (bucket, object_key, etag)
);

ALTER TABLE advertisers
    ADD CONSTRAINT advertisers_active_file_fk FOREIGN KEY (active_file_id) REFERENCES files (file_id);

CREATE INDEX files_by_state ON files (state, file_id);
CREATE INDEX files_by_advertiser ON files (advertiser_id, file_id);

CREATE TYPE range_state AS ENUM ('queued', 'leased', 'done', 'failed');

-- Every lease ever handed out gets a fresh token from this sequence; a completion is accepted
-- only with the token of the current lease (fencing).
CREATE SEQUENCE lease_tokens;

CREATE TABLE ranges (
    file_id             BIGINT NOT NULL REFERENCES files (file_id) ON DELETE CASCADE,
    range_index         INTEGER NOT NULL,
    start_offset        BIGINT NOT NULL,
    end_offset          BIGINT NOT NULL,
    state               range_state NOT NULL DEFAULT 'queued',
    lease_owner         TEXT,
    lease_token         BIGINT,
    lease_expires_at    TIMESTAMPTZ,
    attempts            INTEGER NOT NULL DEFAULT 0,
    rows_ingested       BIGINT NOT NULL DEFAULT 0,
    rows_rejected       BIGINT NOT NULL DEFAULT 0,
    -- Up to a few {offset, reason} pairs; never the record itself.
    rejection_samples   JSONB NOT NULL DEFAULT '[]',
    last_error          TEXT,
    queued_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at         TIMESTAMPTZ,
    PRIMARY KEY (file_id, range_index),
    CHECK (start_offset <= end_offset)
);

-- The claim query scans queued ranges only (graphile-worker's partial-index trick).
CREATE INDEX ranges_queued ON ranges (file_id, range_index) WHERE state = 'queued';
-- The reaper scans leased ranges by expiry.
CREATE INDEX ranges_leased ON ranges (lease_expires_at) WHERE state = 'leased';

-- One row per leader-elected role. The holder renews before expiry; anyone may take an
-- expired row, and every take bumps the token (River's elector).
CREATE SEQUENCE leader_terms;

CREATE TABLE leader_leases (
    role        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    term        BIGINT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE operator_actions (
    action_id   BIGSERIAL PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    details     JSONB NOT NULL DEFAULT '{}'
);
