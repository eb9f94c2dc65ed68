//! Leadership: one process at a time holds a role (the splitter's), for a term.
//!
//! [`Catalog::acquire_leadership`] returns a [`Leadership`], a fenced handle on one term; every
//! leader action — split, reap, settle, retire — is a method of it, never a free call taking a
//! `(role, term)` pair.
//!
//! Architecture invariant: every leader action is one transaction that first checks, under a
//! share lock on the lease row, that its term still holds the role
//! (`queries/leader_leases/hold_term.sql`). A deposed leader's action fails with
//! [`CatalogError::NotLeader`] and changes nothing.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{end_file_in, secs, sql, Catalog, CatalogError, FileState, RangeState, Result, ACTIVATIONS_CHANNEL};
use crate::ids::{AdvertiserId, FileId};
use crate::lake::Compression;
use crate::ranges::plan_ranges;

/// A leadership term this process holds: the fencing token of every leader action.
#[derive(Debug, Clone)]
pub struct Leadership {
    catalog: Catalog,
    role: String,
    holder: String,
    term: i64,
    expires_at: DateTime<Utc>,
}

/// Who holds a role now.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LeaderInfo {
    pub holder: String,
    pub term: i64,
    pub expires_at: DateTime<Utc>,
}

/// What the leader's settle pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settled {
    pub activated: Vec<(AdvertiserId, FileId)>,
    pub superseded: Vec<FileId>,
    pub failed: Vec<(FileId, String)>,
}

#[derive(sqlx::FromRow)]
struct TermRow {
    term: i64,
    expires_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct FileToSplit {
    file_id: FileId,
    #[sqlx(try_from = "i64")]
    size_bytes: u64,
    compression: Compression,
}

#[derive(sqlx::FromRow)]
struct ReapedRange {
    state: RangeState,
}

#[derive(sqlx::FromRow)]
struct FailedRange {
    file_id: FileId,
    range_index: i32,
    attempts: i32,
    last_error: String,
}

#[derive(sqlx::FromRow)]
struct FileToSettle {
    file_id: FileId,
    advertiser_id: AdvertiserId,
    rows_ingested: i64,
    rows_rejected: i64,
}

#[derive(sqlx::FromRow)]
struct Retirable {
    file_id: FileId,
    advertiser_id: AdvertiserId,
}

impl Catalog {
    /// Takes `role` for `holder`, or renews `current` (a term this process holds). Returns the
    /// term held, or `None` if someone else leads.
    pub async fn acquire_leadership(
        &self,
        role: &str,
        holder: &str,
        ttl: Duration,
        current: Option<&Leadership>,
    ) -> Result<Option<Leadership>> {
        let row: Option<TermRow> = sqlx::query_as(sql!("leader_leases", "acquire"))
            .bind(role)
            .bind(holder)
            .bind(secs(ttl))
            .bind(current.map_or(-1, |l| l.term))
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| Leadership {
            catalog: self.clone(),
            role: role.to_owned(),
            holder: holder.to_owned(),
            term: r.term,
            expires_at: r.expires_at,
        }))
    }

    /// The current holder of `role`, if its lease is live.
    pub async fn leader(&self, role: &str) -> Result<Option<LeaderInfo>> {
        Ok(sqlx::query_as(sql!("leader_leases", "current")).bind(role).fetch_optional(&self.pool).await?)
    }
}

impl Leadership {
    pub fn term(&self) -> i64 {
        self.term
    }

    pub fn role(&self) -> &str {
        &self.role
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// When the lease row says the term lapses unless renewed (the database's clock).
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }

    /// Gives the role up so a standby can take over at once.
    pub async fn resign(self) -> Result<()> {
        sqlx::query(sql!("leader_leases", "resign"))
            .bind(&self.role)
            .bind(self.term)
            .execute(&self.catalog.pool)
            .await?;
        Ok(())
    }

    /// Starts a leader transaction: fails with [`CatalogError::NotLeader`] unless this term
    /// still holds the role. The row lock keeps the term from changing hands until commit.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        let mut tx = self.catalog.pool.begin().await?;
        let held: Option<i64> = sqlx::query_scalar(sql!("leader_leases", "hold_term"))
            .bind(&self.role)
            .bind(self.term)
            .fetch_optional(&mut *tx)
            .await?;
        if held.is_none() {
            return Err(CatalogError::NotLeader { role: self.role.clone(), term: self.term });
        }
        Ok(tx)
    }

    /// Cuts up to `limit` registered files into ranges of `range_size` bytes (compressed files:
    /// one range). Returns the files split and the ranges created.
    pub async fn split_registered_files(&self, range_size: u64, limit: i64) -> Result<(usize, usize)> {
        let mut tx = self.begin().await?;
        let files: Vec<FileToSplit> = sqlx::query_as(sql!("files", "to_split")).bind(limit).fetch_all(&mut *tx).await?;
        let mut ranges_created = 0;
        for file in &files {
            let plan = plan_ranges(file.size_bytes, range_size, file.compression.is_splittable());
            let indexes: Vec<i32> = (0..plan.len() as i32).collect();
            let starts: Vec<i64> = plan.iter().map(|r| r.start as i64).collect();
            let ends: Vec<i64> = plan.iter().map(|r| r.end as i64).collect();
            sqlx::query(sql!("ranges", "insert_plan"))
                .bind(file.file_id)
                .bind(&indexes)
                .bind(&starts)
                .bind(&ends)
                .execute(&mut *tx)
                .await?;
            sqlx::query(sql!("files", "mark_split"))
                .bind(file.file_id)
                .bind(plan.len() as i32)
                .bind(range_size as i64)
                .execute(&mut *tx)
                .await?;
            ranges_created += plan.len();
        }
        tx.commit().await?;
        Ok((files.len(), ranges_created))
    }

    /// Requeues ranges whose lease expired, failing those out of attempts. Returns (requeued,
    /// failed).
    pub async fn reap_expired_leases(&self, max_attempts: i32) -> Result<(usize, usize)> {
        let mut tx = self.begin().await?;
        let reaped: Vec<ReapedRange> =
            sqlx::query_as(sql!("ranges", "reap_expired")).bind(max_attempts).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        let failed = reaped.iter().filter(|r| r.state == RangeState::Failed).count();
        Ok((reaped.len() - failed, failed))
    }

    /// Fails files with a failed range; completes files whose ranges are all done (failing
    /// those with too many rejected rows) and activates their version if it is the newest.
    /// Activations are notified on [`ACTIVATIONS_CHANNEL`] at commit.
    pub async fn settle_files(&self, max_reject_ratio: f64) -> Result<Settled> {
        let mut tx = self.begin().await?;
        let mut settled = Settled::default();

        let locked: Vec<FileId> =
            sqlx::query_scalar(sql!("files", "lock_with_failed_ranges")).fetch_all(&mut *tx).await?;
        let broken: Vec<FailedRange> =
            sqlx::query_as(sql!("ranges", "first_failed")).bind(&locked).fetch_all(&mut *tx).await?;
        for range in broken {
            let reason =
                format!("range {} failed after {} attempts: {}", range.range_index, range.attempts, range.last_error);
            end_file_in(&mut tx, range.file_id, &reason, FileState::Failed).await?;
            settled.failed.push((range.file_id, reason));
        }

        let complete: Vec<FileToSettle> = sqlx::query_as(sql!("files", "ready_to_settle")).fetch_all(&mut *tx).await?;
        for file in complete {
            let (rejected, total) = (file.rows_rejected, file.rows_ingested + file.rows_rejected);
            if total > 0 && (rejected as f64) > max_reject_ratio * (total as f64) {
                let reason = format!(
                    "too many rejected rows: {rejected} of {total} ({:.1}% > limit {:.1}%)",
                    100.0 * rejected as f64 / total as f64,
                    100.0 * max_reject_ratio
                );
                end_file_in(&mut tx, file.file_id, &reason, FileState::Failed).await?;
                settled.failed.push((file.file_id, reason));
                continue;
            }
            sqlx::query(sql!("files", "mark_ingested")).bind(file.file_id).execute(&mut *tx).await?;
            let activated: Option<AdvertiserId> = sqlx::query_scalar(sql!("advertisers", "activate"))
                .bind(&file.advertiser_id)
                .bind(file.file_id)
                .fetch_optional(&mut *tx)
                .await?;
            if activated.is_some() {
                sqlx::query(sql!("advertisers", "notify_activation"))
                    .bind(ACTIVATIONS_CHANNEL)
                    .bind(format!("{}:{}", file.advertiser_id, file.file_id))
                    .execute(&mut *tx)
                    .await?;
                settled.activated.push((file.advertiser_id, file.file_id));
            } else {
                settled.superseded.push(file.file_id);
            }
        }
        tx.commit().await?;
        Ok(settled)
    }

    /// Starts a retirement pass: takes the versions whose rows may now leave the store (see
    /// `queries/files/begin_retirement.sql`), finished at least `grace` ago — which must exceed
    /// the workers' lease TTL — and fences operators' retries of them until
    /// [`finish_retirement`](Self::finish_retirement).
    pub async fn begin_retirement(&self, grace: Duration) -> Result<Vec<(FileId, AdvertiserId)>> {
        let mut tx = self.begin().await?;
        let rows: Vec<Retirable> =
            sqlx::query_as(sql!("files", "begin_retirement")).bind(secs(grace)).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        Ok(rows.into_iter().map(|r| (r.file_id, r.advertiser_id)).collect())
    }

    /// Records that these versions' rows are gone from the store, ending the pass.
    pub async fn finish_retirement(&self, files: &[FileId]) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(sql!("files", "finish_retirement")).bind(files).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
}
