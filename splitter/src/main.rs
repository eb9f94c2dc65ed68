//! splitter: leader-elected (hot standby). The leader cuts registered files into byte ranges,
//! returns expired leases to the queue, completes files, activates list versions and retires
//! superseded versions' rows from the store.

mod duties;
mod leader;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use memberlake::bootstrap;
use memberlake::catalog::CatalogError;
use memberlake::config::{self, parse_bytes, parse_duration, DatabaseArgs, LogArgs, StoreArgs};
use memberlake::http::{ops_router, spawn_server};
use memberlake::shutdown::Shutdown;
use tracing::{info_span, warn, Instrument};

#[derive(Parser, Debug)]
#[command(
    name = "splitter",
    version,
    about = "memberlake splitter: leader-elected range planner, lease reaper and version activator."
)]
struct Args {
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    store: StoreArgs,
    /// Byte size of the ranges files are cut into (compressed files are one range).
    #[arg(long, env = "MEMBERLAKE_RANGE_SIZE", value_parser = parse_bytes, default_value = "64MiB")]
    range_size: u64,
    /// Leader lease lifetime; a standby takes over within this after the leader dies.
    #[arg(long, env = "MEMBERLAKE_LEADER_TTL", value_parser = parse_duration, default_value = "10s")]
    leader_ttl: Duration,
    /// How often the leader splits, reaps and settles.
    #[arg(long, env = "MEMBERLAKE_SPLITTER_INTERVAL", value_parser = parse_duration, default_value = "1s")]
    interval: Duration,
    /// Attempts a range gets before it (and its file) fails.
    #[arg(long, env = "MEMBERLAKE_MAX_ATTEMPTS", default_value_t = 5)]
    max_attempts: i32,
    /// A file with a larger share of rejected rows fails instead of activating.
    #[arg(long, env = "MEMBERLAKE_MAX_REJECT_RATIO", default_value_t = 0.5)]
    max_reject_ratio: f64,
    /// How often superseded versions are looked for and retired from the store.
    #[arg(long, env = "MEMBERLAKE_RETIRE_INTERVAL", value_parser = parse_duration, default_value = "5m")]
    retire_interval: Duration,
    /// Wait after a version stops being needed before deleting its rows (> the lease TTL, so no
    /// worker with a revoked lease is still writing them).
    #[arg(long, env = "MEMBERLAKE_RETIRE_GRACE", value_parser = parse_duration, default_value = "2m")]
    retire_grace: Duration,
    /// Name of this process in the leader lease (default: host-pid).
    #[arg(long, env = "MEMBERLAKE_INSTANCE_ID")]
    instance_id: Option<String>,
    /// /healthz, /readyz and /metrics.
    #[arg(long, env = "MEMBERLAKE_METRICS_ADDR", default_value = "127.0.0.1:9102")]
    metrics_addr: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = config::start("splitter", |a: &Args| &a.log);
    let shutdown = Shutdown::on_signals();
    let catalog = bootstrap::open_catalog(&args.database).await.context("opening the catalog")?;
    let store = Arc::new(bootstrap::open_store(&args.store).await.context("opening the store")?);

    let checks = vec![bootstrap::postgres_ready(&catalog), bootstrap::cql_ready(&store)];
    let (_, server) = spawn_server(args.metrics_addr, ops_router(checks), shutdown.clone())
        .await
        .with_context(|| format!("binding {}", args.metrics_addr))?;

    let holder = bootstrap::instance_id(args.instance_id.as_deref());
    let mut elector = leader::Elector::new(catalog.clone(), holder.clone(), args.leader_ttl);
    let duties = duties::DutyConfig {
        range_size: args.range_size,
        max_attempts: args.max_attempts,
        max_reject_ratio: args.max_reject_ratio,
        split_batch: 100,
    };
    let retire_cfg = duties::RetireConfig { grace: args.retire_grace, segments: 64, concurrency: 4 };
    let mut retirement: Option<tokio::task::JoinHandle<()>> = None;
    let mut last_retire = tokio::time::Instant::now() - args.retire_interval;
    let mut tick = 0u64;
    loop {
        tick += 1;
        if let Some(term) = elector.tick().await {
            let span = info_span!("leader_tick", term, tick);
            match duties::run_tick(&catalog, term, &duties).instrument(span).await {
                Ok(()) => {}
                Err(CatalogError::NotLeader { .. }) => elector.lost(),
                Err(e) => warn!(error = %e, "leader tick failed; retrying next tick"),
            }
            let idle = retirement.as_ref().is_none_or(|h| h.is_finished());
            if idle && last_retire.elapsed() >= args.retire_interval {
                last_retire = tokio::time::Instant::now();
                let (catalog, store, cfg) = (catalog.clone(), store.clone(), retire_cfg.clone());
                retirement = Some(tokio::spawn(
                    async move {
                        if let Err(e) = duties::retire_once(&catalog, &store, term, &cfg).await {
                            warn!(error = %e, "retirement pass failed; retrying next interval");
                        }
                    }
                    .instrument(info_span!("retirement", term)),
                ));
            }
        }
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = tokio::time::sleep(args.interval) => {}
        }
    }
    elector.resign().await;
    if let Some(h) = retirement {
        h.abort();
    }
    server.await??;
    tracing::info!("splitter stopped");
    Ok(())
}
