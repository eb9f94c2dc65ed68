//! What the leader does every tick, and the background retirement of legacy versions.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memberlake::catalog::{CatalogError, Leadership, PendingErasure, SettlePolicy};
use memberlake::ids::{AdvertiserId, EmailHash, FileId, ListVersion};
use memberlake::manifest::Buckets;
use memberlake::store::MembershipStore;
use memberlake::versions::{self, VersionObjects};
use memberlake::work::{DiffSide, VersionDir, WorkLocation};
use tracing::{info, warn};

#[derive(Debug, Clone)]
pub struct DutyConfig {
    pub range_size: u64,
    pub max_attempts: i32,
    pub settle: SettlePolicy,
    pub bucket_target: u64,
    /// How long after a version stops being needed its rows are undone or retired.
    pub cleanup_grace: Duration,
    pub split_batch: i64,
}

/// One leader tick: split new files, reap expired leases, settle files (supersede, merge,
/// hold, activate), queue cleanups.
pub async fn run_tick(leader: &Leadership, cfg: &DutyConfig) -> Result<(), CatalogError> {
    let (files, ranges) = leader.split_registered_files(cfg.range_size, cfg.split_batch, cfg.bucket_target).await?;
    if files > 0 {
        info!(files, ranges, range_size = cfg.range_size, "split files into ranges");
        metrics::counter!("memberlake_ranges_created_total").increment(ranges as u64);
    }
    let (requeued, failed) = leader.reap_expired_leases(cfg.max_attempts).await?;
    if requeued + failed > 0 {
        warn!(requeued, failed, "reaped expired range leases");
        metrics::counter!("memberlake_leases_expired_total").increment((requeued + failed) as u64);
    }
    let settled = leader.settle_files(&cfg.settle).await?;
    for (file_id, buckets, base) in &settled.merging {
        info!(file_id = file_id.0, buckets, base = base.map(|b| b.0), "every range hashed: merging");
    }
    for (advertiser_id, file_id) in &settled.activated {
        metrics::counter!("memberlake_versions_activated_total").increment(1);
        record_version(leader, advertiser_id, *file_id).await;
    }
    for file_id in &settled.superseded {
        info!(file_id = file_id.0, "cancelled: a newer upload of its advertiser supersedes it");
        metrics::counter!("memberlake_versions_superseded_total").increment(1);
    }
    for (file_id, reason) in &settled.held {
        warn!(file_id = file_id.0, %reason, "version held for an operator's decision");
        metrics::counter!("memberlake_versions_held_total").increment(1);
    }
    for (file_id, reason) in &settled.failed {
        warn!(file_id = file_id.0, %reason, "file failed");
        metrics::counter!("memberlake_files_failed_total").increment(1);
    }
    let cleanup = leader.schedule_cleanup(cfg.cleanup_grace).await?;
    for (file_id, units) in &cleanup.undo {
        info!(file_id = file_id.0, units, "undoing the rows of a version that will never be active");
    }
    for (file_id, units) in &cleanup.retire {
        info!(file_id = file_id.0, units, "retiring the rows of a replaced version");
    }
    for file_id in &cleanup.finished {
        info!(file_id = file_id.0, "a version's rows are gone from the store");
        metrics::counter!("memberlake_versions_cleaned_total").increment(1);
    }
    Ok(())
}

/// Logs an activated version's report and adds it to the version metrics (one read of the
/// catalog per activation; a failed read only loses the figures, never the activation).
async fn record_version(leader: &Leadership, advertiser_id: &AdvertiserId, file_id: FileId) {
    let file = match leader.catalog().file(file_id).await {
        Ok(Some(file)) => file,
        Ok(None) => return,
        Err(e) => {
            warn!(%advertiser_id, file_id = file_id.0, error = %e, "activated list version; its report is unavailable");
            return;
        }
    };
    let v = &file.version;
    info!(
        %advertiser_id,
        file_id = file_id.0,
        members = v.members,
        added = v.added,
        removed = v.removed,
        unchanged = v.unchanged(),
        rejected = file.rows_rejected,
        rows_written = v.rows_written,
        base = v.base_version.map(|b| b.0),
        rollback_of = v.rollback_of.map(|b| b.0),
        "activated list version"
    );
    let kind = match (v.rollback_of, v.base_version) {
        (Some(_), _) => "rollback",
        (None, Some(_)) => "diff",
        (None, None) => "first",
    };
    metrics::counter!("memberlake_version_members_added_total", "kind" => kind).increment(v.added.max(0) as u64);
    metrics::counter!("memberlake_version_members_removed_total", "kind" => kind).increment(v.removed.max(0) as u64);
    metrics::counter!("memberlake_version_rows_written_total", "kind" => kind).increment(v.rows_written.max(0) as u64);
    metrics::counter!("memberlake_version_rows_rejected_total").increment(file.rows_rejected.max(0) as u64);
    if let Some(members) = v.members {
        metrics::histogram!("memberlake_version_members").record(members as f64);
        if members > 0 {
            metrics::histogram!("memberlake_version_change_ratio")
                .record((v.added + v.removed) as f64 / members as f64);
        }
    }
    if let Some(activated) = v.activated_at {
        let seconds = (activated - file.registered_at).num_milliseconds() as f64 / 1000.0;
        metrics::histogram!("memberlake_version_registered_to_active_seconds").record(seconds.max(0.0));
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RetireError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] memberlake::store::StoreError),
    #[error("work location: {0}")]
    Work(#[from] memberlake::lake::LakeError),
    #[error(transparent)]
    Version(#[from] versions::VersionError),
}

/// Versions cleaned at the work location per pass (the next pass takes the rest).
const WORK_CLEANUP_BATCH: i64 = 100;

/// Expires the manifests of versions nothing reads any more, `retention` after their rows left
/// the store, then deletes expired versions' objects and activated versions' runs at the work
/// location, recording each (fenced by the term). Deleting is idempotent: a pass interrupted
/// is redone by the next. Returns the versions whose objects it deleted.
pub async fn clean_work_once(
    leader: &Leadership,
    work: &WorkLocation,
    retention: Duration,
) -> Result<usize, RetireError> {
    for file_id in leader.expire_manifests(retention, WORK_CLEANUP_BATCH).await? {
        info!(file_id = file_id.0, "a version's manifest passed its retention: no rollback to it from now on");
    }
    let versions = leader.work_to_delete(WORK_CLEANUP_BATCH).await?;
    for v in &versions {
        let dir = VersionDir::new(&v.advertiser_id, v.file_id.into());
        let prefix = if v.expired { dir.prefix().to_owned() } else { dir.runs_prefix() };
        let objects = work.delete_prefix(&prefix).await?;
        leader.work_deleted(v.file_id, v.expired).await?;
        info!(file_id = v.file_id.0, objects, expired = v.expired, "deleted a version's objects at the work location");
        metrics::counter!("memberlake_work_objects_deleted_total").increment(objects);
    }
    Ok(versions.len())
}

#[derive(Debug, Clone)]
pub struct RetireConfig {
    pub grace: Duration,
    pub segments: u32,
    pub concurrency: usize,
}

/// Takes the retirable versions (fenced by the term), deletes their rows from the store, then
/// records them retired (fenced again). Deleting is safe even if the term is lost meanwhile:
/// retirable versions are retirable whoever deletes them, and retries of them are refused until
/// some pass records them.
pub async fn retire_once(
    leader: &Leadership,
    store: &Arc<MembershipStore>,
    cfg: &RetireConfig,
) -> Result<usize, RetireError> {
    let files = leader.begin_retirement(cfg.grace).await?;
    if files.is_empty() {
        return Ok(0);
    }
    let retire: HashSet<(String, ListVersion)> =
        files.iter().map(|(f, adv)| (adv.as_str().to_owned(), ListVersion::from(*f))).collect();
    let started = Instant::now();
    let (scanned, deleted) =
        store.retire_rows(|adv, v| retire.contains(&(adv.to_owned(), v)), cfg.segments, cfg.concurrency).await?;
    let ids: Vec<_> = files.iter().map(|(f, _)| *f).collect();
    leader.finish_retirement(&ids).await?;
    info!(
        versions = ids.len(),
        scanned,
        deleted,
        seconds = started.elapsed().as_secs_f64(),
        "retired superseded versions from the store"
    );
    metrics::histogram!("memberlake_retirement_seconds").record(started.elapsed().as_secs_f64());
    Ok(ids.len())
}

/// Erasures a pass works on (the next pass takes the rest).
const ERASURE_BATCH: i64 = 100;

/// One pass over the pending erasures (`memberlake::catalog::erasures`): rewrites every work
/// object that holds an erased hash — each version's manifest and diff buckets of the hash,
/// and the runs of versions that still have them — deletes the hash's store partitions, and
/// records the pass (fenced by the term). An erasure whose pass started settled (no merge unit
/// that may not have seen it can still write; the grace has passed) is complete. Idempotent: a
/// pass interrupted is redone by the next. Returns the erasures completed.
pub async fn erase_once(
    leader: &Leadership,
    store: &MembershipStore,
    work: &WorkLocation,
    grace: Duration,
) -> Result<usize, RetireError> {
    if export_erasure_backlog(leader).await? == 0 {
        return Ok(0);
    }
    let pending = leader.pending_erasures(grace, ERASURE_BATCH).await?;
    let mut hashes: Vec<EmailHash> = pending.iter().map(|p| p.email_hash).collect();
    hashes.sort_unstable();
    let mut rewritten: HashMap<EmailHash, u64> = HashMap::new();
    if let Err(e) = rewrite_work_objects(leader, work, &hashes, &mut rewritten).await {
        record_unfinished(leader, &pending, &rewritten).await?;
        return Err(e);
    }
    let mut completed = 0;
    for (i, p) in pending.iter().enumerate() {
        if let Err(e) = store.erase_partitions(&p.email_hash).await {
            record_unfinished(leader, &pending[i..], &rewritten).await?;
            return Err(e.into());
        }
        let objects = rewritten.get(&p.email_hash).copied().unwrap_or(0);
        leader.record_erasure_pass(p.email_hash, objects, p.settled).await?;
        if p.settled {
            completed += 1;
            metrics::counter!("memberlake_erasures_completed_total").increment(1);
        }
        // The hash is what was erased, not an email; it is already in the audit log.
        info!(email_hash = %p.email_hash, objects, complete = p.settled, "erasure pass");
    }
    export_erasure_backlog(leader).await?;
    Ok(completed)
}

/// A pass that fails part way still records, for each erasure of `pending` it rewrote objects
/// for, a pass that completes nothing: those objects no longer hold the hash, so no later pass
/// would count them again (an erasure's `objects_rewritten` would undercount).
async fn record_unfinished(
    leader: &Leadership,
    pending: &[PendingErasure],
    rewritten: &HashMap<EmailHash, u64>,
) -> Result<(), CatalogError> {
    for p in pending {
        if let Some(&objects) = rewritten.get(&p.email_hash) {
            leader.record_erasure_pass(p.email_hash, objects, false).await?;
        }
    }
    Ok(())
}

/// Rewrites every work object holding one of `hashes` (sorted) without them — each version's
/// manifest and diff buckets of the hashes, and the runs of versions that still have them —
/// and rebuilds the filters of their buckets; counts in `rewritten` the objects each hash was
/// dropped from, as it goes (so a failure part way loses no count).
async fn rewrite_work_objects(
    leader: &Leadership,
    work: &WorkLocation,
    hashes: &[EmailHash],
    rewritten: &mut HashMap<EmailHash, u64>,
) -> Result<(), RetireError> {
    for v in leader.versions_with_work().await? {
        let Ok(buckets) = Buckets::new(v.bucket_bits as u8) else {
            warn!(file_id = v.file_id.0, bits = v.bucket_bits, "a version with an invalid bucket width; skipped");
            continue;
        };
        let dir = VersionDir::new(&v.advertiser_id, v.file_id.into());
        let mut keys = std::collections::BTreeSet::new();
        for h in hashes {
            let b = buckets.bucket_of(h.as_bytes());
            keys.extend([dir.manifest(b), dir.diff(b, DiffSide::Added), dir.diff(b, DiffSide::Removed)]);
        }
        if v.has_runs {
            keys.extend(work.list(&dir.runs_prefix()).await?);
        }
        let mut manifest_buckets = std::collections::BTreeSet::new();
        for key in keys {
            let found = versions::erase_from_run(work, &key, hashes).await?;
            metrics::counter!("memberlake_erasure_objects_rewritten_total").increment(u64::from(!found.is_empty()));
            if let Some(h) = found.first().filter(|_| key.starts_with(&format!("{}/manifest/", dir.prefix()))) {
                manifest_buckets.insert(buckets.bucket_of(h.as_bytes()));
            }
            for h in found {
                *rewritten.entry(h).or_default() += 1;
            }
        }
        // The filter of every bucket an erased hash falls in is rebuilt from its manifest bucket
        // if that was rewritten now, or if the filter still holds the hash exactly (a small
        // bucket's filter keeps its members' leading bytes; an earlier pass may have stopped
        // between the two).
        let objects = VersionObjects { dir, buckets };
        let touched: std::collections::BTreeSet<u32> = hashes.iter().map(|h| buckets.bucket_of(h.as_bytes())).collect();
        for b in touched {
            if versions::rebuild_filter(work, &objects, b, hashes, manifest_buckets.contains(&b)).await? {
                metrics::counter!("memberlake_erasure_objects_rewritten_total").increment(1);
            }
        }
    }
    Ok(())
}

/// Sets the erasure backlog gauges; returns the erasures pending.
async fn export_erasure_backlog(leader: &Leadership) -> Result<i64, CatalogError> {
    let backlog = leader.catalog().erasure_backlog().await?;
    metrics::gauge!("memberlake_erasures_pending").set(backlog.pending as f64);
    metrics::gauge!("memberlake_erasures_oldest_pending_age_seconds").set(backlog.oldest_age_secs);
    Ok(backlog.pending)
}
