//! The Postgres control plane: files, their byte ranges and leases, advertisers' active list
//! versions, leader leases. Each query lives in `queries/*.sql` next to this file, commented
//! where a rule hides in it (fencing, SKIP LOCKED, forward-only activation).
//!
//! Postgres errors are mapped once, here, into [`CatalogError`]; callers never match on driver
//! errors.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{PgPool, Row};

use crate::ids::{AdvertiserId, FileId, ListVersion};
use crate::lake::{Compression, LakeObject};
use crate::ranges::{plan_ranges, ByteRange};
use crate::records::RejectReason;

mod operator;
pub use operator::{FileDetail, FileFilter, OperatorAction, Overview, RangeCounts, RangeError};

/// The channel the splitter notifies when a list version is activated.
pub const ACTIVATIONS_CHANNEL: &str = "memberlake_activations";

/// How many rejection samples a range keeps.
pub const MAX_REJECTION_SAMPLES: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("postgres is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
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

impl CatalogError {
    /// Whether the same call could succeed later (database restarting, network).
    pub fn is_transient(&self) -> bool {
        matches!(self, CatalogError::Unavailable(_))
    }
}

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// A leadership term held by this process: the fencing token of every leader action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderTerm {
    pub term: i64,
    pub expires_at: DateTime<Utc>,
}

/// Which ranges a worker slot takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    pub name: String,
    /// Only files up to this size... (`None`: any file)
    pub max_file_bytes: Option<u64>,
    /// ...or with at least this operator priority (urgent files).
    pub min_priority: i32,
}

impl Lane {
    /// Takes any range, most urgent first.
    pub fn bulk() -> Self {
        Self { name: "bulk".into(), max_file_bytes: None, min_priority: i32::MAX }
    }

    /// Takes only ranges of small (`<= max_file_bytes`) or urgent (`priority >= urgent`) files,
    /// so that one huge file never delays a small list by occupying every worker.
    pub fn express(max_file_bytes: u64, urgent: i32) -> Self {
        Self { name: "express".into(), max_file_bytes: Some(max_file_bytes), min_priority: urgent }
    }
}

/// How a worker slot claims: its lane, the per-file lease cap, the priority knobs.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimPolicy {
    pub lane: Lane,
    /// At most this many concurrent leases per file (<= 0: no cap).
    pub per_file_cap: i32,
    pub knobs: crate::config::PriorityArgs,
}

/// A range lease held by a worker. `token` fences every later call about this range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeLease {
    pub file_id: FileId,
    pub range_index: i32,
    pub range: ByteRange,
    pub token: i64,
    pub attempt: i32,
    pub advertiser_id: AdvertiserId,
    pub bucket: String,
    pub object_key: String,
    pub etag: String,
    pub object_size: u64,
    pub compression: Compression,
}

impl RangeLease {
    pub fn list_version(&self) -> ListVersion {
        self.file_id.into()
    }
}

/// A rejected record's position and reason; never its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RejectionSample {
    pub offset: u64,
    pub reason: RejectReason,
}

/// What a worker reports when it finishes a range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeOutcome {
    pub rows: u64,
    pub rejected: u64,
    pub samples: Vec<RejectionSample>,
}

/// What the leader's settle pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settled {
    pub activated: Vec<(AdvertiserId, FileId)>,
    pub superseded: Vec<FileId>,
    pub failed: Vec<(FileId, String)>,
}

/// The control plane.
#[derive(Clone, Debug)]
pub struct Catalog {
    pool: PgPool,
}

impl Catalog {
    /// Connects a pool of `max_connections`, failing fast (5 s) if Postgres is unreachable.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        Ok(Self { pool })
    }

    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    // ---- discovery (meta-service) ----

    /// Registers a lake object once; returns its id if this call registered it.
    pub async fn register_file(&self, bucket: &str, object: &LakeObject) -> Result<Option<FileId>> {
        sqlx::query("INSERT INTO advertisers (advertiser_id) VALUES ($1) ON CONFLICT (advertiser_id) DO NOTHING")
            .bind(object.advertiser_id.as_str())
            .execute(&self.pool)
            .await?;
        let id: Option<i64> = sqlx::query_scalar(include_str!("queries/register_file.sql"))
            .bind(object.advertiser_id.as_str())
            .bind(bucket)
            .bind(&object.key)
            .bind(&object.etag)
            .bind(i64::try_from(object.size).map_err(|_| CatalogError::Invalid("object too large".into()))?)
            .bind(object.last_modified)
            .bind(object.compression.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(id.map(FileId))
    }

    /// The (key, etag) pairs already registered for `bucket`: the seen-set a meta-service
    /// starts from, so that a restart does not re-insert the whole lake.
    pub async fn registered_objects(&self, bucket: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT object_key, etag FROM files WHERE bucket = $1")
            .bind(bucket)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    // ---- leadership (splitter) ----

    /// Takes or renews `role` for `holder`. `current` is the term this holder believes it
    /// holds (renewal) or `None` (take). Returns the term held, or `None` if someone else leads.
    pub async fn acquire_leadership(
        &self,
        role: &str,
        holder: &str,
        ttl: Duration,
        current: Option<i64>,
    ) -> Result<Option<LeaderTerm>> {
        let row = sqlx::query(include_str!("queries/acquire_leadership.sql"))
            .bind(role)
            .bind(holder)
            .bind(ttl.as_secs_f64())
            .bind(current.unwrap_or(-1))
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| LeaderTerm { term: r.get(0), expires_at: r.get(1) }))
    }

    /// Gives up `role` if this term holds it, so a standby can take over at once.
    pub async fn resign_leadership(&self, role: &str, term: i64) -> Result<()> {
        sqlx::query("DELETE FROM leader_leases WHERE role = $1 AND term = $2")
            .bind(role)
            .bind(term)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The current holder of `role`, if its lease is live.
    pub async fn leader(&self, role: &str) -> Result<Option<(String, i64)>> {
        let row = sqlx::query("SELECT holder, term FROM leader_leases WHERE role = $1 AND expires_at > now()")
            .bind(role)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    /// Starts a leader transaction: fails with [`CatalogError::NotLeader`] unless `term` still
    /// holds `role`. The row lock keeps the term from changing hands until commit.
    async fn leader_tx(&self, role: &str, term: i64) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        let mut tx = self.pool.begin().await?;
        let held: Option<i64> = sqlx::query_scalar(
            "SELECT term FROM leader_leases WHERE role = $1 AND term = $2 AND expires_at > now() FOR SHARE",
        )
        .bind(role)
        .bind(term)
        .fetch_optional(&mut *tx)
        .await?;
        if held.is_none() {
            return Err(CatalogError::NotLeader { role: role.to_owned(), term });
        }
        Ok(tx)
    }

    /// Cuts up to `limit` registered files into ranges of `range_size` bytes (compressed files:
    /// one range). Returns the files split and the ranges created.
    pub async fn split_registered_files(
        &self,
        role: &str,
        term: i64,
        range_size: u64,
        limit: i64,
    ) -> Result<(usize, usize)> {
        let mut tx = self.leader_tx(role, term).await?;
        let files = sqlx::query(
            "SELECT file_id, size_bytes, compression FROM files WHERE state = 'registered' \
             ORDER BY file_id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let mut ranges_created = 0;
        for file in &files {
            let file_id: i64 = file.get(0);
            let size: i64 = file.get(1);
            let compression = Compression::parse(file.get::<&str, _>(2)).unwrap_or(Compression::None);
            let plan = plan_ranges(size as u64, range_size, compression.is_splittable());
            let indexes: Vec<i32> = (0..plan.len() as i32).collect();
            let starts: Vec<i64> = plan.iter().map(|r| r.start as i64).collect();
            let ends: Vec<i64> = plan.iter().map(|r| r.end as i64).collect();
            sqlx::query(
                "INSERT INTO ranges (file_id, range_index, start_offset, end_offset) \
                 SELECT $1, * FROM UNNEST($2::int[], $3::bigint[], $4::bigint[])",
            )
            .bind(file_id)
            .bind(&indexes)
            .bind(&starts)
            .bind(&ends)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE files SET state = 'ingesting', ranges_total = $2, range_size = $3, split_at = now() WHERE file_id = $1",
            )
            .bind(file_id)
            .bind(plan.len() as i32)
            .bind(range_size as i64)
            .execute(&mut *tx)
            .await?;
            ranges_created += plan.len();
        }
        tx.commit().await?;
        Ok((files.len(), ranges_created))
    }

    /// Requeues ranges whose lease expired, failing those out of attempts.
    pub async fn reap_expired_leases(&self, role: &str, term: i64, max_attempts: i32) -> Result<(usize, usize)> {
        let mut tx = self.leader_tx(role, term).await?;
        let rows =
            sqlx::query(include_str!("queries/reap_expired_leases.sql")).bind(max_attempts).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        let failed = rows.iter().filter(|r| r.get::<&str, _>(2) == "failed").count();
        Ok((rows.len() - failed, failed))
    }

    /// Fails files with a failed range; completes files whose ranges are all done (failing
    /// those with too many rejected rows) and activates their version if it is the newest.
    /// Activations are notified on [`ACTIVATIONS_CHANNEL`] at commit.
    pub async fn settle_files(&self, role: &str, term: i64, max_reject_ratio: f64) -> Result<Settled> {
        let mut tx = self.leader_tx(role, term).await?;
        let mut settled = Settled::default();

        let broken = sqlx::query(
            "SELECT DISTINCT ON (r.file_id) r.file_id, r.range_index, r.attempts, coalesce(r.last_error, 'unknown error') \
             FROM ranges r JOIN files f ON f.file_id = r.file_id \
             WHERE f.state = 'ingesting' AND r.state = 'failed' ORDER BY r.file_id, r.range_index",
        )
        .fetch_all(&mut *tx)
        .await?;
        for row in broken {
            let file_id = FileId(row.get(0));
            let reason = format!(
                "range {} failed after {} attempts: {}",
                row.get::<i32, _>(1),
                row.get::<i32, _>(2),
                row.get::<String, _>(3)
            );
            fail_file_in(&mut tx, file_id, &reason, "failed").await?;
            settled.failed.push((file_id, reason));
        }

        let complete = sqlx::query(
            "SELECT file_id, advertiser_id, rows_ingested, rows_rejected FROM files \
             WHERE state = 'ingesting' AND ranges_done = ranges_total ORDER BY file_id FOR UPDATE",
        )
        .fetch_all(&mut *tx)
        .await?;
        for row in complete {
            let file_id = FileId(row.get(0));
            let advertiser: String = row.get(1);
            let rows: i64 = row.get(2);
            let rejected: i64 = row.get(3);
            let total = rows + rejected;
            if total > 0 && (rejected as f64) > max_reject_ratio * (total as f64) {
                let reason = format!(
                    "too many rejected rows: {rejected} of {total} ({:.1}% > limit {:.1}%)",
                    100.0 * rejected as f64 / total as f64,
                    100.0 * max_reject_ratio
                );
                fail_file_in(&mut tx, file_id, &reason, "failed").await?;
                settled.failed.push((file_id, reason));
                continue;
            }
            sqlx::query("UPDATE files SET state = 'ingested', finished_at = now() WHERE file_id = $1")
                .bind(file_id.0)
                .execute(&mut *tx)
                .await?;
            let activated: Option<String> = sqlx::query_scalar(include_str!("queries/activate_file.sql"))
                .bind(&advertiser)
                .bind(file_id.0)
                .fetch_optional(&mut *tx)
                .await?;
            let advertiser_id = AdvertiserId::parse(&advertiser).map_err(|e| CatalogError::Invalid(e.to_string()))?;
            if activated.is_some() {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(ACTIVATIONS_CHANNEL)
                    .bind(format!("{advertiser}:{}", file_id.0))
                    .execute(&mut *tx)
                    .await?;
                settled.activated.push((advertiser_id, file_id));
            } else {
                settled.superseded.push(file_id);
            }
        }
        tx.commit().await?;
        Ok(settled)
    }

    /// Versions whose rows may be retired from the store (see `queries/retirable_files.sql`).
    pub async fn retirable_files(&self, grace: Duration) -> Result<Vec<(FileId, AdvertiserId)>> {
        let rows = sqlx::query(include_str!("queries/retirable_files.sql"))
            .bind(grace.as_secs_f64())
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| {
                let adv = AdvertiserId::parse(r.get::<&str, _>(1)).map_err(|e| CatalogError::Invalid(e.to_string()))?;
                Ok((FileId(r.get(0)), adv))
            })
            .collect()
    }

    /// Records that these versions' rows are gone from the store. A file retried by an
    /// operator while the pass ran may have lost rows it had already rewritten: its done ranges
    /// are queued again.
    pub async fn mark_retired(&self, role: &str, term: i64, files: &[FileId]) -> Result<()> {
        let mut tx = self.leader_tx(role, term).await?;
        let ids: Vec<i64> = files.iter().map(|f| f.0).collect();
        sqlx::query("UPDATE files SET retired_at = now() WHERE file_id = ANY($1) AND state IN ('ingested', 'failed', 'cancelled')")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        let redo = sqlx::query(
            "UPDATE ranges r SET state = 'queued', attempts = 0, queued_at = now() FROM files f \
             WHERE f.file_id = r.file_id AND f.file_id = ANY($1) AND f.state = 'ingesting' AND r.state = 'done'",
        )
        .bind(&ids)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if redo > 0 {
            sqlx::query(
                "UPDATE files f SET ranges_done = s.done, rows_ingested = s.rows, rows_rejected = s.rejected \
                 FROM (SELECT file_id, count(*) FILTER (WHERE state = 'done')::int AS done, \
                              coalesce(sum(rows_ingested) FILTER (WHERE state = 'done'), 0)::bigint AS rows, \
                              coalesce(sum(rows_rejected) FILTER (WHERE state = 'done'), 0)::bigint AS rejected \
                       FROM ranges WHERE file_id = ANY($1) GROUP BY file_id) s \
                 WHERE f.file_id = s.file_id AND f.state = 'ingesting'",
            )
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
            tracing::warn!(ranges = redo, "files retried during retirement: their done ranges are redone");
        }
        tx.commit().await?;
        Ok(())
    }

    // ---- range leases (compute-worker) ----

    /// Claims the most urgent queued range this `policy` allows, or `None` if there is none.
    pub async fn claim_range(&self, owner: &str, ttl: Duration, policy: &ClaimPolicy) -> Result<Option<RangeLease>> {
        let k = &policy.knobs;
        let row = sqlx::query(include_str!("queries/claim_range.sql"))
            .bind(owner)
            .bind(ttl.as_secs_f64())
            .bind(policy.lane.max_file_bytes.map(|b| b as i64))
            .bind(policy.lane.min_priority)
            .bind(policy.per_file_cap)
            .bind(k.priority_per_level)
            .bind(k.priority_per_log_weight)
            .bind(k.priority_aging_per_second)
            .bind(k.priority_per_size_doubling)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let advertiser =
                AdvertiserId::parse(r.get::<&str, _>(6)).map_err(|e| CatalogError::Invalid(e.to_string()))?;
            Ok(RangeLease {
                file_id: FileId(r.get(0)),
                range_index: r.get(1),
                range: ByteRange::new(r.get::<i64, _>(2) as u64, r.get::<i64, _>(3) as u64),
                token: r.get(4),
                attempt: r.get(5),
                advertiser_id: advertiser,
                bucket: r.get(7),
                object_key: r.get(8),
                etag: r.get(9),
                object_size: r.get::<i64, _>(10) as u64,
                compression: Compression::parse(r.get::<&str, _>(11)).unwrap_or(Compression::None),
            })
        })
        .transpose()
    }

    /// Extends the lease; `false` means it is lost (expired and re-leased, or the file was
    /// cancelled or failed) and the worker must stop working on it.
    pub async fn heartbeat(&self, lease: &RangeLease, ttl: Duration) -> Result<bool> {
        let row = sqlx::query(include_str!("queries/heartbeat_range.sql"))
            .bind(lease.file_id.0)
            .bind(lease.range_index)
            .bind(lease.token)
            .bind(ttl.as_secs_f64())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Completes the range if the lease is still ours; `false` means the lease was lost and the
    /// outcome discarded (another worker will redo or has redone the range).
    pub async fn complete_range(&self, lease: &RangeLease, outcome: &RangeOutcome) -> Result<bool> {
        let samples = serde_json::to_value(&outcome.samples).map_err(|e| CatalogError::Invalid(e.to_string()))?;
        let row = sqlx::query(include_str!("queries/complete_range.sql"))
            .bind(lease.file_id.0)
            .bind(lease.range_index)
            .bind(lease.token)
            .bind(outcome.rows as i64)
            .bind(outcome.rejected as i64)
            .bind(samples)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Returns the lease. After a transient error (`count_attempt`) the range is retried, or
    /// failed for good once it has used `max_attempts`; a release at shutdown does not count.
    /// Returns the range's new state, if the lease was still ours.
    pub async fn release_range(
        &self,
        lease: &RangeLease,
        error: &str,
        max_attempts: i32,
        count_attempt: bool,
    ) -> Result<Option<String>> {
        let state: Option<String> = sqlx::query_scalar(include_str!("queries/release_range.sql"))
            .bind(lease.file_id.0)
            .bind(lease.range_index)
            .bind(lease.token)
            .bind(truncate(error, 1000))
            .bind(max_attempts)
            .bind(count_attempt)
            .fetch_optional(&self.pool)
            .await?;
        Ok(state)
    }

    /// Fails the lease's file for good (object deleted or replaced), if the lease is still ours.
    pub async fn fail_file(&self, lease: &RangeLease, reason: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let held: Option<i32> = sqlx::query_scalar(
            "SELECT range_index FROM ranges WHERE file_id = $1 AND range_index = $2 AND lease_token = $3 AND state = 'leased' FOR UPDATE",
        )
        .bind(lease.file_id.0)
        .bind(lease.range_index)
        .bind(lease.token)
        .fetch_optional(&mut *tx)
        .await?;
        if held.is_none() {
            return Ok(false);
        }
        sqlx::query("UPDATE ranges SET last_error = $3 WHERE file_id = $1 AND range_index = $2")
            .bind(lease.file_id.0)
            .bind(lease.range_index)
            .bind(truncate(reason, 1000))
            .execute(&mut *tx)
            .await?;
        fail_file_in(&mut tx, lease.file_id, reason, "failed").await?;
        tx.commit().await?;
        Ok(true)
    }

    // ---- active versions (matcher) ----

    /// Every advertiser's active list version.
    pub async fn active_versions(&self) -> Result<Vec<(AdvertiserId, ListVersion)>> {
        let rows =
            sqlx::query("SELECT advertiser_id, active_file_id FROM advertisers WHERE active_file_id IS NOT NULL")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|r| {
                let adv = AdvertiserId::parse(r.get::<&str, _>(0)).map_err(|e| CatalogError::Invalid(e.to_string()))?;
                Ok((adv, ListVersion(r.get(1))))
            })
            .collect()
    }

    /// A listener on [`ACTIVATIONS_CHANNEL`].
    pub async fn listen_activations(&self) -> Result<PgListener> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(ACTIVATIONS_CHANNEL).await?;
        Ok(listener)
    }

    // ---- reads for operators and tests ----

    pub async fn file(&self, id: FileId) -> Result<Option<FileRecord>> {
        let row =
            sqlx::query_as::<_, FileRecord>(concat!(include_str!("queries/file_select.sql"), " WHERE f.file_id = $1"))
                .bind(id.0)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row)
    }

    pub async fn files(&self) -> Result<Vec<FileRecord>> {
        let rows =
            sqlx::query_as::<_, FileRecord>(concat!(include_str!("queries/file_select.sql"), " ORDER BY f.file_id"))
                .fetch_all(&self.pool)
                .await?;
        Ok(rows)
    }

    /// Rejection samples of a file's ranges, in offset order.
    pub async fn rejection_samples(&self, id: FileId) -> Result<Vec<RejectionSample>> {
        let rows: Vec<serde_json::Value> =
            sqlx::query_scalar("SELECT rejection_samples FROM ranges WHERE file_id = $1 ORDER BY range_index")
                .bind(id.0)
                .fetch_all(&self.pool)
                .await?;
        let mut out = Vec::new();
        for v in rows {
            let samples: Vec<RejectionSample> =
                serde_json::from_value(v).map_err(|e| CatalogError::Invalid(e.to_string()))?;
            out.extend(samples);
        }
        Ok(out)
    }
}

/// Marks a file failed or cancelled and revokes its outstanding leases: heartbeats and
/// completions of those leases now find nothing, so their workers stop.
async fn fail_file_in(tx: &mut sqlx::PgConnection, file_id: FileId, reason: &str, state: &str) -> Result<()> {
    sqlx::query(
        "UPDATE files SET state = $2::file_state, failure_reason = $3, finished_at = now() \
         WHERE file_id = $1 AND state IN ('registered', 'ingesting')",
    )
    .bind(file_id.0)
    .bind(state)
    .bind(truncate(reason, 1000))
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE ranges SET state = 'failed', lease_token = NULL, lease_expires_at = NULL \
         WHERE file_id = $1 AND state IN ('queued', 'leased')",
    )
    .bind(file_id.0)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

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

/// A file as operators and tests see it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct FileRecord {
    pub file_id: i64,
    pub advertiser_id: String,
    pub object_key: String,
    pub etag: String,
    pub size_bytes: i64,
    pub compression: String,
    pub state: String,
    pub priority: i32,
    pub paused: bool,
    pub ranges_total: i32,
    pub ranges_done: i32,
    pub rows_ingested: i64,
    pub rows_rejected: i64,
    pub failure_reason: Option<String>,
    pub registered_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub retired_at: Option<DateTime<Utc>>,
    pub active: bool,
}
