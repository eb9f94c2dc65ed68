//! Operator actions and views: list and inspect files, reprioritize, pause, resume, cancel,
//! retry, weigh advertisers. Every action is recorded in `operator_actions` (who, what, when)
//! in the same transaction as the change.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;

use super::{end_file_in, sql, Catalog, CatalogError, FileRecord, FileState, PriorityKnobs, RangeState, WorkStage};
use super::{RejectionSample, Result};
use crate::ids::{AdvertiserId, FileId};

/// Filters of the file listing.
#[derive(Debug, Clone, Default)]
pub struct FileFilter {
    pub state: Option<FileState>,
    pub advertiser_id: Option<AdvertiserId>,
    /// At most this many files (<= 0: 100).
    pub limit: i64,
}

/// A file with its progress, as `GET /admin/v1/files/{id}` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct FileDetail {
    #[serde(flatten)]
    pub file: FileRecord,
    pub effective_priority: f64,
    pub ranges: RangeCounts,
    /// Rows per second since the file was split.
    pub rows_per_second: f64,
    /// Estimated seconds to completion at the current pace (None before any range is done).
    pub eta_seconds: Option<f64>,
    pub last_errors: Vec<RangeError>,
    /// Rejected rows by reason (`missing_at`, ...), most frequent first.
    pub rejected_by_reason: Vec<ReasonCount>,
    pub rejection_samples: Vec<RejectionSample>,
}

/// Rows rejected for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ReasonCount {
    pub reason: String,
    pub rows: i64,
}

/// How many of a file's ranges are in each state.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RangeCounts {
    pub queued: i64,
    pub leased: i64,
    pub done: i64,
    pub failed: i64,
}

/// The latest error of one work unit.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RangeError {
    pub stage: WorkStage,
    pub range_index: i32,
    pub attempts: i32,
    pub error: String,
}

/// One entry of the audit log.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct OperatorAction {
    pub action_id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: serde_json::Value,
}

/// Rows ingested in one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct MinuteRows {
    pub minute: DateTime<Utc>,
    pub rows: i64,
}

/// The status page's data.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    /// Queued ranges an express lane may take (small or urgent files), and the rest.
    pub queued_express: i64,
    pub queued_bulk: i64,
    pub leased: i64,
    pub files_in_flight: Vec<FileRecord>,
    /// Rows ingested per minute over the last `minutes` minutes, oldest first.
    pub rows_per_minute: Vec<MinuteRows>,
    pub recent_failures: Vec<FileRecord>,
}

#[derive(sqlx::FromRow)]
struct StateCount {
    state: RangeState,
    ranges: i64,
}

#[derive(sqlx::FromRow)]
struct Pace {
    elapsed_seconds: f64,
    effective_priority: f64,
}

#[derive(sqlx::FromRow)]
struct RetryCandidate {
    state: FileState,
    retiring_at: Option<DateTime<Utc>>,
    retired_at: Option<DateTime<Utc>>,
    store_format: String,
    merged_at: Option<DateTime<Utc>>,
    manifest_expired_at: Option<DateTime<Utc>>,
}

/// An advertiser's active version, as a rollback sees it (`advertisers/lock_active.sql`).
#[derive(sqlx::FromRow)]
struct ActiveFacts {
    active_file_id: Option<FileId>,
    store_format: Option<String>,
    base_version: Option<FileId>,
    last_modified: Option<DateTime<Utc>>,
}

/// The version a rollback would restore (`files/lock_rollback_target.sql`).
#[derive(sqlx::FromRow)]
struct RollbackTarget {
    advertiser_id: AdvertiserId,
    store_format: String,
    activated_at: Option<DateTime<Utc>>,
    manifest_expired_at: Option<DateTime<Utc>>,
    bucket_bits: Option<i16>,
}

#[derive(sqlx::FromRow)]
struct QueueDepth {
    queued_express: i64,
    queued_bulk: i64,
    leased: i64,
}

impl Catalog {
    pub async fn list_files(&self, filter: &FileFilter) -> Result<Vec<FileRecord>> {
        Ok(sqlx::query_as(sql!("files", "list"))
            .bind(filter.state)
            .bind(filter.advertiser_id.as_ref())
            .bind(if filter.limit > 0 { filter.limit } else { 100 })
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn file_detail(&self, id: FileId, knobs: &PriorityKnobs) -> Result<Option<FileDetail>> {
        let Some(file) = self.file(id).await? else { return Ok(None) };
        let counts: Vec<StateCount> =
            sqlx::query_as(sql!("ranges", "count_by_state")).bind(id).fetch_all(&self.pool).await?;
        let mut ranges = RangeCounts::default();
        for c in counts {
            *match c.state {
                RangeState::Queued => &mut ranges.queued,
                RangeState::Leased => &mut ranges.leased,
                RangeState::Done => &mut ranges.done,
                RangeState::Failed => &mut ranges.failed,
            } = c.ranges;
        }
        let pace: Pace = sqlx::query_as(sql!("files", "pace"))
            .bind(id)
            .bind(knobs.per_level)
            .bind(knobs.per_log_weight)
            .bind(knobs.aging_per_second)
            .bind(knobs.per_size_doubling)
            .fetch_one(&self.pool)
            .await?;
        let elapsed = pace.elapsed_seconds;
        let rows_per_second = if elapsed > 0.0 { file.rows_ingested as f64 / elapsed } else { 0.0 };
        let remaining = (file.ranges_total - file.ranges_done) as f64;
        let eta_seconds = (file.finished_at.is_none() && file.ranges_done > 0 && elapsed > 0.0)
            .then(|| remaining * elapsed / file.ranges_done as f64);
        let last_errors = sqlx::query_as(sql!("ranges", "last_errors")).bind(id).fetch_all(&self.pool).await?;
        let rejection_samples = self.rejection_samples(id).await?.into_iter().take(50).collect();
        let rejected_by_reason =
            sqlx::query_as(sql!("ranges", "rejects_by_reason")).bind(id).fetch_all(&self.pool).await?;
        Ok(Some(FileDetail {
            file,
            effective_priority: pace.effective_priority,
            ranges,
            rows_per_second,
            eta_seconds,
            last_errors,
            rejected_by_reason,
            rejection_samples,
        }))
    }

    /// Sets a file's operator priority (higher runs first).
    pub async fn set_priority(&self, actor: &str, id: FileId, priority: i32) -> Result<FileRecord> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(sql!("files", "set_priority")).bind(id).bind(priority).execute(&mut *tx).await?;
        if updated.rows_affected() == 0 {
            return refuse(tx, not_found(id)).await;
        }
        record_action(&mut tx, actor, "prioritize", &file_target(id), serde_json::json!({"priority": priority}))
            .await?;
        tx.commit().await?;
        self.file(id).await?.ok_or_else(|| not_found(id))
    }

    /// Pauses (no new leases; leases in flight finish) or resumes a file.
    pub async fn set_paused(&self, actor: &str, id: FileId, paused: bool) -> Result<FileRecord> {
        let mut tx = self.pool.begin().await?;
        let state = lock_file_state(&mut tx, id).await?;
        if !state.is_in_flight() {
            return refuse(
                tx,
                CatalogError::Conflict(format!(
                    "file {id} is {state}: only registered, ingesting, merging or held files can be paused or resumed"
                )),
            )
            .await;
        }
        sqlx::query(sql!("files", "set_paused")).bind(id).bind(paused).execute(&mut *tx).await?;
        let action = if paused { "pause" } else { "resume" };
        record_action(&mut tx, actor, action, &file_target(id), serde_json::json!({})).await?;
        tx.commit().await?;
        self.file(id).await?.ok_or_else(|| not_found(id))
    }

    /// Cancels a file: it never activates; its leases are revoked and its rows retired.
    pub async fn cancel_file(&self, actor: &str, id: FileId) -> Result<FileRecord> {
        let mut tx = self.pool.begin().await?;
        let state = lock_file_state(&mut tx, id).await?;
        if !state.is_in_flight() {
            return refuse(
                tx,
                CatalogError::Conflict(format!(
                    "file {id} is {state}: only registered, ingesting, merging or held files can be cancelled"
                )),
            )
            .await;
        }
        end_file_in(&mut tx, id, &format!("cancelled by {actor}"), FileState::Cancelled).await?;
        record_action(&mut tx, actor, "cancel", &file_target(id), serde_json::json!({})).await?;
        tx.commit().await?;
        self.file(id).await?.ok_or_else(|| not_found(id))
    }

    /// Requeues a failed file's failed ranges (attempts reset); the file then merges afresh.
    /// Refused while the file's rows are being removed from the store: a version that started
    /// merging must be undone first (its diff may change with the active version), and a legacy
    /// version's rows retired (it then starts over, split afresh). Returns the ranges requeued.
    pub async fn retry_file(&self, actor: &str, id: FileId) -> Result<(FileRecord, u64)> {
        let mut tx = self.pool.begin().await?;
        let file: Option<RetryCandidate> =
            sqlx::query_as(sql!("files", "lock_for_retry")).bind(id).fetch_optional(&mut *tx).await?;
        let file = file.ok_or_else(|| not_found(id))?;
        if !matches!(file.state, FileState::Failed | FileState::Ingesting) {
            return refuse(
                tx,
                CatalogError::Conflict(format!(
                    "file {id} is {}: only failed (or ingesting) files have ranges to retry",
                    file.state
                )),
            )
            .await;
        }
        let retired = file.retired_at.is_some();
        if file.store_format == "rows" {
            // Ingested before change-proportional versions: its done ranges wrote rows, not runs.
            if file.state != FileState::Failed || !retired {
                let since = file.retiring_at.map_or_else(|| "the next pass".to_owned(), |t| t.to_string());
                return refuse(tx, CatalogError::Conflict(format!(
                    "file {id} is a legacy version whose rows are not yet retired from the store ({since}); retry it once they are"
                ))).await;
            }
            sqlx::query(sql!("ranges", "drop_all_units")).bind(id).execute(&mut *tx).await?;
            sqlx::query(sql!("files", "reregister")).bind(id).execute(&mut *tx).await?;
            let details = serde_json::json!({"ranges": 0, "split_afresh": true});
            record_action(&mut tx, actor, "retry", &file_target(id), details).await?;
            tx.commit().await?;
            return Ok((self.file(id).await?.ok_or_else(|| not_found(id))?, 0));
        }
        if let Some(at) = file.manifest_expired_at {
            return refuse(
                tx,
                CatalogError::Conflict(format!(
                    "file {id}'s runs passed their retention at {at} and are deleted: upload the list again"
                )),
            )
            .await;
        }
        let merged = file.merged_at.is_some();
        if merged && !retired {
            return refuse(
                tx,
                CatalogError::Conflict(format!(
                    "file {id} wrote rows while merging; they are being undone — retry it once they are gone"
                )),
            )
            .await;
        }
        let requeued = sqlx::query(sql!("ranges", "retry_failed")).bind(id).execute(&mut *tx).await?.rows_affected();
        if requeued == 0 && !merged {
            return refuse(tx, CatalogError::Conflict(format!("file {id} has no failed ranges to retry"))).await;
        }
        sqlx::query(sql!("ranges", "drop_version_units")).bind(id).execute(&mut *tx).await?;
        sqlx::query(sql!("files", "reopen")).bind(id).execute(&mut *tx).await?;
        let details = serde_json::json!({"ranges": requeued, "rows_undone": merged});
        record_action(&mut tx, actor, "retry", &file_target(id), details).await?;
        tx.commit().await?;
        Ok((self.file(id).await?.ok_or_else(|| not_found(id))?, requeued))
    }

    /// Approves a held version: held by the shrink guard, the next settle pass activates it;
    /// held for too many rejected rows (before merging), it merges next (`files/approve.sql`).
    pub async fn approve_file(&self, actor: &str, id: FileId) -> Result<FileRecord> {
        let mut tx = self.pool.begin().await?;
        let state = lock_file_state(&mut tx, id).await?;
        if state != FileState::Held {
            return refuse(
                tx,
                CatalogError::Conflict(format!("file {id} is {state}: only held versions can be approved")),
            )
            .await;
        }
        sqlx::query(sql!("files", "approve"))
            .bind(id)
            .bind(super::APPROVED)
            .bind(super::APPROVED_REJECTS)
            .execute(&mut *tx)
            .await?;
        record_action(&mut tx, actor, "approve", &file_target(id), serde_json::json!({})).await?;
        tx.commit().await?;
        self.file(id).await?.ok_or_else(|| not_found(id))
    }

    /// Rejects a held version: it is cancelled, never activates, and its rows (if it merged)
    /// are undone.
    pub async fn reject_file(&self, actor: &str, id: FileId) -> Result<FileRecord> {
        let mut tx = self.pool.begin().await?;
        let state = lock_file_state(&mut tx, id).await?;
        if state != FileState::Held {
            return refuse(
                tx,
                CatalogError::Conflict(format!("file {id} is {state}: only held versions can be rejected")),
            )
            .await;
        }
        end_file_in(&mut tx, id, &format!("rejected by {actor}"), FileState::Cancelled).await?;
        record_action(&mut tx, actor, "reject", &file_target(id), serde_json::json!({})).await?;
        tx.commit().await?;
        self.file(id).await?.ok_or_else(|| not_found(id))
    }

    /// Rolls `advertiser` back to an earlier version: `to`, or by default the version that was
    /// active before the current one. A rollback is a new version (a file row of its own, with
    /// `rollback_of` naming the version whose member set it restores) that skips ingestion and
    /// merges the earlier version's retained manifest against the active one, so it costs the
    /// difference, like any version; it is pre-approved (the shrink guard does not hold it).
    /// Returns the rollback version. Conflicts: no earlier version, its manifest no longer
    /// retained, another version of the advertiser in flight, a legacy active version.
    pub async fn rollback(&self, actor: &str, advertiser: &AdvertiserId, to: Option<FileId>) -> Result<FileRecord> {
        let mut tx = self.pool.begin().await?;
        let active: Option<ActiveFacts> =
            sqlx::query_as(sql!("advertisers", "lock_active")).bind(advertiser).fetch_optional(&mut *tx).await?;
        let active = active.ok_or_else(|| CatalogError::NotFound(format!("advertiser {advertiser}")))?;
        let (Some(active_id), Some(format)) = (active.active_file_id, active.store_format.as_deref()) else {
            return refuse(
                tx,
                CatalogError::Conflict(format!("advertiser {advertiser} has no active version to roll back")),
            )
            .await;
        };
        if format != "changes" {
            return refuse(
                tx,
                CatalogError::Conflict(format!(
                    "advertiser {advertiser}'s active version {active_id} was ingested before change-proportional \
                 versions and keeps no manifest: upload the list to restore instead"
                )),
            )
            .await;
        }
        let in_flight: Option<(FileId, FileState)> =
            sqlx::query_as(sql!("files", "in_flight_of")).bind(advertiser).fetch_optional(&mut *tx).await?;
        if let Some((id, state)) = in_flight {
            return refuse(
                tx,
                CatalogError::Conflict(format!(
                    "file {id} of advertiser {advertiser} is {state}: cancel, reject or finish it before a rollback"
                )),
            )
            .await;
        }
        let Some(target_id) = to.or(active.base_version) else {
            return refuse(
                tx,
                CatalogError::Conflict(format!(
                    "advertiser {advertiser}'s active version {active_id} is its first (change-format) version: \
                     there is no earlier one to roll back to"
                )),
            )
            .await;
        };
        if target_id == active_id {
            return refuse(
                tx,
                CatalogError::Conflict(format!("version {target_id} is already {advertiser}'s active version")),
            )
            .await;
        }
        let target: Option<RollbackTarget> =
            sqlx::query_as(sql!("files", "lock_rollback_target")).bind(target_id).fetch_optional(&mut *tx).await?;
        let Some(target) = target.filter(|t| t.advertiser_id == *advertiser) else {
            return refuse(tx, CatalogError::NotFound(format!("version {target_id} of advertiser {advertiser}"))).await;
        };
        if target.store_format != "changes" || target.activated_at.is_none() {
            return refuse(
                tx,
                CatalogError::Conflict(format!(
                    "version {target_id} was never active as a change-format version: only those can be restored"
                )),
            )
            .await;
        }
        if let Some(at) = target.manifest_expired_at {
            return refuse(tx, CatalogError::Conflict(format!(
                "version {target_id}'s manifest passed its retention at {at} and is deleted: upload the list to restore it"
            ))).await;
        }
        let id: FileId = sqlx::query_scalar(sql!("files", "insert_rollback"))
            .bind(advertiser)
            .bind(target_id)
            .bind(active_id)
            .bind(active.last_modified)
            .bind(super::APPROVED)
            .fetch_one(&mut *tx)
            .await?;
        // The rollback merges at the restored version's bucket width (insert_rollback copies it).
        let bits = target.bucket_bits.unwrap_or(0);
        sqlx::query(sql!("ranges", "insert_units"))
            .bind(id)
            .bind(WorkStage::Merge)
            .bind(1i32 << bits)
            .execute(&mut *tx)
            .await?;
        let details = serde_json::json!({"from": active_id, "to": target_id, "version": id});
        record_action(&mut tx, actor, "rollback", &format!("advertiser:{advertiser}"), details).await?;
        tx.commit().await?;
        self.file(id).await?.ok_or_else(|| not_found(id))
    }

    /// Sets an advertiser's weight in the effective priority (1 = neutral).
    pub async fn set_weight(&self, actor: &str, advertiser: &AdvertiserId, weight: f64) -> Result<()> {
        if !(weight.is_finite() && weight > 0.0) {
            return Err(CatalogError::Invalid("weight must be a positive number".into()));
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query(sql!("advertisers", "set_weight")).bind(advertiser).bind(weight).execute(&mut *tx).await?;
        let target = format!("advertiser:{advertiser}");
        record_action(&mut tx, actor, "weight", &target, serde_json::json!({"weight": weight})).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets how long an advertiser's list keeps matching after its upload (`None`: unlimited);
    /// returns when its active list stops (or stopped) matching, if it has one. Audited.
    pub async fn set_lifespan(
        &self,
        actor: &str,
        advertiser: &AdvertiserId,
        lifespan: Option<std::time::Duration>,
    ) -> Result<Option<DateTime<Utc>>> {
        if lifespan.is_some_and(|l| l.is_zero()) {
            return Err(CatalogError::Invalid("a lifespan must be longer than zero".into()));
        }
        let secs = lifespan.map(|l| l.as_secs_f64());
        let mut tx = self.pool.begin().await?;
        let expires_at: Option<DateTime<Utc>> = sqlx::query_scalar(sql!("advertisers", "set_lifespan"))
            .bind(advertiser)
            .bind(secs)
            .fetch_one(&mut *tx)
            .await?;
        let target = format!("advertiser:{advertiser}");
        record_action(&mut tx, actor, "lifespan", &target, serde_json::json!({"lifespan_secs": secs})).await?;
        tx.commit().await?;
        Ok(expires_at)
    }

    /// The audit log, newest first (`limit` clamped to 1..=1000).
    pub async fn operator_actions(&self, limit: i64) -> Result<Vec<OperatorAction>> {
        Ok(sqlx::query_as(sql!("operator_actions", "latest")).bind(limit.clamp(1, 1000)).fetch_all(&self.pool).await?)
    }

    /// Queue depth per lane, files in flight, throughput per minute, recent failures.
    pub async fn overview(&self, express_max_bytes: u64, urgent_priority: i32, minutes: i32) -> Result<Overview> {
        let queue: QueueDepth = sqlx::query_as(sql!("ranges", "queue_depth"))
            .bind(i64::try_from(express_max_bytes).unwrap_or(i64::MAX))
            .bind(urgent_priority)
            .fetch_one(&self.pool)
            .await?;
        let files_in_flight =
            sqlx::query_as(sql!("files", "split_in_flight")).bind(50i64).fetch_all(&self.pool).await?;
        let failed = FileFilter { state: Some(FileState::Failed), advertiser_id: None, limit: 10 };
        let mut recent_failures = self.list_files(&failed).await?;
        recent_failures.retain(|f| f.finished_at.is_some_and(|t| t > Utc::now() - chrono::Duration::hours(24)));
        let rows_per_minute =
            sqlx::query_as(sql!("ranges", "rows_per_minute")).bind(minutes).fetch_all(&self.pool).await?;
        Ok(Overview {
            queued_express: queue.queued_express,
            queued_bulk: queue.queued_bulk,
            leased: queue.leased,
            files_in_flight,
            rows_per_minute,
            recent_failures,
        })
    }
}

/// Ends a refused action's transaction: rolls it back and waits for the rollback, so that its row
/// locks are gone before the refusal returns. (A transaction merely dropped is rolled back only
/// when its connection is next used or pinged on release, in the background: meanwhile the
/// leader's `SKIP LOCKED` passes would skip the file, and its `FOR UPDATE` ones wait.)
async fn refuse<T>(tx: sqlx::Transaction<'static, sqlx::Postgres>, error: CatalogError) -> Result<T> {
    tx.rollback().await?;
    Err(error)
}

/// Locks a file's row for the rest of the transaction and returns its state.
async fn lock_file_state(tx: &mut sqlx::PgConnection, id: FileId) -> Result<FileState> {
    let state: Option<FileState> =
        sqlx::query_scalar(sql!("files", "lock_state")).bind(id).fetch_optional(&mut *tx).await?;
    state.ok_or_else(|| not_found(id))
}

fn file_target(id: FileId) -> String {
    format!("file:{id}")
}

fn not_found(id: FileId) -> CatalogError {
    CatalogError::NotFound(format!("file {id}"))
}

pub(super) async fn record_action(
    tx: &mut sqlx::PgConnection,
    actor: &str,
    action: &str,
    target: &str,
    details: serde_json::Value,
) -> Result<()> {
    sqlx::query(sql!("operator_actions", "record"))
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(Json(details))
        .execute(&mut *tx)
        .await?;
    Ok(())
}
