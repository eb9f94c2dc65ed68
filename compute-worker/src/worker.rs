//! The pull loop: claim a range lease, work on it, then end the lease with one transition.
//!
//! As in River's job executor, working on a range returns one value, [`UnitResult`], and one
//! function, [`Worker::end_lease`], maps it to one lease transition (complete, give back, fail
//! the file, or nothing when the lease is already gone). The lease itself is owned by a
//! [`LeaseGuard`], which keeps it alive while the range is worked on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use memberlake::catalog::{Catalog, ClaimPolicy, GiveBack, LeaseGuard, UnitReport};
use memberlake::lake::Lake;
use memberlake::retry::Backoff;
use memberlake::shutdown::Shutdown;
use memberlake::store::MembershipStore;
use memberlake::work::WorkLocation;
use rand::Rng;
use tracing::{debug, info, info_span, warn, Instrument};

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::sync::oneshot;

use crate::process::{process_unit, InputsRead, ProcessConfig, Timings, UnitContext, UnitError};

/// Units a slot works on at once: one writing rows while the next reads its inputs.
pub const UNITS_PER_SLOT: usize = 2;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub worker_id: String,
    pub lease_ttl: Duration,
    pub idle_poll: Duration,
    pub max_attempts: i32,
    /// After SIGTERM, how long the range in hand may take before its lease is given back.
    pub shutdown_grace: Duration,
    pub process: ProcessConfig,
    /// One claim loop per entry: its lake, lane, per-file cap and priority knobs.
    pub slots: Vec<ClaimPolicy>,
}

pub struct Worker {
    pub catalog: Catalog,
    pub lake: Lake,
    pub work: WorkLocation,
    pub store: Arc<MembershipStore>,
    pub cfg: WorkerConfig,
}

/// How working on one range ended.
#[derive(Debug)]
enum UnitResult {
    /// The unit's work is durable (an ingest range's runs, a bucket's diff and rows, a cleanup's
    /// deletes).
    Done { report: UnitReport, timings: Timings },
    /// Retrying cannot help: the object is gone, changed, or corrupt.
    Permanent(UnitError),
    /// Another attempt may succeed (lake, store or network trouble).
    Transient(UnitError),
    /// This worker's configuration is at fault (its lake credentials were refused): another
    /// worker may succeed, and no attempt is spent.
    ReplicaFault(UnitError),
    /// The lease was lost while working (expired and re-leased, file failed or cancelled).
    LeaseLost,
    /// Shutdown was requested and the grace period ran out.
    Shutdown,
}

impl From<Result<(UnitReport, Timings), UnitError>> for UnitResult {
    fn from(r: Result<(UnitReport, Timings), UnitError>) -> Self {
        match r {
            Ok((report, timings)) => UnitResult::Done { report, timings },
            Err(UnitError::LeaseLost) => UnitResult::LeaseLost,
            Err(e) if e.is_replica_fault() => UnitResult::ReplicaFault(e),
            Err(e) if e.is_permanent() => UnitResult::Permanent(e),
            Err(e) => UnitResult::Transient(e),
        }
    }
}

impl UnitResult {
    /// The result's name, for the span of the lease's end.
    fn name(&self) -> &'static str {
        match self {
            UnitResult::Done { .. } => "done",
            UnitResult::Permanent(_) => "permanent",
            UnitResult::Transient(_) => "transient",
            UnitResult::ReplicaFault(_) => "replica_fault",
            UnitResult::LeaseLost => "lease_lost",
            UnitResult::Shutdown => "shutdown",
        }
    }
}

/// What the claim loop does after a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Claim the next range at once.
    Continue,
    /// Something transient failed: back off before claiming again, so an outage does not burn
    /// through every range's attempts.
    BackOff,
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

    /// Claims and processes units allowed by slot `slot`'s policy until shutdown. A slot works on
    /// at most [`UNITS_PER_SLOT`] units, and claims the next one only once the newest has read
    /// its inputs ([`InputsRead`]): a merge unit's reads overlap the previous unit's writes.
    async fn run_slot(&self, slot: usize, shutdown: Shutdown) {
        let policy: &ClaimPolicy = &self.cfg.slots[slot];
        let mut idle = self.cfg.idle_poll;
        let mut failures = 0u32;
        let mut running = FuturesUnordered::new();
        // The newest unit, until it has read its inputs.
        let mut reading: Option<oneshot::Receiver<()>> = None;
        let mut next_claim = Instant::now();
        loop {
            let stopping = shutdown.is_triggered();
            if stopping && running.is_empty() {
                break;
            }
            let may_claim = !stopping && reading.is_none() && running.len() < UNITS_PER_SLOT;
            if may_claim && Instant::now() >= next_claim {
                match self.catalog.claim_range(&self.cfg.worker_id, self.cfg.lease_ttl, policy).await {
                    Ok(Some(guard)) => {
                        idle = self.cfg.idle_poll;
                        let lease = guard.lease();
                        // A root, not a child of the slot's span (which lives as long as the
                        // process): each unit is one trace, from its claim to its lease's end.
                        let span = info_span!(
                            parent: None,
                            "unit",
                            file_id = lease.file_id.0,
                            stage = %lease.stage,
                            range = lease.range_index,
                            advertiser_id = %lease.advertiser_id,
                            attempt = lease.attempt,
                            token = lease.token,
                            slot,
                            lane = %policy.lane.name,
                        );
                        let (inputs_read, read) = InputsRead::channel();
                        reading = Some(read);
                        running.push(self.work_on(guard, inputs_read, &shutdown).instrument(span));
                        continue;
                    }
                    Ok(None) => {
                        idle = self.cfg.idle_poll;
                        next_claim = Instant::now() + jitter(idle);
                    }
                    Err(e) => {
                        warn!(error = %e, "claiming a range failed; backing off");
                        idle = (idle * 2).min(Duration::from_secs(10));
                        next_claim = Instant::now() + jitter(idle);
                    }
                }
            }
            let claim_time = async {
                if may_claim {
                    tokio::time::sleep_until(next_claim.into()).await
                } else {
                    std::future::pending().await
                }
            };
            tokio::select! {
                Some(next) = running.next(), if !running.is_empty() => match next {
                    Next::Continue => failures = 0,
                    Next::BackOff => {
                        failures += 1;
                        let delay = Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(30) }
                            .delay(failures - 1);
                        next_claim = next_claim.max(Instant::now() + delay);
                    }
                },
                // Read its inputs, or ended (the sender dropped): either way, claim again.
                _ = async { reading.as_mut().expect("guarded").await }, if reading.is_some() => reading = None,
                _ = claim_time => {}
                _ = shutdown.wait(), if !stopping => {}
            }
        }
    }

    /// Works on one lease and ends it.
    async fn work_on(&self, guard: LeaseGuard, inputs_read: InputsRead, shutdown: &Shutdown) -> Next {
        let started = Instant::now();
        let lease = guard.lease();
        debug!(start = lease.range.start, end = lease.range.end, "leased range");
        let ctx = UnitContext {
            lake: &self.lake,
            work: &self.work,
            store: &self.store,
            catalog: &self.catalog,
            cfg: &self.cfg.process,
        };
        let work = process_unit(&ctx, lease, guard.lost(), inputs_read);
        // On shutdown the range in hand gets `shutdown_grace` to finish, then is given back.
        let deadline = async {
            shutdown.wait().await;
            tokio::time::sleep(self.cfg.shutdown_grace).await;
        };
        let result = tokio::select! {
            r = work => UnitResult::from(r),
            _ = deadline => UnitResult::Shutdown,
        };
        let span = info_span!("end_lease", result = result.name());
        self.end_lease(guard, result, started).instrument(span).await
    }

    /// The one place where a range's result becomes a lease transition.
    async fn end_lease(&self, guard: LeaseGuard, result: UnitResult, started: Instant) -> Next {
        let guard_stage = guard.lease().stage;
        let failed = |kind: &'static str| {
            metrics::counter!("memberlake_worker_ranges_failed_total", "kind" => kind).increment(1);
        };
        match result {
            UnitResult::Done { report, timings } => match guard.complete(&report).await {
                Ok(true) => {
                    record_done(guard_stage, &report, &timings, started);
                    Next::Continue
                }
                Ok(false) => {
                    warn!("lease lost before completion; another worker redoes this range");
                    Next::Continue
                }
                Err(e) => {
                    warn!(error = %e, "could not record completion; the lease will expire and the range be redone");
                    Next::BackOff
                }
            },
            UnitResult::Permanent(e) => {
                warn!(error = %e, "permanent error: failing the file");
                failed("permanent");
                match guard.fail_file(&e.to_string()).await {
                    Ok(true) => metrics::counter!("memberlake_files_failed_total").increment(1),
                    Ok(false) => {}
                    Err(db) => warn!(error = %db, "could not record the failure; the lease will expire"),
                }
                Next::Continue
            }
            UnitResult::LeaseLost => {
                warn!("lease lost while working; dropping the range");
                failed("lease_lost");
                drop(guard);
                Next::Continue
            }
            UnitResult::Transient(e) => {
                warn!(error = %e, "transient error: giving the range back");
                failed("transient");
                let why = GiveBack::AfterError { error: e.to_string(), max_attempts: self.cfg.max_attempts };
                give_back(guard, why).await;
                Next::BackOff
            }
            UnitResult::ReplicaFault(e) => {
                warn!(error = %e, "this worker cannot read the lake: giving the range back without spending an attempt");
                failed("replica_fault");
                give_back(guard, GiveBack::ReplicaFault { error: e.to_string() }).await;
                Next::BackOff
            }
            UnitResult::Shutdown => {
                info!("shutdown grace ran out: giving the range back");
                failed("shutdown");
                give_back(guard, GiveBack::AtShutdown).await;
                Next::Continue
            }
        }
    }
}

async fn give_back(guard: LeaseGuard, why: GiveBack) {
    match guard.give_back(why).await {
        Ok(Some(state)) => info!(%state, "range given back"),
        Ok(None) => debug!("the lease was already gone"),
        Err(db) => warn!(error = %db, "could not give the range back; the lease will expire"),
    }
}

fn record_done(stage: memberlake::catalog::WorkStage, report: &UnitReport, timings: &Timings, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    let stage = stage.as_str();
    metrics::counter!("memberlake_worker_units_done_total", "stage" => stage).increment(1);
    metrics::histogram!("memberlake_worker_unit_seconds", "stage" => stage).record(secs);
    match report {
        UnitReport::Ingest(report) => {
            info!(
                rows = report.rows,
                rejected = report.rejected,
                erased = report.erased,
                runs = report.run_parts,
                seconds = secs,
                read_s = timings.read_secs,
                hash_s = timings.hash_secs,
                spill_s = timings.write_secs,
                "range done"
            );
            metrics::counter!("memberlake_worker_ranges_done_total").increment(1);
            metrics::histogram!("memberlake_worker_range_seconds").record(secs);
            // Where the time went, per stage (the stages overlap: they are pipelined).
            metrics::histogram!("memberlake_worker_read_seconds").record(timings.read_secs);
            metrics::histogram!("memberlake_worker_hash_seconds").record(timings.hash_secs);
            metrics::counter!("memberlake_worker_rows_hashed_into_runs_total").increment(report.rows - report.erased);
            metrics::counter!("memberlake_worker_hashes_erased_total").increment(report.erased);
        }
        UnitReport::Merge(report) => {
            info!(
                members = report.members,
                added = report.added,
                removed = report.removed,
                erased = report.erased,
                seconds = secs,
                merge_s = timings.read_secs,
                write_s = timings.write_secs,
                "bucket merged"
            );
            metrics::histogram!("memberlake_worker_write_seconds").record(timings.write_secs);
            metrics::counter!("memberlake_worker_rows_written_total").increment(report.rows_written);
            metrics::counter!("memberlake_worker_hashes_erased_total").increment(report.erased);
        }
        UnitReport::Cleanup { rows_deleted } => {
            info!(rows_deleted, seconds = secs, "cleanup unit done");
            metrics::counter!("memberlake_worker_rows_deleted_total").increment(*rows_deleted);
        }
    }
}

/// Jitter keeps many idle workers from polling in lockstep.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.5..1.5))
}
