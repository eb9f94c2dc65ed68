//! compute-worker: stateless; pulls work-unit leases by priority: reads each byte range with a
//! ranged GET, parses, normalizes and MD5-hashes emails on rayon and writes them as sorted runs;
//! merges a version's runs bucket by bucket, diffs them against the active version and writes
//! the difference to the store; undoes and retires versions' rows (`docs/versions.md`).
//!
//! - [`Config`]: everything a worker is told (`MEMBERLAKE_*`, flags override);
//! - [`run`]: the worker, given its dependencies, until shutdown;
//! - `worker`: the claim loop of each slot, and the one place a range's result becomes a lease
//!   transition;
//! - `process`: the read → hash → write pipeline of one range.

mod process;
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use memberlake::bootstrap;
use memberlake::catalog::{Catalog, ClaimPolicy, Lane};
use memberlake::config::{
    parse_bytes, parse_duration, DatabaseArgs, InstanceArgs, LakeArgs, LaneArgs, LeaseArgs, LogArgs,
};
use memberlake::config::{PriorityArgs, StoreArgs};
use memberlake::filter::FingerprintBits;
use memberlake::http::ops_router;
use memberlake::lake::Lake;
use memberlake::service::{Server, ServiceError};
use memberlake::shutdown::Shutdown;
use memberlake::store::{MembershipStore, WriteWindow};
use memberlake::work::WorkLocation;

pub use process::UnitError;

/// The compute-worker's configuration.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "compute-worker",
    version,
    about = "memberlake compute-worker: leases ranges, hashes emails, writes memberships."
)]
pub struct Config {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub lake: LakeArgs,
    #[command(flatten)]
    pub leases: LeaseArgs,
    #[command(flatten)]
    pub priority: PriorityArgs,
    /// Claim loops of this worker, by lane: `express` takes only small or urgent files' ranges,
    /// `bulk` takes anything, most urgent first. E.g. `express,bulk,bulk`.
    #[arg(long, env = "MEMBERLAKE_WORKER_LANES", value_delimiter = ',', default_value = "express,bulk")]
    pub lanes: Vec<LaneKind>,
    #[command(flatten)]
    pub express: LaneArgs,
    /// Concurrent leases one file may hold across all workers (0: no cap), so that one huge
    /// file never holds every worker.
    #[arg(long, env = "MEMBERLAKE_MAX_LEASES_PER_FILE", default_value_t = 32)]
    pub max_leases_per_file: i32,
    /// Pause between claims when there is no work.
    #[arg(long, env = "MEMBERLAKE_WORKER_POLL_INTERVAL", value_parser = parse_duration, default_value = "500ms")]
    pub poll_interval: Duration,
    /// Bytes of complete lines hashed as one unit on the rayon pool.
    #[arg(long, env = "MEMBERLAKE_BLOCK_SIZE", value_parser = parse_bytes, default_value_t = memberlake::ingest::DEFAULT_BLOCK_SIZE)]
    pub block_size: u64,
    /// Store requests (batches) in flight per worker, shared by all its lanes. 16 batches of 64
    /// measured best against a single local node sharing two cores (BENCHMARKS.md); raise it
    /// for a cluster whose write latency is higher.
    #[arg(long, env = "MEMBERLAKE_WRITE_CONCURRENCY", default_value_t = 16)]
    pub write_concurrency: usize,
    /// Rows per store request: UNLOGGED batches of rows that share a replica set, capped below
    /// the node's batch-size warning (5 KiB); 1 writes single rows (BENCHMARKS.md).
    #[arg(long, env = "MEMBERLAKE_WRITE_BATCH_ROWS", default_value_t = memberlake::store::DEFAULT_BATCH_ROWS as u16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub write_batch_rows: u16,
    /// How long failing store writes are retried before the range is given back.
    #[arg(long, env = "MEMBERLAKE_STORE_RETRY_BUDGET", value_parser = parse_duration, default_value = "60s")]
    pub store_retry_budget: Duration,
    /// Hashes an ingest range holds before it writes them as a sorted run (33 bytes each in memory): the
    /// bound on a range's memory whatever its size.
    #[arg(long, env = "MEMBERLAKE_RUN_SPILL_HASHES", default_value_t = memberlake::versions::DEFAULT_RUN_SPILL_HASHES)]
    pub run_spill_hashes: usize,
    /// Membership filters built with each manifest bucket, for the matchers to answer "not a
    /// member" from memory (issue 21): `8` (~9 bits per member, ~0.4 % of non-members still
    /// read from the store), `16` (~18 bits, ~0.0015 %) or `off`. A version merged with `off`
    /// is answered from the store alone.
    #[arg(long, env = "MEMBERLAKE_FILTER_BITS", default_value = "8", value_parser = parse_filter_bits)]
    pub filter_bits: FilterBits,
    /// Hashing threads (0: one per core).
    #[arg(long, env = "MEMBERLAKE_HASH_THREADS", default_value_t = 0)]
    pub hash_threads: usize,
    /// After SIGTERM, time the range in hand gets to finish before its lease is given back.
    #[arg(long, env = "MEMBERLAKE_SHUTDOWN_GRACE", value_parser = parse_duration, default_value = "20s")]
    pub shutdown_grace: Duration,
    #[command(flatten)]
    pub instance: InstanceArgs,
    /// /healthz, /readyz and /metrics.
    #[arg(long, env = "MEMBERLAKE_METRICS_ADDR", default_value = "127.0.0.1:9103")]
    pub metrics_addr: SocketAddr,
}

/// `MEMBERLAKE_FILTER_BITS`: a width, or `None` (`off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterBits(pub Option<FingerprintBits>);

/// `8`, `16` or `off` (no filters).
fn parse_filter_bits(s: &str) -> Result<FilterBits, String> {
    match s.trim() {
        "off" => Ok(FilterBits(None)),
        bits => bits.parse().map(|b| FilterBits(Some(b))).map_err(|e| format!("{e}, or off")),
    }
}

/// Which ranges a claim loop takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LaneKind {
    Express,
    Bulk,
}

/// What a worker works with; opened by the caller (`main`, or a test in process).
#[derive(Clone)]
pub struct Deps {
    pub catalog: Catalog,
    pub store: Arc<MembershipStore>,
    pub lake: Lake,
    pub work: WorkLocation,
}

impl Deps {
    /// Connects the catalog and the store (checking their schema versions) and opens the lake.
    pub async fn open(config: &Config) -> Result<Self, ServiceError> {
        let lake = Lake::open(&config.lake.lake_url)?;
        let work = WorkLocation::open(config.lake.work_url.as_deref(), &lake)?;
        Ok(Self {
            catalog: bootstrap::open_catalog(&config.database).await?,
            store: Arc::new(bootstrap::open_store(&config.store).await?),
            lake,
            work,
        })
    }
}

impl Config {
    /// One claim policy per configured lane. Every policy names this worker's lake: a worker
    /// only ever claims files registered from the lake it reads.
    pub fn claim_policies(&self, lake: &Lake) -> Vec<ClaimPolicy> {
        self.lanes
            .iter()
            .map(|kind| ClaimPolicy {
                lake: lake.bucket().to_owned(),
                lane: match kind {
                    LaneKind::Express => {
                        Lane::express(self.express.express_max_file_size, self.express.urgent_priority)
                    }
                    LaneKind::Bulk => Lane::bulk(),
                },
                per_file_cap: self.max_leases_per_file,
                knobs: self.priority.knobs(),
            })
            .collect()
    }
}

/// Serves `/healthz`, `/readyz`, `/metrics` and claims and processes ranges until `shutdown`;
/// the range in hand then gets `shutdown_grace` to finish before it is given back.
pub async fn run(deps: Deps, config: &Config, shutdown: Shutdown) -> Result<(), ServiceError> {
    let checks = vec![
        bootstrap::postgres_ready(&deps.catalog),
        bootstrap::cql_ready(&deps.store),
        bootstrap::lake_ready(&deps.lake),
    ];
    let server = Server::bind(config.metrics_addr, ops_router(checks), shutdown.clone()).await?;
    let worker = Arc::new(worker::Worker {
        cfg: worker::WorkerConfig {
            worker_id: config.instance.name(),
            lease_ttl: config.leases.lease_ttl,
            idle_poll: config.poll_interval,
            max_attempts: config.leases.max_attempts,
            shutdown_grace: config.shutdown_grace,
            slots: config.claim_policies(&deps.lake),
            process: process::ProcessConfig {
                block_size: config.block_size as usize,
                write_window: WriteWindow::new(config.write_concurrency),
                store_retry_budget: config.store_retry_budget,
                write_batch_rows: usize::from(config.write_batch_rows),
                run_spill_hashes: config.run_spill_hashes,
                filter_bits: config.filter_bits.0,
            },
        },
        catalog: deps.catalog,
        lake: deps.lake,
        work: deps.work,
        store: deps.store,
    });
    worker.run(shutdown).await;
    server.stopped().await
}
