//! # memberlake
//!
//! memberlake ingests advertisers' member lists from an object-store data lake and answers,
//! at high request rates, whether an email hash is a member of an advertiser's active list.
//!
//! ```text
//! advertiser --PUT--> lake: advertisers/<advertiser_id>/<file>
//! meta-service   : polls the lake, registers each (bucket, key, etag) once in the catalog
//! splitter       : leader-elected; cuts files into byte ranges, reaps expired leases,
//!                  completes files, activates list versions, retires superseded rows
//! compute-worker : pulls range leases by priority, ranged GET, parse + normalize + MD5
//!                  (rayon), writes (email_hash, advertiser_id, list_version) to the store
//! matcher-api    : GET /v1/match, POST /v1/suppress from the store, behind a moka cache
//! ```
//!
//! This crate is the shared domain; each service's `main` is wiring over it:
//! - [`ids`], [`records`], [`ranges`]: the data contract, from the dependency-light
//!   `memberlake-records` crate (identifiers, the hashing contract, the range-boundary rule).
//! - [`lake`]: object access (`s3://` and `file://`), listing and ranged reads.
//! - [`ingest`]: reading one range of a list as a worker does (boundary rule, parse, normalize,
//!   hash, rejects by reason); the worker and `memberlake check` share it.
//! - [`catalog`]: the Postgres control plane (files, ranges, leases, versions).
//! - [`store`]: the CQL data plane (membership changes; legacy memberships).
//! - [`versions`]: the data work of list versions (runs, manifests, diffs) at the work location.
//! - [`work`]: the work location, memberlake's own derived data (runs, manifests, diffs).
//! - [`schema`]: versioned Postgres and CQL migrations and the start-up schema check.
//! - [`error`]: one classification of failures (transient or permanent) for the lake, the
//!   catalog and the store.
//! - [`service`]: the life of a service process (start, serve, stop); [`bootstrap`]: opening
//!   the catalog and the store with their schema checks, readiness checks.
//! - [`config`], [`telemetry`], [`shutdown`], [`http`], [`retry`]: service plumbing.

pub mod bootstrap;
pub mod catalog;
pub mod config;
pub mod connect;
pub mod error;
pub mod http;
pub mod ingest;
pub mod lake;
pub mod retry;
pub mod schema;
pub mod service;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod versions;
pub mod work;

pub use memberlake_records::{filter, ids, manifest, ranges, records, states};
