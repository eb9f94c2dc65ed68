//! The Postgres control plane: files, their byte ranges and leases, advertisers' active list
//! versions, leader leases, the operator audit log.
//!
//! One rule for every query: it lives in `queries/<table>/<name>.sql` next to this file,
//! commented where a rule hides in it (fencing, SKIP LOCKED, forward-only activation), and its
//! rows decode by name (`FromRow`) into domain types; file and range states are the
//! [`FileState`] and [`RangeState`] enums, never strings. Every query file is prepared against
//! a migrated database by the catalog test suite (`tests/tests/catalog.rs`).
//!
//! The modules follow the tables' owners:
//! - [`files`](self::files): discovery registers lake objects; reads of files;
//! - [`leases`](self::leases): a worker's range lease and its owner, [`LeaseGuard`];
//! - [`leadership`](self::leadership): the splitter's term, [`Leadership`], through which every
//!   leader action goes, fenced by the term;
//! - [`versions`](self::versions): advertisers' active versions for the matcher;
//! - `health`: the queue per lane, files per state and SLA risk an operator alerts on;
//! - [`operator`](self::operator): operators' views and audited actions;
//! - [`erasures`](self::erasures): a person removed from every list, for good;
//! - `replicas`: the live replicas of each API surface, for their shared rate limits.
//!
//! Postgres errors are mapped once, here, into [`CatalogError`]; callers never match on driver
//! errors.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::error::{Classify, ErrorClass};

pub use crate::states::{FileState, RangeState, WorkStage};

mod erasures;
mod files;
mod health;
mod leadership;
mod leases;
mod operator;
mod replicas;
mod versions;

pub use erasures::{Erasure, ErasureBacklog, PendingErasure, VersionWithWork, ERASURES_CHANNEL};
pub use files::{FileRecord, VersionRecord};
pub use health::{HealthQuery, LaneQueue, PipelineHealth};
pub use leadership::{
    bucket_bits_for, reject_guard, shrink_guard, CleanupQueued, LeaderInfo, Leadership, SettlePolicy, Settled,
    WorkToDelete, APPROVED, APPROVED_REJECTS, DEFAULT_BUCKET_TARGET,
};
pub use leases::{
    BucketReport, ClaimPolicy, GiveBack, Lane, LeaseGuard, PriorityKnobs, RangeReport, RejectionSample, UnitLease,
    UnitReport, MAX_REJECTION_SAMPLES,
};
pub use operator::{
    FileDetail, FileFilter, MinuteRows, OperatorAction, Overview, RangeCounts, RangeError, ReasonCount,
};
pub use versions::{list_expired, ActiveManifest, ActiveVersion, AdvertiserLifespan, ACTIVATIONS_CHANNEL};

/// The text of `queries/<table>/<name>.sql`.
macro_rules! sql {
    ($table:literal, $name:literal) => {
        include_str!(concat!("queries/", $table, "/", $name, ".sql"))
    };
}
pub(crate) use sql;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("postgres is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// Postgres refused the connection for a reason a setting fixes (see
    /// [`crate::connect::pg_hint`]).
    #[error("cannot connect to Postgres: {hint} ({source})")]
    Refused { hint: String, source: sqlx::Error },
    #[error(transparent)]
    Settings(#[from] crate::connect::SettingsError),
    #[error("postgres query failed: {0}")]
    Query(#[source] sqlx::Error),
    #[error("this process no longer holds the {role} leadership (term {term})")]
    NotLeader { role: String, term: i64 },
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
}

impl From<sqlx::Error> for CatalogError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => {
                CatalogError::Unavailable(e)
            }
            sqlx::Error::Database(ref db) if db.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")) => {
                // admin_shutdown, cannot_connect_now, connection exceptions
                CatalogError::Unavailable(e)
            }
            other => CatalogError::Query(other),
        }
    }
}

impl Classify for CatalogError {
    /// Transient: Postgres unreachable or restarting. Everything else (a failed query, a lost
    /// term, invalid input, a missing row, a conflicting state) gives the same answer again.
    fn class(&self) -> ErrorClass {
        match self {
            CatalogError::Unavailable(_) => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        }
    }
}

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// The control plane: a pool of connections to it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Catalog {
    pool: PgPool,
}

impl Catalog {
    /// Connects a pool of `max_connections`, failing fast (5 s) if Postgres is unreachable.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let args = crate::config::DatabaseArgs {
            database_url: url.to_owned(),
            database_max_connections: max_connections,
            database_password_file: None,
            database_tls_ca_file: None,
        };
        Self::open(&args).await
    }

    /// Connects as a service does: the URL plus the password and CA files of `args`; a refusal
    /// that a setting fixes says which.
    pub async fn open(args: &crate::config::DatabaseArgs) -> Result<Self> {
        let options = crate::connect::pg_options(args)?;
        let pool = PgPoolOptions::new()
            .max_connections(args.database_max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| match crate::connect::pg_hint(&e, args) {
                Some(hint) => CatalogError::Refused { hint, source: e },
                None => CatalogError::from(e),
            })?;
        Ok(Self { pool })
    }

    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query(include_str!("queries/ping.sql")).execute(&self.pool).await?;
        Ok(())
    }
}

/// Ends a file that is still in flight as `state` (failed or cancelled) and revokes its
/// outstanding leases: heartbeats and completions of those leases now find nothing, so their
/// workers stop.
async fn end_file_in(
    tx: &mut sqlx::PgConnection,
    file_id: crate::ids::FileId,
    reason: &str,
    state: FileState,
) -> Result<()> {
    debug_assert!(matches!(state, FileState::Failed | FileState::Cancelled));
    sqlx::query(sql!("files", "fail")).bind(file_id).bind(state).bind(truncate(reason, 1000)).execute(&mut *tx).await?;
    sqlx::query(sql!("ranges", "revoke_file")).bind(file_id).execute(&mut *tx).await?;
    Ok(())
}

/// Bounds operator-facing error text stored in the catalog.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Seconds as Postgres `make_interval(secs => ...)` takes them.
fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Every query file of the catalog, `(table/name, text)`, for the test suite's check that each
/// one prepares against the migrated schema.
pub fn query_files() -> Vec<(String, &'static str)> {
    macro_rules! all {
        ($($table:literal: [$($name:literal),* $(,)?]),* $(,)?) => {
            vec![$($((concat!($table, "/", $name).to_owned(), sql!($table, $name)),)*)*]
        };
    }
    let mut out = all!(
        "api_replicas": ["heartbeat", "leave"],
        "erasures": [
            "all", "by_hash", "fence", "in_range", "pending", "pending_count", "record_pass", "request", "since",
            "work_versions",
        ],
        "advertisers": ["activate", "active_manifest", "active_versions", "ensure", "lifespans", "lock_active", "notify_activation", "set_lifespan", "set_weight"],
        "files": [
            "all", "approve", "begin_retirement", "by_id", "expire_manifests", "fail", "finish_cleanup",
            "finish_retirement", "hold", "in_flight_of", "insert_rollback", "list", "lock_for_completion", "lock_for_retry",
            "lock_rollback_target", "lock_state", "lock_with_failed_ranges", "mark_ingested", "mark_split",
            "mark_superseded", "pace", "queue_cleanup", "ready_to_activate", "ready_to_settle", "register",
            "registered_objects", "reopen", "reregister", "set_paused", "set_priority", "split_in_flight", "start_merge", "supersede_stale",
            "to_retire", "to_split", "to_undo", "work_deleted", "work_to_delete",
            "count_by_state", "sla_at_risk",
        ],
        "leader_leases": ["acquire", "current", "hold_term", "resign"],
        "operator_actions": ["latest", "record"],
        "ranges": [
            "claim", "complete", "complete_bucket", "complete_cleanup", "count_by_state", "drop_all_units",
            "drop_version_units",
            "first_failed", "heartbeat", "insert_plan", "insert_units", "last_errors", "lock_lease", "queue_depth",
            "reap_expired", "rejection_samples", "rejects_by_reason", "release", "retry_failed", "revoke_file", "rows_per_minute",
            "runs_of_file", "set_last_error",
            "queue_by_lane",
        ],
    );
    out.push(("ping".to_owned(), include_str!("queries/ping.sql")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_query_file_is_listed_once() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/catalog/queries");
        let mut on_disk = Vec::new();
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "sql") {
                    let rel = path.strip_prefix(&dir).unwrap().with_extension("");
                    on_disk.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        on_disk.sort();
        let mut listed: Vec<String> = query_files().into_iter().map(|(name, _)| name).collect();
        listed.sort();
        assert_eq!(listed, on_disk, "query_files() must list every queries/**/*.sql file exactly once");
    }

    #[test]
    fn truncation_keeps_char_boundaries() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("ééé", 3), "é…");
    }
}
