//! splitter: leader-elected (hot standby). The leader cuts registered files into byte ranges,
//! returns expired leases to the queue, moves versions from ingesting to merging to active (or
//! held), cancels superseded in-flight versions, and queues the undo and retirement of rows
//! that no longer answer anything (`docs/versions.md`); legacy versions are retired with a
//! token-ring scan.
//!
//! - [`Config`], [`Deps`], [`run`]: the service as a library; `main.rs` only wires them;
//! - `leader`: the elector, which holds this process's [`Leadership`] term, if any;
//! - `duties`: what the leader does every tick, and the background retirement pass;
//! - `health`: the pipeline gauges (queue per lane, files per state, SLA at risk), exported by
//!   the leader only.

mod duties;
mod health;
mod leader;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use memberlake::bootstrap;
use memberlake::catalog::{Catalog, CatalogError, HealthQuery, Leadership};
use memberlake::config::{
    parse_duration, DatabaseArgs, InstanceArgs, LakeArgs, LaneArgs, LeaseArgs, LogArgs, PlanArgs, StoreArgs,
};
use memberlake::http::ops_router;
use memberlake::lake::Lake;
use memberlake::service::{Server, ServiceError};
use memberlake::shutdown::Shutdown;
use memberlake::store::MembershipStore;
use memberlake::work::WorkLocation;
use tracing::{info, info_span, warn, Instrument};

pub use leader::ROLE;

/// The splitter's configuration.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "splitter",
    version,
    about = "memberlake splitter: leader-elected range planner, lease reaper and version activator."
)]
pub struct Config {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub leases: LeaseArgs,
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Leader lease lifetime; a standby takes over within this after the leader dies.
    #[arg(long, env = "MEMBERLAKE_LEADER_TTL", value_parser = parse_duration, default_value = "10s")]
    pub leader_ttl: Duration,
    /// How often the leader splits, reaps and settles.
    #[arg(long, env = "MEMBERLAKE_SPLITTER_INTERVAL", value_parser = parse_duration, default_value = "1s")]
    pub interval: Duration,
    /// How often legacy versions (ingested before change-proportional versions, rows in
    /// `memberships`) are looked for and retired from the store with a token-ring scan, and
    /// the work location is cleaned (expired manifests, active versions' runs).
    #[arg(long, env = "MEMBERLAKE_RETIRE_INTERVAL", value_parser = parse_duration, default_value = "5m")]
    pub retire_interval: Duration,
    /// Wait after a version stops being needed (replaced, failed, cancelled) before deleting
    /// its rows (undo, retire); must exceed MEMBERLAKE_LEASE_TTL, so no worker with a revoked
    /// lease is still writing them, and lets every matcher follow an activation first.
    #[arg(long, env = "MEMBERLAKE_RETIRE_GRACE", value_parser = parse_duration, default_value = "2m")]
    pub retire_grace: Duration,
    /// How often the leader works on pending erasures (store partitions deleted, work objects
    /// rewritten). An erasure completes within MEMBERLAKE_RETIRE_GRACE plus this of its request
    /// (once no merge unit leased before it is still running); matchers stop answering for the
    /// hash long before, at their next version refresh.
    #[arg(long, env = "MEMBERLAKE_ERASURE_INTERVAL", value_parser = parse_duration, default_value = "10s")]
    pub erasure_interval: Duration,
    /// How long a version's manifest is kept at the work location after its rows left the
    /// store: `memberlake rollback` can restore it until then. Its runs go once it is active.
    #[arg(long, env = "MEMBERLAKE_MANIFEST_RETENTION", value_parser = parse_duration, default_value = "7d")]
    pub manifest_retention: Duration,
    /// The lake (the work location defaults beside a `file://` one) and the work location,
    /// whose expired objects the leader deletes.
    #[command(flatten)]
    pub lake: LakeArgs,
    #[command(flatten)]
    pub instance: InstanceArgs,
    /// The workers' lanes, so that the queue gauges split the queue as the workers do.
    #[command(flatten)]
    pub lanes: LaneArgs,
    /// The promised time from a file's registration to its active version; files projected to
    /// miss it are exported as `memberlake_files_sla_at_risk`.
    #[arg(long, env = "MEMBERLAKE_SLA", value_parser = parse_duration, default_value = "2h")]
    pub sla: Duration,
    /// How often the leader reads the pipeline gauges (queue per lane, files per state, SLA at
    /// risk) from the catalog: three index-backed queries, O(work in flight).
    #[arg(long, env = "MEMBERLAKE_HEALTH_INTERVAL", value_parser = parse_duration, default_value = "15s")]
    pub health_interval: Duration,
    /// /healthz, /readyz and /metrics.
    #[arg(long, env = "MEMBERLAKE_METRICS_ADDR", default_value = "127.0.0.1:9102")]
    pub metrics_addr: SocketAddr,
}

impl Config {
    /// Rules between settings, checked before anything starts.
    pub fn check(&self) -> Result<(), ServiceError> {
        self.leases.check_retire_grace(self.retire_grace)?;
        Ok(())
    }
}

/// What the splitter works with.
#[derive(Clone)]
pub struct Deps {
    pub catalog: Catalog,
    pub store: Arc<MembershipStore>,
    pub work: WorkLocation,
}

impl Deps {
    /// Connects the catalog and the store (checking their schema versions) and opens the work
    /// location.
    pub async fn open(config: &Config) -> Result<Self, ServiceError> {
        let lake = Lake::open(&config.lake.lake_url)?;
        Ok(Self {
            work: WorkLocation::open(config.lake.work_url.as_deref(), &lake)?,
            catalog: bootstrap::open_catalog(&config.database).await?,
            store: Arc::new(bootstrap::open_store(&config.store).await?),
        })
    }
}

/// Serves `/healthz`, `/readyz`, `/metrics`; competes for leadership and, while leading, runs
/// the leader's duties every `interval`, until `shutdown` (then resigns, so a standby takes over
/// at once).
pub async fn run(deps: Deps, config: &Config, shutdown: Shutdown) -> Result<(), ServiceError> {
    config.check()?;
    let Deps { catalog, store, work } = deps;
    let checks = vec![bootstrap::postgres_ready(&catalog), bootstrap::cql_ready(&store)];
    let server = Server::bind(config.metrics_addr, ops_router(checks), shutdown.clone()).await?;

    let holder = config.instance.name();
    let mut elector = leader::Elector::new(catalog.clone(), holder, config.leader_ttl);
    let duties = duties::DutyConfig {
        range_size: config.plan.range_size,
        max_attempts: config.leases.max_attempts,
        settle: config.plan.settle_policy(),
        bucket_target: config.plan.bucket_target,
        cleanup_grace: config.retire_grace,
        split_batch: 100,
    };
    let retire_cfg = duties::RetireConfig { grace: config.retire_grace, segments: 64, concurrency: 4 };
    let mut retirement: Option<tokio::task::JoinHandle<()>> = None;
    let mut work_cleanup: Option<tokio::task::JoinHandle<()>> = None;
    let mut erasure: Option<tokio::task::JoinHandle<()>> = None;
    let mut last_erasure = tokio::time::Instant::now() - config.erasure_interval;
    let mut last_retire = tokio::time::Instant::now() - config.retire_interval;
    let mut health = health::HealthGauges::new(
        HealthQuery {
            express_max_bytes: config.lanes.express_max_file_size,
            urgent_priority: config.lanes.urgent_priority,
            sla: config.sla,
            finished_window: health::FINISHED_WINDOW,
        },
        config.health_interval,
    );
    let mut tick = 0u64;
    loop {
        tick += 1;
        let leading = elector.tick().await.cloned();
        health.tick(&catalog, leading.is_some()).await;
        if let Some(leader) = leading {
            let span = info_span!("leader_tick", term = leader.term(), tick);
            match duties::run_tick(&leader, &duties).instrument(span).await {
                Ok(()) => {}
                Err(CatalogError::NotLeader { .. }) => elector.lost(),
                Err(e) => warn!(error = %e, "leader tick failed; retrying next tick"),
            }
            if last_erasure.elapsed() >= config.erasure_interval && erasure.as_ref().is_none_or(|h| h.is_finished()) {
                last_erasure = tokio::time::Instant::now();
                erasure = Some(spawn_erasure(leader.clone(), store.clone(), work.clone(), config.retire_grace));
            }
            // The background passes: each at most once per MEMBERLAKE_RETIRE_INTERVAL, one at a time.
            if last_retire.elapsed() >= config.retire_interval {
                last_retire = tokio::time::Instant::now();
                if work_cleanup.as_ref().is_none_or(|h| h.is_finished()) {
                    work_cleanup = Some(spawn_work_cleanup(leader.clone(), work.clone(), config.manifest_retention));
                }
                if retirement.as_ref().is_none_or(|h| h.is_finished()) {
                    retirement = Some(spawn_retirement(leader, store.clone(), retire_cfg.clone()));
                }
            }
        }
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = tokio::time::sleep(config.interval) => {}
        }
    }
    elector.resign().await;
    for h in [retirement, work_cleanup, erasure].into_iter().flatten() {
        h.abort();
    }
    server.stopped().await
}

/// One retirement pass in the background, under the term that started it.
fn spawn_retirement(
    leader: Leadership,
    store: Arc<MembershipStore>,
    cfg: duties::RetireConfig,
) -> tokio::task::JoinHandle<()> {
    let span = info_span!("retirement", term = leader.term());
    tokio::spawn(
        async move {
            if let Err(e) = duties::retire_once(&leader, &store, &cfg).await {
                warn!(error = %e, "retirement pass failed; retrying next interval");
            }
        }
        .instrument(span),
    )
}

/// One erasure pass in the background, under the term that started it.
fn spawn_erasure(
    leader: Leadership,
    store: Arc<MembershipStore>,
    work: WorkLocation,
    grace: Duration,
) -> tokio::task::JoinHandle<()> {
    let span = info_span!("erasure", term = leader.term());
    tokio::spawn(
        async move {
            match duties::erase_once(&leader, &store, &work, grace).await {
                Ok(completed) if completed > 0 => info!(completed, "erasures complete"),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "erasure pass failed; retrying next interval"),
            }
        }
        .instrument(span),
    )
}

/// One pass over the work location in the background (expire manifests past retention, delete
/// expired versions' objects and active versions' runs), under the term that started it.
fn spawn_work_cleanup(leader: Leadership, work: WorkLocation, retention: Duration) -> tokio::task::JoinHandle<()> {
    let span = info_span!("work_cleanup", term = leader.term());
    tokio::spawn(
        async move {
            if let Err(e) = duties::clean_work_once(&leader, &work, retention).await {
                warn!(error = %e, "work location cleanup failed; retrying next tick");
            }
        }
        .instrument(span),
    )
}
