//! compute-worker: stateless; pulls range leases by priority, reads each range with a ranged
//! GET, parses, normalizes and MD5-hashes emails on rayon, writes memberships to the store.

mod process;
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use memberlake::bootstrap;
use memberlake::catalog::{ClaimPolicy, Lane};
use memberlake::config::{
    self, parse_bytes, parse_duration, DatabaseArgs, LakeArgs, LaneArgs, LogArgs, PriorityArgs, StoreArgs,
};
use memberlake::http::{ops_router, spawn_server};
use memberlake::lake::Lake;
use memberlake::store::WriteWindow;
use memberlake::shutdown::Shutdown;

#[derive(Parser, Debug)]
#[command(
    name = "compute-worker",
    version,
    about = "memberlake compute-worker: leases ranges, hashes emails, writes memberships."
)]
struct Args {
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    lake: LakeArgs,
    #[command(flatten)]
    priority: PriorityArgs,
    /// Claim loops of this worker, by lane: `express` takes only small or urgent files' ranges,
    /// `bulk` takes anything, most urgent first. E.g. `express,bulk,bulk`.
    #[arg(long, env = "MEMBERLAKE_WORKER_LANES", value_delimiter = ',', default_value = "express,bulk")]
    lanes: Vec<LaneKind>,
    #[command(flatten)]
    express: LaneArgs,
    /// Concurrent leases one file may hold across all workers (0: no cap), so that one huge
    /// file never holds every worker.
    #[arg(long, env = "MEMBERLAKE_MAX_LEASES_PER_FILE", default_value_t = 32)]
    max_leases_per_file: i32,
    /// Lease lifetime; renewed every third of it. A dead worker's range is retried after it.
    #[arg(long, env = "MEMBERLAKE_LEASE_TTL", value_parser = parse_duration, default_value = "30s")]
    lease_ttl: Duration,
    /// Pause between claims when there is no work.
    #[arg(long, env = "MEMBERLAKE_WORKER_POLL_INTERVAL", value_parser = parse_duration, default_value = "500ms")]
    poll_interval: Duration,
    /// Attempts a range gets before it (and its file) fails.
    #[arg(long, env = "MEMBERLAKE_MAX_ATTEMPTS", default_value_t = 5)]
    max_attempts: i32,
    /// Bytes of complete lines hashed as one unit on the rayon pool.
    #[arg(long, env = "MEMBERLAKE_BLOCK_SIZE", value_parser = parse_bytes, default_value = "4MiB")]
    block_size: u64,
    /// Store inserts in flight per worker, shared by all its lanes. 96 measured best against a
    /// single local node sharing two cores (BENCHMARKS.md); raise it for a cluster whose write
    /// latency is higher.
    #[arg(long, env = "MEMBERLAKE_WRITE_CONCURRENCY", default_value_t = 96)]
    write_concurrency: usize,
    /// How long failing store writes are retried before the range is given back.
    #[arg(long, env = "MEMBERLAKE_STORE_RETRY_BUDGET", value_parser = parse_duration, default_value = "60s")]
    store_retry_budget: Duration,
    /// Hashing threads (0: one per core).
    #[arg(long, env = "MEMBERLAKE_HASH_THREADS", default_value_t = 0)]
    hash_threads: usize,
    /// After SIGTERM, time the range in hand gets to finish before its lease is given back.
    #[arg(long, env = "MEMBERLAKE_SHUTDOWN_GRACE", value_parser = parse_duration, default_value = "20s")]
    shutdown_grace: Duration,
    /// Name of this worker in leases (default: host-pid).
    #[arg(long, env = "MEMBERLAKE_INSTANCE_ID")]
    instance_id: Option<String>,
    /// /healthz, /readyz and /metrics.
    #[arg(long, env = "MEMBERLAKE_METRICS_ADDR", default_value = "127.0.0.1:9103")]
    metrics_addr: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LaneKind {
    Express,
    Bulk,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = config::start("compute-worker", |a: &Args| &a.log);
    if args.hash_threads > 0 {
        rayon::ThreadPoolBuilder::new().num_threads(args.hash_threads).build_global()?;
    }
    let shutdown = Shutdown::on_signals();
    let catalog = bootstrap::open_catalog(&args.database).await.context("opening the catalog")?;
    let store = Arc::new(bootstrap::open_store(&args.store).await.context("opening the store")?);
    let lake = Lake::open(&args.lake.lake_url)?;

    let checks = vec![bootstrap::postgres_ready(&catalog), bootstrap::cql_ready(&store)];
    let (_, server) = spawn_server(args.metrics_addr, ops_router(checks), shutdown.clone())
        .await
        .with_context(|| format!("binding {}", args.metrics_addr))?;

    let worker = Arc::new(worker::Worker {
        catalog,
        lake,
        store,
        cfg: worker::WorkerConfig {
            worker_id: bootstrap::instance_id(args.instance_id.as_deref()),
            lease_ttl: args.lease_ttl,
            idle_poll: args.poll_interval,
            max_attempts: args.max_attempts,
            shutdown_grace: args.shutdown_grace,
            slots: args
                .lanes
                .iter()
                .map(|kind| ClaimPolicy {
                    lane: match kind {
                        LaneKind::Express => {
                            Lane::express(args.express.express_max_file_size, args.express.urgent_priority)
                        }
                        LaneKind::Bulk => Lane::bulk(),
                    },
                    per_file_cap: args.max_leases_per_file,
                    knobs: args.priority,
                })
                .collect(),
            process: process::ProcessConfig {
                block_size: args.block_size as usize,
                write_window: WriteWindow::new(args.write_concurrency),
                store_retry_budget: args.store_retry_budget,
            },
        },
    });
    worker.run(shutdown.clone()).await;
    server.await??;
    tracing::info!("compute-worker stopped");
    Ok(())
}
