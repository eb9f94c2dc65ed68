//! The pull loop: claim a range lease, keep it alive with heartbeats, process it, then complete
//! it (fenced by the lease token) or give it back.

use std::sync::Arc;
use std::time::Duration;

use memberlake::catalog::{Catalog, ClaimPolicy, RangeLease};
use memberlake::lake::Lake;
use memberlake::shutdown::Shutdown;
use memberlake::store::MembershipStore;
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::process::{process_range, ProcessConfig, RangeError};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub worker_id: String,
    pub lease_ttl: Duration,
    pub idle_poll: Duration,
    pub max_attempts: i32,
    /// After SIGTERM, how long the range in hand may take before its lease is given back.
    pub shutdown_grace: Duration,
    pub process: ProcessConfig,
    /// One claim loop per entry: its lane, per-file cap and priority knobs.
    pub slots: Vec<ClaimPolicy>,
}

pub struct Worker {
    pub catalog: Catalog,
    pub lake: Lake,
    pub store: Arc<MembershipStore>,
    pub cfg: WorkerConfig,
}

impl Worker {
    /// Runs every slot's claim loop until shutdown, each as its own task on the runtime's
    /// threads: a slot's row completions then wake only that slot, on the threads the CQL
    /// driver's connection tasks run on, instead of every slot on the `main` thread.
    pub async fn run(self: Arc<Self>, shutdown: Shutdown) {
        let slots: Vec<_> = (0..self.cfg.slots.len())
            .map(|i| {
                let policy = &self.cfg.slots[i];
                let span = info_span!("slot", slot = i, lane = %policy.lane.name);
                let (worker, shutdown) = (self.clone(), shutdown.clone());
                tokio::spawn(async move { worker.run_slot(i, shutdown).await }.instrument(span))
            })
            .collect();
        for slot in futures::future::join_all(slots).await {
            if let Err(e) = slot {
                // A panicking slot must not hide: the process exits non-zero and is restarted.
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }

    /// Claims and processes ranges allowed by slot `slot`'s policy until shutdown.
    async fn run_slot(&self, slot: usize, shutdown: Shutdown) {
        let policy: &ClaimPolicy = &self.cfg.slots[slot];
        let mut backoff = self.cfg.idle_poll;
        let mut failures = 0u32;
        while !shutdown.is_triggered() {
            match self.catalog.claim_range(&self.cfg.worker_id, self.cfg.lease_ttl, policy).await {
                Ok(Some(lease)) => {
                    backoff = self.cfg.idle_poll;
                    let span = info_span!(
                        "range",
                        file_id = lease.file_id.0,
                        range = lease.range_index,
                        advertiser_id = %lease.advertiser_id,
                        attempt = lease.attempt,
                        token = lease.token,
                    );
                    if self.work_on(lease, &shutdown).instrument(span).await {
                        failures = 0;
                        continue;
                    }
                    // A transient failure: back off before the next claim, so an outage does
                    // not burn through every range's attempts.
                    let delay =
                        memberlake::retry::Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(30) }
                            .delay(failures);
                    failures += 1;
                    tokio::select! {
                        _ = shutdown.wait() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    continue;
                }
                Ok(None) => {
                    backoff = self.cfg.idle_poll;
                }
                Err(e) => {
                    warn!(error = %e, "claiming a range failed; backing off");
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
            // Jitter keeps many idle workers from polling in lockstep.
            let sleep = backoff.mul_f64(rand::rng().random_range(0.5..1.5));
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Works on one lease; returns false after a transient failure.
    async fn work_on(&self, lease: RangeLease, shutdown: &Shutdown) -> bool {
        let started = std::time::Instant::now();
        debug!(start = lease.range.start, end = lease.range.end, "leased range");
        let lost = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat(self.catalog.clone(), lease.clone(), self.cfg.lease_ttl, lost.clone()));
        let work = process_range(&self.lake, &self.store, &lease, &self.cfg.process, lost.clone());
        // On shutdown the range in hand gets `shutdown_grace` to finish, then is given back.
        let deadline = async {
            shutdown.wait().await;
            tokio::time::sleep(self.cfg.shutdown_grace).await;
        };
        let result = tokio::select! {
            r = work => r,
            _ = deadline => Err(RangeError::Shutdown),
        };
        heartbeat.abort();
        match result {
            // Postgres may be restarting: retry the completion while the lease can still be ours.
            Ok((outcome, timings)) => match memberlake::retry::retry(
                "range completion",
                self.cfg.lease_ttl,
                Default::default(),
                |e: &memberlake::catalog::CatalogError| e.is_transient(),
                || self.catalog.complete_range(&lease, &outcome),
            )
            .await
            {
                Ok(true) => {
                    let secs = started.elapsed().as_secs_f64();
                    info!(
                        rows = outcome.rows,
                        rejected = outcome.rejected,
                        seconds = secs,
                        read_s = timings.read_secs,
                        hash_s = timings.hash_secs,
                        write_s = timings.write_secs,
                        "range done"
                    );
                    metrics::counter!("memberlake_worker_ranges_done_total").increment(1);
                    metrics::histogram!("memberlake_worker_range_seconds").record(secs);
                    // Where the time went, per stage (the stages overlap: they are pipelined).
                    metrics::histogram!("memberlake_worker_read_seconds").record(timings.read_secs);
                    metrics::histogram!("memberlake_worker_hash_seconds").record(timings.hash_secs);
                    metrics::histogram!("memberlake_worker_write_seconds").record(timings.write_secs);
                    metrics::counter!("memberlake_worker_rows_written_total").increment(outcome.rows);
                    true
                }
                Ok(false) => {
                    warn!("lease lost before completion; another worker redoes this range");
                    true
                }
                Err(e) => {
                    warn!(error = %e, "could not record completion; the lease will expire and the range be redone");
                    false
                }
            },
            Err(e) if e.is_permanent() => {
                warn!(error = %e, "permanent error: failing the file");
                metrics::counter!("memberlake_worker_ranges_failed_total", "kind" => "permanent").increment(1);
                if let Err(db) = self.catalog.fail_file(&lease, &e.to_string()).await {
                    warn!(error = %db, "could not record the failure; the lease will expire");
                }
                true
            }
            Err(RangeError::LeaseLost) => {
                warn!("lease lost while working; dropping the range");
                metrics::counter!("memberlake_worker_ranges_failed_total", "kind" => "lease_lost").increment(1);
                true
            }
            Err(e) => {
                warn!(error = %e, "transient error: giving the range back");
                metrics::counter!("memberlake_worker_ranges_failed_total", "kind" => "transient").increment(1);
                let shutdown_release = matches!(e, RangeError::Shutdown);
                match self.catalog.release_range(&lease, &e.to_string(), self.cfg.max_attempts, !shutdown_release).await
                {
                    Ok(Some(state)) => info!(%state, "range released"),
                    Ok(None) => {}
                    Err(db) => warn!(error = %db, "could not release; the lease will expire"),
                }
                shutdown_release
            }
        }
    }
}

/// Renews the lease every third of its TTL; cancels `lost` when the lease is gone.
async fn heartbeat(catalog: Catalog, lease: RangeLease, ttl: Duration, lost: CancellationToken) {
    let every = ttl / 3;
    loop {
        tokio::time::sleep(every).await;
        match catalog.heartbeat(&lease, ttl).await {
            Ok(true) => debug!("lease renewed"),
            Ok(false) => {
                lost.cancel();
                return;
            }
            // Postgres unreachable: keep trying; if it stays down the lease expires and the
            // completion is refused.
            Err(e) => warn!(error = %e, "heartbeat failed"),
        }
    }
}
