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
use crate::states::WorkStage;

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
    /// Cancelled because a newer upload of the advertiser is in flight or active.
    pub superseded: Vec<FileId>,
    pub failed: Vec<(FileId, String)>,
    /// Started merging: (file, bucket count, base version).
    pub merging: Vec<(FileId, u32, Option<FileId>)>,
    /// Held by the shrink guard: (file, reason).
    pub held: Vec<(FileId, String)>,
}

/// What the leader's cleanup pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupQueued {
    /// Versions whose rows are undone, with the units queued (0: it wrote none).
    pub undo: Vec<(FileId, u32)>,
    /// Superseded versions whose rows are retired, with the units queued.
    pub retire: Vec<(FileId, u32)>,
    /// Versions whose cleanup finished: their rows are gone from the store.
    pub finished: Vec<FileId>,
}

/// A version whose objects at the work location the leader deletes.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WorkToDelete {
    pub file_id: FileId,
    pub advertiser_id: AdvertiserId,
    /// Every object (its manifest expired); else only its runs (it was activated).
    pub expired: bool,
}

/// The guards a merged version passes before it activates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SettlePolicy {
    /// Fail a version rejecting more than this fraction of its rows (before it merges).
    pub max_reject_ratio: f64,
    /// Hold a version whose member count is below `(1 - max_shrink)` of the active version's.
    pub max_shrink: f64,
}

impl Default for SettlePolicy {
    fn default() -> Self {
        Self { max_reject_ratio: 0.01, max_shrink: 0.5 }
    }
}

/// About how many hashes one bucket of a version holds, at most (8 MiB of them): what a merge
/// unit holds in memory per input.
pub const DEFAULT_BUCKET_TARGET: u64 = 512 * 1024;

/// Bucket bits for a list of `size_bytes` bytes: enough buckets that each holds about
/// `target` hashes even if every line were as short as an email can be (~16 bytes with its
/// newline), within `1..=16` bits.
pub fn bucket_bits_for(size_bytes: u64, target: u64) -> u8 {
    let lines = size_bytes / 16 + 1;
    let buckets = lines.div_ceil(target.max(1)).max(2);
    (64 - (buckets - 1).leading_zeros()).clamp(1, u32::from(crate::manifest::MAX_BUCKET_BITS)) as u8
}

/// Whether a version with `rejected` of `total` rows rejected is held for an operator: more
/// than `max_reject_ratio` of its rows; the reason, if it is.
pub fn reject_guard(rejected: i64, total: i64, max_reject_ratio: f64) -> Option<String> {
    (total > 0 && (rejected as f64) > max_reject_ratio * (total as f64)).then(|| {
        format!(
            "too many rejected rows: {rejected} of {total} ({:.1}% > limit {:.1}%)",
            100.0 * rejected as f64 / total as f64,
            100.0 * max_reject_ratio
        )
    })
}

/// Whether a version of `members` members shrinks its base of `base_members` by more than
/// `max_shrink`; the reason, if it does.
pub fn shrink_guard(members: i64, base_members: Option<i64>, max_shrink: f64) -> Option<String> {
    let base = base_members.filter(|b| *b > 0)?;
    let floor = (1.0 - max_shrink) * base as f64;
    ((members as f64) < floor).then(|| {
        format!(
            "shrinks the active list from {base} to {members} members ({:.1}% fewer; the guard holds above {:.1}%)",
            100.0 * (base - members) as f64 / base as f64,
            100.0 * max_shrink
        )
    })
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
    stage: WorkStage,
    range_index: i32,
    attempts: i32,
    last_error: String,
}

#[derive(sqlx::FromRow)]
struct FileToSettle {
    file_id: FileId,
    rows_ingested: i64,
    rows_rejected: i64,
    held_reason: Option<String>,
}

#[derive(sqlx::FromRow)]
struct StaleFile {
    file_id: FileId,
    newer: Option<FileId>,
}

#[derive(sqlx::FromRow)]
struct MergedFile {
    file_id: FileId,
    advertiser_id: AdvertiserId,
    members: Option<i64>,
    base_members: Option<i64>,
    older_undo_pending: bool,
    held_reason: Option<String>,
}

#[derive(sqlx::FromRow)]
struct ToUndo {
    file_id: FileId,
    bucket_bits: Option<i16>,
    merged: bool,
}

#[derive(sqlx::FromRow)]
struct ToRetire {
    file_id: FileId,
    successor_bucket_bits: i16,
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

/// Queues `units` cleanup units of `stage` for a file (none: its rows are gone already).
async fn queue_cleanup(tx: &mut sqlx::PgConnection, file: FileId, stage: WorkStage, units: u32) -> Result<()> {
    if units > 0 {
        sqlx::query(sql!("ranges", "insert_units")).bind(file).bind(stage).bind(units as i32).execute(&mut *tx).await?;
    }
    sqlx::query(sql!("files", "queue_cleanup")).bind(file).bind(units as i32).execute(&mut *tx).await?;
    Ok(())
}

/// The `held_reason` of a held version an operator approved: the next settle pass activates it
/// without asking the guard again.
pub const APPROVED: &str = "approved";

/// The `held_reason` of a version held for too many rejected rows (before merging) that an
/// operator approved: it merges, and the shrink guard still looks at it.
pub const APPROVED_REJECTS: &str = "approved_rejects";

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

    /// The catalog this term acts on, for reads (a leader's writes go through the methods).
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
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
    pub(super) async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
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
    ///
    /// Each file's bucket width is fixed here, from its size and `bucket_target` (see
    /// [`bucket_bits_for`]): its ranges' runs and its manifest are bucketed alike.
    pub async fn split_registered_files(
        &self,
        range_size: u64,
        limit: i64,
        bucket_target: u64,
    ) -> Result<(usize, usize)> {
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
                .bind(i16::from(bucket_bits_for(file.size_bytes, bucket_target)))
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

    /// One settle pass, in one transaction:
    /// 1. cancels in-flight files that a newer upload of their advertiser replaces;
    /// 2. fails files with a failed ingest or merge unit;
    /// 3. files whose ranges are all done are held on too many rejects (before writing a row),
    ///    or start merging (one merge unit per bucket, diffed against the active version);
    /// 4. files whose buckets are all done are held by the shrink guard, or activated once no
    ///    older version of their advertiser has rows left to undo.
    ///
    /// Activations are notified on [`ACTIVATIONS_CHANNEL`] at commit.
    pub async fn settle_files(&self, policy: &SettlePolicy) -> Result<Settled> {
        let mut tx = self.begin().await?;
        let mut settled = Settled::default();

        let stale: Vec<StaleFile> = sqlx::query_as(sql!("files", "supersede_stale")).fetch_all(&mut *tx).await?;
        for file in stale {
            let Some(newer) = file.newer else { continue };
            let reason = format!("superseded by a newer upload (file {newer})");
            end_file_in(&mut tx, file.file_id, &reason, FileState::Cancelled).await?;
            settled.superseded.push(file.file_id);
        }

        let locked: Vec<FileId> =
            sqlx::query_scalar(sql!("files", "lock_with_failed_ranges")).fetch_all(&mut *tx).await?;
        let broken: Vec<FailedRange> =
            sqlx::query_as(sql!("ranges", "first_failed")).bind(&locked).fetch_all(&mut *tx).await?;
        for unit in broken {
            let what = match unit.stage {
                WorkStage::Ingest => "range",
                _ => "bucket",
            };
            let reason =
                format!("{what} {} failed after {} attempts: {}", unit.range_index, unit.attempts, unit.last_error);
            end_file_in(&mut tx, unit.file_id, &reason, FileState::Failed).await?;
            settled.failed.push((unit.file_id, reason));
        }

        let ingested: Vec<FileToSettle> = sqlx::query_as(sql!("files", "ready_to_settle")).fetch_all(&mut *tx).await?;
        for file in ingested {
            let (rejected, total) = (file.rows_rejected, file.rows_ingested + file.rows_rejected);
            let approved = file.held_reason.as_deref() == Some(APPROVED_REJECTS);
            if let Some(reason) = reject_guard(rejected, total, policy.max_reject_ratio).filter(|_| !approved) {
                sqlx::query(sql!("files", "hold")).bind(file.file_id).bind(&reason).execute(&mut *tx).await?;
                settled.held.push((file.file_id, reason));
                continue;
            }
            let (base, bits): (Option<FileId>, i16) =
                sqlx::query_as(sql!("files", "start_merge")).bind(file.file_id).fetch_one(&mut *tx).await?;
            let buckets = 1u32 << bits;
            sqlx::query(sql!("ranges", "insert_units"))
                .bind(file.file_id)
                .bind(WorkStage::Merge)
                .bind(buckets as i32)
                .execute(&mut *tx)
                .await?;
            settled.merging.push((file.file_id, buckets, base));
        }

        let merged: Vec<MergedFile> = sqlx::query_as(sql!("files", "ready_to_activate")).fetch_all(&mut *tx).await?;
        for file in merged {
            let members = file.members.unwrap_or(0);
            // An operator's approval clears the hold reason and sends the version back here.
            let approved = file.held_reason.as_deref() == Some(APPROVED);
            if !approved {
                if let Some(reason) = shrink_guard(members, file.base_members, policy.max_shrink) {
                    sqlx::query(sql!("files", "hold")).bind(file.file_id).bind(&reason).execute(&mut *tx).await?;
                    settled.held.push((file.file_id, reason));
                    continue;
                }
            }
            if file.older_undo_pending {
                continue;
            }
            let previous: Option<Option<FileId>> = sqlx::query_scalar(sql!("advertisers", "activate"))
                .bind(&file.advertiser_id)
                .bind(file.file_id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(previous) = previous else {
                // A newer version is active (never expected: the sweep above cancels stale
                // files): this one's rows are undone like any cancelled version's.
                let reason = "superseded: a newer version is already active";
                end_file_in(&mut tx, file.file_id, reason, FileState::Cancelled).await?;
                settled.superseded.push(file.file_id);
                continue;
            };
            sqlx::query(sql!("files", "mark_ingested")).bind(file.file_id).execute(&mut *tx).await?;
            if let Some(previous) = previous {
                sqlx::query(sql!("files", "mark_superseded"))
                    .bind(previous)
                    .bind(file.file_id)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(sql!("advertisers", "notify_activation"))
                .bind(ACTIVATIONS_CHANNEL)
                .bind(format!("{}:{}", file.advertiser_id, file.file_id))
                .execute(&mut *tx)
                .await?;
            settled.activated.push((file.advertiser_id, file.file_id));
        }
        tx.commit().await?;
        Ok(settled)
    }

    /// Queues the cleanup of versions whose rows must leave the store, finished (or replaced)
    /// at least `grace` ago — which must exceed the workers' lease TTL, so that no worker still
    /// holding a revoked lease writes after the cleanup — and records finished cleanups:
    /// - a failed or cancelled version that merged: undo units, deleting exactly the rows its
    ///   diff recorded;
    /// - a replaced active version: retire units over its successor's diff (docs/versions.md).
    pub async fn schedule_cleanup(&self, grace: Duration) -> Result<CleanupQueued> {
        let mut tx = self.begin().await?;
        let mut queued = CleanupQueued::default();
        let undo: Vec<ToUndo> = sqlx::query_as(sql!("files", "to_undo")).bind(secs(grace)).fetch_all(&mut *tx).await?;
        for file in undo {
            let units = match (file.merged, file.bucket_bits) {
                (true, Some(bits)) => 1u32 << bits,
                _ => 0,
            };
            queue_cleanup(&mut tx, file.file_id, WorkStage::Undo, units).await?;
            queued.undo.push((file.file_id, units));
        }
        let retire: Vec<ToRetire> =
            sqlx::query_as(sql!("files", "to_retire")).bind(secs(grace)).fetch_all(&mut *tx).await?;
        for file in retire {
            let units = 1u32 << file.successor_bucket_bits;
            queue_cleanup(&mut tx, file.file_id, WorkStage::Retire, units).await?;
            queued.retire.push((file.file_id, units));
        }
        queued.finished = sqlx::query_scalar(sql!("files", "finish_cleanup")).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        Ok(queued)
    }

    /// Expires the work objects of versions nothing will read again, `retention` after their
    /// rows left the store (`queries/files/expire_manifests.sql`): from now on no rollback to
    /// them and no retry of them. At most `limit`; returns them.
    pub async fn expire_manifests(&self, retention: Duration, limit: i64) -> Result<Vec<FileId>> {
        let mut tx = self.begin().await?;
        let expired = sqlx::query_scalar(sql!("files", "expire_manifests"))
            .bind(secs(retention))
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(expired)
    }

    /// Versions with work objects to delete: every object of an expired version, the runs of
    /// an activated one. At most `limit`.
    pub async fn work_to_delete(&self, limit: i64) -> Result<Vec<WorkToDelete>> {
        let mut tx = self.begin().await?;
        let rows = sqlx::query_as(sql!("files", "work_to_delete")).bind(limit).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// Records that a version's runs (or, `everything`, all its work objects) are deleted.
    pub async fn work_deleted(&self, file: FileId, everything: bool) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(sql!("files", "work_deleted")).bind(file).bind(everything).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Starts a legacy retirement pass (versions whose rows are in `memberships`): takes the
    /// versions whose rows may now leave the store (see
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
