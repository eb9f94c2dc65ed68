//! Operator actions and views: list and inspect files, reprioritize, pause, resume, cancel,
//! retry, weigh advertisers. Every action is recorded in `operator_actions` (who, what, when)
//! in the same transaction as the change.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{fail_file_in, Catalog, CatalogError, FileRecord, RejectionSample, Result};
use crate::config::PriorityArgs;
use crate::ids::{AdvertiserId, FileId};

/// Filters of the file listing.
#[derive(Debug, Clone, Default)]
pub struct FileFilter {
    pub state: Option<String>,
    pub advertiser_id: Option<AdvertiserId>,
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
    pub rejection_samples: Vec<RejectionSample>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RangeCounts {
    pub queued: i64,
    pub leased: i64,
    pub done: i64,
    pub failed: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RangeError {
    pub range_index: i32,
    pub attempts: i32,
    pub error: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct OperatorAction {
    pub action_id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: serde_json::Value,
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
    pub rows_per_minute: Vec<(DateTime<Utc>, i64)>,
    pub recent_failures: Vec<FileRecord>,
}

impl Catalog {
    pub async fn list_files(&self, filter: &FileFilter) -> Result<Vec<FileRecord>> {
        let rows = sqlx::query_as::<_, FileRecord>(concat!(
            include_str!("queries/file_select.sql"),
            " WHERE ($1::text IS NULL OR f.state::text = $1) AND ($2::text IS NULL OR f.advertiser_id = $2)",
            " ORDER BY f.file_id DESC LIMIT $3"
        ))
        .bind(filter.state.as_deref())
        .bind(filter.advertiser_id.as_ref().map(|a| a.as_str()))
        .bind(if filter.limit > 0 { filter.limit } else { 100 })
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    pub async fn file_detail(&self, id: FileId, knobs: &PriorityArgs) -> Result<Option<FileDetail>> {
        let Some(file) = self.file(id).await? else { return Ok(None) };
        let counts = sqlx::query("SELECT state::text, count(*) FROM ranges WHERE file_id = $1 GROUP BY 1")
            .bind(id.0)
            .fetch_all(&self.pool)
            .await?;
        let mut ranges = RangeCounts::default();
        for row in counts {
            let n: i64 = row.get(1);
            match row.get::<&str, _>(0) {
                "queued" => ranges.queued = n,
                "leased" => ranges.leased = n,
                "done" => ranges.done = n,
                _ => ranges.failed = n,
            }
        }
        let timing = sqlx::query(
            "SELECT extract(epoch FROM coalesce(f.finished_at, now()) - coalesce(f.split_at, f.registered_at))::float8, \
                    effective_priority(f.priority, a.weight, extract(epoch FROM now() - f.registered_at)::float8, \
                                       f.size_bytes, $2, $3, $4, $5) \
             FROM files f JOIN advertisers a ON a.advertiser_id = f.advertiser_id WHERE f.file_id = $1",
        )
        .bind(id.0)
        .bind(knobs.priority_per_level)
        .bind(knobs.priority_per_log_weight)
        .bind(knobs.priority_aging_per_second)
        .bind(knobs.priority_per_size_doubling)
        .fetch_one(&self.pool)
        .await?;
        let elapsed: f64 = timing.get(0);
        let effective_priority: f64 = timing.get(1);
        let rows_per_second = if elapsed > 0.0 { file.rows_ingested as f64 / elapsed } else { 0.0 };
        let remaining = (file.ranges_total - file.ranges_done) as f64;
        let eta_seconds = (file.finished_at.is_none() && file.ranges_done > 0 && elapsed > 0.0)
            .then(|| remaining * elapsed / file.ranges_done as f64);
        let last_errors = sqlx::query(
            "SELECT range_index, attempts, last_error FROM ranges WHERE file_id = $1 AND last_error IS NOT NULL \
             ORDER BY range_index LIMIT 20",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| RangeError { range_index: r.get(0), attempts: r.get(1), error: r.get(2) })
        .collect();
        let rejection_samples = self.rejection_samples(id).await?.into_iter().take(50).collect();
        Ok(Some(FileDetail {
            file,
            effective_priority,
            ranges,
            rows_per_second,
            eta_seconds,
            last_errors,
            rejection_samples,
        }))
    }

    /// Sets a file's operator priority (higher runs first).
    pub async fn set_priority(&self, actor: &str, id: FileId, priority: i32) -> Result<FileRecord> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query("UPDATE files SET priority = $2 WHERE file_id = $1")
            .bind(id.0)
            .bind(priority)
            .execute(&mut *tx)
            .await?;
        found(updated.rows_affected(), id)?;
        record_action(&mut tx, actor, "prioritize", &file_target(id), serde_json::json!({"priority": priority}))
            .await?;
        tx.commit().await?;
        self.file(id).await?.ok_or_else(|| not_found(id))
    }

    /// Pauses (no new leases; leases in flight finish) or resumes a file.
    pub async fn set_paused(&self, actor: &str, id: FileId, paused: bool) -> Result<FileRecord> {
        let mut tx = self.pool.begin().await?;
        let state = lock_file_state(&mut tx, id).await?;
        if !matches!(state.as_str(), "registered" | "ingesting") {
            return Err(CatalogError::Conflict(format!(
                "file {id} is {state}: only registered or ingesting files can be paused or resumed"
            )));
        }
        sqlx::query("UPDATE files SET paused = $2 WHERE file_id = $1")
            .bind(id.0)
            .bind(paused)
            .execute(&mut *tx)
            .await?;
        record_action(&mut tx, actor, if paused { "pause" } else { "resume" }, &file_target(id), serde_json::json!({}))
            .await?;
        tx.commit().await?;
        self.file(id).await?.ok_or_else(|| not_found(id))
    }

    /// Cancels a file: it never activates; its leases are revoked and its rows retired.
    pub async fn cancel_file(&self, actor: &str, id: FileId) -> Result<FileRecord> {
        let mut tx = self.pool.begin().await?;
        let state = lock_file_state(&mut tx, id).await?;
        if !matches!(state.as_str(), "registered" | "ingesting") {
            return Err(CatalogError::Conflict(format!(
                "file {id} is {state}: only registered or ingesting files can be cancelled"
            )));
        }
        fail_file_in(&mut tx, id, &format!("cancelled by {actor}"), "cancelled").await?;
        record_action(&mut tx, actor, "cancel", &file_target(id), serde_json::json!({})).await?;
        tx.commit().await?;
        self.file(id).await?.ok_or_else(|| not_found(id))
    }

    /// Requeues a failed file's failed ranges (attempts reset). Returns the ranges requeued.
    pub async fn retry_file(&self, actor: &str, id: FileId) -> Result<(FileRecord, u64)> {
        let mut tx = self.pool.begin().await?;
        let state = lock_file_state(&mut tx, id).await?;
        if !matches!(state.as_str(), "failed" | "ingesting") {
            return Err(CatalogError::Conflict(format!(
                "file {id} is {state}: only failed (or ingesting) files have ranges to retry"
            )));
        }
        let requeued = sqlx::query(
            "UPDATE ranges SET state = 'queued', attempts = 0, lease_token = NULL, lease_owner = NULL, \
             lease_expires_at = NULL, queued_at = now() WHERE file_id = $1 AND state = 'failed'",
        )
        .bind(id.0)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if requeued == 0 {
            return Err(CatalogError::Conflict(format!("file {id} has no failed ranges to retry")));
        }
        // Back to ingesting; its rows may have been retired meanwhile, so it is no longer retired.
        sqlx::query(
            "UPDATE files SET state = 'ingesting', failure_reason = NULL, finished_at = NULL, retired_at = NULL WHERE file_id = $1",
        )
        .bind(id.0)
        .execute(&mut *tx)
        .await?;
        record_action(&mut tx, actor, "retry", &file_target(id), serde_json::json!({"ranges": requeued})).await?;
        tx.commit().await?;
        Ok((self.file(id).await?.ok_or_else(|| not_found(id))?, requeued))
    }

    /// Sets an advertiser's weight in the effective priority (1 = neutral).
    pub async fn set_weight(&self, actor: &str, advertiser: &AdvertiserId, weight: f64) -> Result<()> {
        if !(weight.is_finite() && weight > 0.0) {
            return Err(CatalogError::Invalid("weight must be a positive number".into()));
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO advertisers (advertiser_id, weight) VALUES ($1, $2) \
             ON CONFLICT (advertiser_id) DO UPDATE SET weight = EXCLUDED.weight",
        )
        .bind(advertiser.as_str())
        .bind(weight)
        .execute(&mut *tx)
        .await?;
        record_action(
            &mut tx,
            actor,
            "weight",
            &format!("advertiser:{advertiser}"),
            serde_json::json!({"weight": weight}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn operator_actions(&self, limit: i64) -> Result<Vec<OperatorAction>> {
        let rows = sqlx::query(
            "SELECT action_id, at, actor, action, target, details FROM operator_actions ORDER BY action_id DESC LIMIT $1",
        )
        .bind(limit.clamp(1, 1000))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| OperatorAction {
                action_id: r.get(0),
                at: r.get(1),
                actor: r.get(2),
                action: r.get(3),
                target: r.get(4),
                details: r.get(5),
            })
            .collect())
    }

    /// Queue depth per lane, files in flight, throughput per minute, recent failures.
    pub async fn overview(&self, express_max_bytes: u64, urgent_priority: i32, minutes: i32) -> Result<Overview> {
        let queue = sqlx::query(
            "SELECT count(*) FILTER (WHERE r.state = 'queued' AND (f.size_bytes <= $1 OR f.priority >= $2)), \
                    count(*) FILTER (WHERE r.state = 'queued' AND NOT (f.size_bytes <= $1 OR f.priority >= $2)), \
                    count(*) FILTER (WHERE r.state = 'leased') \
             FROM ranges r JOIN files f ON f.file_id = r.file_id WHERE f.state = 'ingesting'",
        )
        .bind(express_max_bytes as i64)
        .bind(urgent_priority)
        .fetch_one(&self.pool)
        .await?;
        let files_in_flight =
            self.list_files(&FileFilter { state: Some("ingesting".into()), advertiser_id: None, limit: 50 }).await?;
        let mut recent_failures =
            self.list_files(&FileFilter { state: Some("failed".into()), advertiser_id: None, limit: 10 }).await?;
        recent_failures.retain(|f| f.finished_at.is_some_and(|t| t > Utc::now() - chrono::Duration::hours(24)));
        let rows_per_minute = sqlx::query(
            "SELECT m, coalesce(sum(r.rows_ingested), 0)::bigint \
             FROM generate_series(date_trunc('minute', now()) - make_interval(mins => $1 - 1), date_trunc('minute', now()), interval '1 minute') m \
             LEFT JOIN ranges r ON r.finished_at >= m AND r.finished_at < m + interval '1 minute' \
             GROUP BY m ORDER BY m",
        )
        .bind(minutes)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
        Ok(Overview {
            queued_express: queue.get(0),
            queued_bulk: queue.get(1),
            leased: queue.get(2),
            files_in_flight,
            rows_per_minute,
            recent_failures,
        })
    }
}

/// Locks a file's row for the rest of the transaction and returns its state.
async fn lock_file_state(tx: &mut sqlx::PgConnection, id: FileId) -> Result<String> {
    let state: Option<String> = sqlx::query_scalar("SELECT state::text FROM files WHERE file_id = $1 FOR UPDATE")
        .bind(id.0)
        .fetch_optional(&mut *tx)
        .await?;
    state.ok_or_else(|| not_found(id))
}

fn file_target(id: FileId) -> String {
    format!("file:{id}")
}

fn not_found(id: FileId) -> CatalogError {
    CatalogError::NotFound(format!("file {id}"))
}

fn found(rows: u64, id: FileId) -> Result<()> {
    if rows == 0 {
        Err(not_found(id))
    } else {
        Ok(())
    }
}

async fn record_action(
    tx: &mut sqlx::PgConnection,
    actor: &str,
    action: &str,
    target: &str,
    details: serde_json::Value,
) -> Result<()> {
    sqlx::query("INSERT INTO operator_actions (actor, action, target, details) VALUES ($1, $2, $3, $4)")
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(details)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
