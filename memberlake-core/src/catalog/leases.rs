//! Range leases: how a worker claims a range, keeps it, and ends it.
//!
//! A claim returns a [`LeaseGuard`], the one owner of a held lease: it runs the heartbeat that
//! keeps the lease alive, exposes the signal that fires when the lease is lost (expired and
//! re-leased, or the file failed or was cancelled), and is consumed by exactly one ending —
//! [`complete`](LeaseGuard::complete), [`give_back`](LeaseGuard::give_back) or
//! [`fail_file`](LeaseGuard::fail_file). Dropped without an ending, the heartbeat stops and the
//! lease expires, to be reaped by the splitter.
//!
//! Architecture invariant: every call about a leased range presents the lease token drawn at
//! claim time (fencing). A call with a stale token finds nothing and changes nothing, so a
//! worker that stalled past its lease can never overwrite the work of the one that took over.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{end_file_in, secs, sql, truncate, Catalog, FileState, RangeState, Result};
use crate::ids::{AdvertiserId, FileId, ListVersion};
use crate::lake::Compression;
use crate::ranges::ByteRange;
use crate::records::RejectReason;
use crate::states::WorkStage;

/// How many rejection samples a range keeps.
pub const MAX_REJECTION_SAMPLES: usize = 10;

/// Knobs of the effective priority (see `migrations/postgres/0002_priorities.sql`); workers and
/// the operator API compute it alike from them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PriorityKnobs {
    pub per_level: f64,
    pub per_log_weight: f64,
    pub aging_per_second: f64,
    pub per_size_doubling: f64,
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

/// How a worker slot claims: its lake, its lane, the per-file lease cap, the priority knobs.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimPolicy {
    /// The lake this worker reads (`Lake::bucket`): only files registered from it are claimed.
    pub lake: String,
    pub lane: Lane,
    /// At most this many concurrent leases per file (<= 0: no cap).
    pub per_file_cap: i32,
    pub knobs: PriorityKnobs,
}

/// A lease on one work unit of a file: for an ingest unit, which bytes of which object; for a
/// merge, undo or retire unit, which bucket of which version; and the token that fences every
/// later call about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitLease {
    pub file_id: FileId,
    pub stage: WorkStage,
    /// The byte range (ingest) or the bucket (merge, undo, retire).
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
    /// Bucket bits of this version (set once it merges).
    pub bucket_bits: Option<u8>,
    /// The version a merge diffs against, with its bucket bits (`None`: a first version).
    pub base: Option<(ListVersion, u8)>,
    /// The version that replaced this one, with its bucket bits: a retire unit's diff.
    pub successor: Option<(ListVersion, u8)>,
    /// A rollback's merge: the version whose manifest it restores (instead of ingested runs),
    /// with its bucket bits.
    pub restores: Option<(ListVersion, u8)>,
}

impl UnitLease {
    pub fn list_version(&self) -> ListVersion {
        self.file_id.into()
    }
}

/// A claimed range as `ranges/claim.sql` returns it.
#[derive(sqlx::FromRow)]
struct ClaimedRow {
    file_id: FileId,
    stage: WorkStage,
    range_index: i32,
    #[sqlx(try_from = "i64")]
    start_offset: u64,
    #[sqlx(try_from = "i64")]
    end_offset: u64,
    lease_token: i64,
    attempts: i32,
    advertiser_id: AdvertiserId,
    bucket: String,
    object_key: String,
    etag: String,
    #[sqlx(try_from = "i64")]
    size_bytes: u64,
    compression: Compression,
    bucket_bits: Option<i16>,
    base_version: Option<FileId>,
    base_bucket_bits: Option<i16>,
    superseded_by: Option<FileId>,
    successor_bucket_bits: Option<i16>,
    rollback_of: Option<FileId>,
    rollback_bucket_bits: Option<i16>,
}

impl From<ClaimedRow> for UnitLease {
    fn from(r: ClaimedRow) -> Self {
        let bits = |b: Option<i16>| b.and_then(|b| u8::try_from(b).ok());
        let version_with_bits = |v: Option<FileId>, b: Option<i16>| Some((ListVersion::from(v?), bits(b)?));
        UnitLease {
            file_id: r.file_id,
            stage: r.stage,
            bucket_bits: bits(r.bucket_bits),
            base: version_with_bits(r.base_version, r.base_bucket_bits),
            successor: version_with_bits(r.superseded_by, r.successor_bucket_bits),
            restores: version_with_bits(r.rollback_of, r.rollback_bucket_bits),
            range_index: r.range_index,
            range: ByteRange::new(r.start_offset, r.end_offset),
            token: r.lease_token,
            attempt: r.attempts,
            advertiser_id: r.advertiser_id,
            bucket: r.bucket,
            object_key: r.object_key,
            etag: r.etag,
            object_size: r.size_bytes,
            compression: r.compression,
        }
    }
}

/// A rejected record's position and reason; never its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectionSample {
    pub offset: u64,
    pub reason: RejectReason,
}

/// What a worker reports when it finishes an ingest range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeReport {
    pub rows: u64,
    pub rejected: u64,
    /// `rejected`, by reason.
    pub rejected_by_reason: BTreeMap<RejectReason, u64>,
    pub samples: Vec<RejectionSample>,
    /// Sorted runs written (a range spills a run every so many hashes).
    pub run_parts: u32,
    /// Valid rows dropped because their hash is erased (`catalog::erasures`).
    pub erased: u64,
}

/// What a worker reports when it finishes a merge unit (one bucket of a version).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketReport {
    /// Distinct members of the version in this bucket.
    pub members: u64,
    pub added: u64,
    pub removed: u64,
    /// Store rows written (added + removed).
    pub rows_written: u64,
    /// Distinct hashes dropped because they are erased.
    pub erased: u64,
}

/// What a finished unit reports, by stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitReport {
    Ingest(RangeReport),
    Merge(BucketReport),
    /// An undo or retire unit: store rows deleted.
    Cleanup {
        rows_deleted: u64,
    },
}

/// Why a lease is given back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GiveBack {
    /// A transient failure: the attempt counts; the range is queued again, or fails for good
    /// once it has used `max_attempts`.
    AfterError { error: String, max_attempts: i32 },
    /// The worker is shutting down: the attempt is handed back.
    AtShutdown,
    /// The fault is the worker's own (e.g. its lake credentials were refused), not the
    /// range's: the attempt is handed back and the error recorded for operators.
    ReplicaFault { error: String },
}

impl Catalog {
    /// Claims the most urgent queued range `policy` allows and starts its heartbeat; `None` if
    /// there is none.
    pub async fn claim_range(&self, owner: &str, ttl: Duration, policy: &ClaimPolicy) -> Result<Option<LeaseGuard>> {
        let k = &policy.knobs;
        let claimed: Option<ClaimedRow> = sqlx::query_as(sql!("ranges", "claim"))
            .bind(owner)
            .bind(secs(ttl))
            .bind(policy.lane.max_file_bytes.map(|b| i64::try_from(b).unwrap_or(i64::MAX)))
            .bind(policy.lane.min_priority)
            .bind(policy.per_file_cap)
            .bind(k.per_level)
            .bind(k.per_log_weight)
            .bind(k.aging_per_second)
            .bind(k.per_size_doubling)
            .bind(&policy.lake)
            .fetch_optional(&self.pool)
            .await?;
        Ok(claimed.map(|row| LeaseGuard::start(self.clone(), row.into(), ttl)))
    }

    /// Extends the lease; `false` means it is lost (expired and re-leased, or the file was
    /// cancelled or failed) and the worker must stop working on it.
    async fn heartbeat(&self, lease: &UnitLease, ttl: Duration) -> Result<bool> {
        let renewed: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(sql!("ranges", "heartbeat"))
            .bind(lease.file_id)
            .bind(lease.range_index)
            .bind(lease.token)
            .bind(secs(ttl))
            .fetch_optional(&self.pool)
            .await?;
        Ok(renewed.is_some())
    }

    /// Completes the unit if the lease is still ours; `false` means the lease was lost and the
    /// report discarded (another worker will redo or has redone the unit).
    async fn complete_unit(&self, lease: &UnitLease, report: &UnitReport) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(sql!("files", "lock_for_completion")).bind(lease.file_id).execute(&mut *tx).await?;
        let done: Option<FileId> = match report {
            UnitReport::Ingest(report) => {
                sqlx::query_scalar(sql!("ranges", "complete"))
                    .bind(lease.file_id)
                    .bind(lease.range_index)
                    .bind(lease.token)
                    .bind(report.rows as i64)
                    .bind(report.rejected as i64)
                    .bind(Json(&report.samples))
                    .bind(report.run_parts as i32)
                    .bind(Json(&report.rejected_by_reason))
                    .bind(report.erased as i64)
                    .fetch_optional(&mut *tx)
                    .await?
            }
            UnitReport::Merge(report) => {
                sqlx::query_scalar(sql!("ranges", "complete_bucket"))
                    .bind(lease.file_id)
                    .bind(lease.range_index)
                    .bind(lease.token)
                    .bind(report.members as i64)
                    .bind(report.added as i64)
                    .bind(report.removed as i64)
                    .bind(report.rows_written as i64)
                    .bind(report.erased as i64)
                    .fetch_optional(&mut *tx)
                    .await?
            }
            UnitReport::Cleanup { rows_deleted } => {
                sqlx::query_scalar(sql!("ranges", "complete_cleanup"))
                    .bind(lease.file_id)
                    .bind(lease.range_index)
                    .bind(lease.token)
                    .bind(*rows_deleted as i64)
                    .fetch_optional(&mut *tx)
                    .await?
            }
        };
        tx.commit().await?;
        Ok(done.is_some())
    }

    /// The sorted runs of `file`'s ranges: `(range, parts)` in range order.
    pub async fn runs_of(&self, file: FileId) -> Result<Vec<(i32, u32)>> {
        let rows: Vec<(i32, i32)> =
            sqlx::query_as(sql!("ranges", "runs_of_file")).bind(file).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|(range, parts)| (range, parts.max(0) as u32)).collect())
    }

    /// Returns the lease; the range's new state, if the lease was still ours.
    async fn release_range(&self, lease: &UnitLease, why: &GiveBack) -> Result<Option<RangeState>> {
        let (error, max_attempts, count_attempt) = match why {
            GiveBack::AfterError { error, max_attempts } => (truncate(error, 1000), *max_attempts, true),
            GiveBack::AtShutdown => ("given back at shutdown".to_owned(), i32::MAX, false),
            GiveBack::ReplicaFault { error } => (truncate(error, 1000), i32::MAX, false),
        };
        Ok(sqlx::query_scalar(sql!("ranges", "release"))
            .bind(lease.file_id)
            .bind(lease.range_index)
            .bind(lease.token)
            .bind(error)
            .bind(max_attempts)
            .bind(count_attempt)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Fails the lease's file for good, if the lease is still ours.
    async fn fail_leased_file(&self, lease: &UnitLease, reason: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let held: Option<i32> = sqlx::query_scalar(sql!("ranges", "lock_lease"))
            .bind(lease.file_id)
            .bind(lease.range_index)
            .bind(lease.token)
            .fetch_optional(&mut *tx)
            .await?;
        if held.is_none() {
            return Ok(false);
        }
        sqlx::query(sql!("ranges", "set_last_error"))
            .bind(lease.file_id)
            .bind(lease.token)
            .bind(truncate(reason, 1000))
            .execute(&mut *tx)
            .await?;
        end_file_in(&mut tx, lease.file_id, reason, FileState::Failed).await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// A lease this process holds: the heartbeat keeping it alive and the signal that it was lost.
/// Consumed by one ending; see the module documentation.
#[derive(Debug)]
pub struct LeaseGuard {
    catalog: Catalog,
    lease: UnitLease,
    ttl: Duration,
    lost: CancellationToken,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl LeaseGuard {
    fn start(catalog: Catalog, lease: UnitLease, ttl: Duration) -> Self {
        let lost = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat(catalog.clone(), lease.clone(), ttl, lost.clone()));
        Self { catalog, lease, ttl, lost, heartbeat }
    }

    pub fn lease(&self) -> &UnitLease {
        &self.lease
    }

    /// Cancelled when the lease is gone: work on the range must stop, its result is void.
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Records the range done. `Ok(false)`: the lease was lost meanwhile and the report
    /// discarded (another worker redoes or has redone the range). Postgres may be restarting:
    /// the completion is retried for as long as the lease can still be ours.
    pub async fn complete(self, report: &UnitReport) -> Result<bool> {
        self.heartbeat.abort();
        let deadline = self.ttl;
        crate::retry::retry_transient("unit completion", deadline, Default::default(), || {
            self.catalog.complete_unit(&self.lease, report)
        })
        .await
    }

    /// Gives the range back to the queue; its new state if the lease was still ours.
    pub async fn give_back(self, why: GiveBack) -> Result<Option<RangeState>> {
        self.heartbeat.abort();
        self.catalog.release_range(&self.lease, &why).await
    }

    /// Fails the whole file for good (its object is gone, changed or corrupt); `false` if the
    /// lease was lost meanwhile.
    pub async fn fail_file(self, reason: &str) -> Result<bool> {
        self.heartbeat.abort();
        self.catalog.fail_leased_file(&self.lease, reason).await
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        // Dropped without an ending (a panic, a cancelled task): stop renewing; the lease
        // expires and the splitter reaps it.
        self.heartbeat.abort();
    }
}

/// Renews the lease every third of its TTL; cancels `lost` when the lease is gone.
async fn heartbeat(catalog: Catalog, lease: UnitLease, ttl: Duration, lost: CancellationToken) {
    let every = ttl / 3;
    let mut last_renewed = Instant::now();
    loop {
        tokio::time::sleep(every).await;
        match catalog.heartbeat(&lease, ttl).await {
            Ok(true) => {
                last_renewed = Instant::now();
                debug!("lease renewed");
            }
            Ok(false) => {
                lost.cancel();
                return;
            }
            // Postgres unreachable: keep trying; if it stays down the lease expires and the
            // completion is refused.
            Err(e) => warn!(error = %e, since_renewed_s = last_renewed.elapsed().as_secs_f64(), "heartbeat failed"),
        }
    }
}
