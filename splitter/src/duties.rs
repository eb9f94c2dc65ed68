//! What the leader does every tick, and the background retirement of legacy versions.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use memberlake::catalog::{CatalogError, Leadership, SettlePolicy};
use memberlake::ids::ListVersion;
use memberlake::store::MembershipStore;
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
        info!(%advertiser_id, file_id = file_id.0, "activated list version");
        metrics::counter!("memberlake_versions_activated_total").increment(1);
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

#[derive(Debug, thiserror::Error)]
pub enum RetireError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] memberlake::store::StoreError),
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
