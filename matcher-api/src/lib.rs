//! matcher-api: stateless HTTP service answering "is this email hash a member of these
//! advertisers' active lists?" from the store, behind a moka cache.
//!
//! - [`Config`], [`Deps`], [`run`]: the service as a library; `main.rs` only wires them;
//! - [`api`]: the HTTP API (`/v1/match`, `/v1/suppress`) and its OpenAPI document;
//! - [`active`]: every advertiser's active list version, followed via LISTEN/NOTIFY;
//! - [`lookup`]: the partition cache in front of the store;
//! - [`filters`]: the active versions' membership filters, loaded within a memory budget, so
//!   most "not a member" answers need no store read.
//!
//! The fuzz targets call the request parsers directly.

pub mod active;
pub mod api;
pub mod filters;
pub mod lookup;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use memberlake::bootstrap;
use memberlake::catalog::Catalog;
use memberlake::config::{parse_bytes, parse_duration, DatabaseArgs, LakeArgs, LogArgs, StoreArgs};
use memberlake::http::fleet::{self, FleetArgs};
use memberlake::http::surface::{ApiSurface, CallerRate, SurfaceLimits};
use memberlake::http::{health_router, ops_router, ReadinessCheck, Tokens};
use memberlake::lake::Lake;
use memberlake::service::{Server, ServiceError};
use memberlake::shutdown::Shutdown;
use memberlake::store::MembershipStore;
use memberlake::work::WorkLocation;

/// The matcher's configuration.
#[derive(Parser, Debug, Clone)]
#[command(name = "matcher-api", version, about = "memberlake matcher-api: GET /v1/match and POST /v1/suppress.")]
pub struct Config {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address of the API (and of a /healthz for load balancers that probe it).
    #[arg(long, env = "MEMBERLAKE_MATCHER_ADDR", default_value = "127.0.0.1:8080")]
    pub matcher_addr: SocketAddr,
    /// Operations port: /healthz, /readyz and /metrics, for probes and the scraper only.
    #[arg(long, env = "MEMBERLAKE_METRICS_ADDR", default_value = "127.0.0.1:9100")]
    pub metrics_addr: SocketAddr,
    /// Bearer tokens accepted from callers (comma-separated). Unset: open (warned).
    #[arg(long, env = "MEMBERLAKE_MATCHER_TOKENS", value_delimiter = ',', hide_env_values = true)]
    pub matcher_tokens: Vec<String>,
    /// A file of caller tokens (one per line or comma-separated), e.g. a mounted secret.
    #[arg(long, env = "MEMBERLAKE_MATCHER_TOKENS_FILE")]
    pub matcher_tokens_file: Option<std::path::PathBuf>,
    /// Requests each caller (token name) may make of the service, all replicas together: N per
    /// second or N/<duration> (e.g. 1/1h), bursts up to N; 0: unlimited. Each of n live replicas
    /// admits N/n. Over it: 429 with Retry-After.
    #[arg(long, env = "MEMBERLAKE_MATCHER_RATE_LIMIT", default_value = "50000")]
    pub matcher_rate_limit: CallerRate,
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Requests this replica handles at once; one more is refused at once (503, Retry-After),
    /// never queued. Normal load keeps about RPS x latency in flight (10K x 1 ms = 10).
    #[arg(long, env = "MEMBERLAKE_MATCHER_MAX_CONCURRENCY", default_value = "1024")]
    pub matcher_max_concurrency: NonZeroUsize,
    /// Longest time a request may take, body included; beyond it: 503 with Retry-After. Above
    /// MEMBERLAKE_SCYLLA_TIMEOUT, so that a slow store answers with its own 503 first.
    #[arg(long, env = "MEMBERLAKE_MATCHER_REQUEST_TIMEOUT", value_parser = parse_duration, default_value = "5s")]
    pub matcher_request_timeout: Duration,
    /// Partitions (email hashes) kept in the cache.
    #[arg(long, env = "MEMBERLAKE_CACHE_ENTRIES", default_value_t = 1_000_000)]
    pub cache_entries: u64,
    /// Longest time a cached partition is kept.
    #[arg(long, env = "MEMBERLAKE_CACHE_TTL", value_parser = parse_duration, default_value = "10m")]
    pub cache_ttl: Duration,
    /// Active versions are re-read at least this often (and at once on each activation notice).
    #[arg(long, env = "MEMBERLAKE_VERSIONS_REFRESH", value_parser = parse_duration, default_value = "1s")]
    pub versions_refresh: Duration,
    /// Memory for the active versions' membership filters, read from the work location (~1.1
    /// bytes per member at 8-bit fingerprints, ~2.3 at 16): a hash a version's filter rules out
    /// is answered "not a member" without a store read. Lists beyond it, smallest first kept,
    /// are answered from the store. 0: no filters.
    #[arg(long, env = "MEMBERLAKE_MATCHER_FILTER_MEMORY", value_parser = parse_budget, default_value = "1GiB")]
    pub matcher_filter_memory: u64,
    /// Where the filters are (the work location; the lake URL only locates its default).
    #[command(flatten)]
    pub lake: LakeArgs,
}

/// What the matcher works with.
#[derive(Clone)]
pub struct Deps {
    pub catalog: Catalog,
    pub store: Arc<MembershipStore>,
    /// Caller tokens (`MEMBERLAKE_MATCHER_TOKENS` and `_FILE`).
    pub tokens: Tokens,
    /// The work location the filters are read from (`None`: no filters).
    pub work: Option<WorkLocation>,
}

impl Deps {
    /// Loads the caller tokens and connects the catalog and the store (checking their schemas).
    pub async fn open(config: &Config) -> Result<Self, ServiceError> {
        let tokens = Tokens::load_for_surface(
            "MEMBERLAKE_MATCHER_TOKENS",
            &config.matcher_tokens,
            config.matcher_tokens_file.as_deref(),
            config.matcher_addr,
        )?;
        let work = match config.matcher_filter_memory {
            0 => None,
            _ => Some(WorkLocation::open(config.lake.work_url.as_deref(), &Lake::open(&config.lake.lake_url)?)?),
        };
        Ok(Self {
            catalog: bootstrap::open_catalog(&config.database).await?,
            store: Arc::new(bootstrap::open_store(&config.store).await?),
            tokens,
            work,
        })
    }
}

/// Serves the API on `matcher_addr` and `/healthz`, `/readyz` and `/metrics` on `metrics_addr`
/// until `shutdown`, following activations in the background.
pub async fn run(deps: Deps, config: &Config, shutdown: Shutdown) -> Result<(), ServiceError> {
    let Deps { catalog, store, tokens, work } = deps;
    let active = active::ActiveVersions::default();
    if let Err(e) = active.refresh(&catalog).await {
        tracing::warn!(error = %e, "initial load of active versions failed; retrying in the background");
    }
    tokio::spawn(active.clone().run(catalog.clone(), config.versions_refresh, shutdown.clone()));
    if let Some(work) = work {
        let loader = filters::FilterLoader::new(active.clone(), work, config.matcher_filter_memory);
        tokio::spawn(loader.run(shutdown.clone()));
    }

    let memberships = lookup::Memberships::new(store.clone(), config.cache_entries, config.cache_ttl);
    let state = api::AppState { active: active.clone(), memberships };
    let checks = vec![bootstrap::cql_ready(&store), versions_loaded(&active)];
    let replicas = fleet::join(catalog.clone(), "matcher", config.fleet, shutdown.clone()).await;
    let surface = ApiSurface::new(tokens, config.limits()).shared_by(replicas.live.clone());
    let app = surface.wrap(api::router(state)).merge(health_router());
    let api = Server::bind(config.matcher_addr, app, shutdown.clone()).await?;
    let ops = Server::bind(config.metrics_addr, ops_router(checks), shutdown).await?;
    let served = api.stopped().await;
    replicas.left().await;
    served?;
    ops.stopped().await
}

impl Config {
    /// The API surface's limits (`MEMBERLAKE_MATCHER_*`).
    pub fn limits(&self) -> SurfaceLimits {
        SurfaceLimits {
            request_timeout: self.matcher_request_timeout,
            max_concurrency: self.matcher_max_concurrency,
            per_caller: self.matcher_rate_limit,
        }
    }
}

/// A size in bytes (`512MiB`, ...), or `0`: none.
fn parse_budget(s: &str) -> Result<u64, String> {
    match s.trim() {
        "0" => Ok(0),
        size => parse_bytes(size),
    }
}

/// `/readyz` check: the active versions were loaded at least once (before that, no answer can
/// be right).
fn versions_loaded(active: &active::ActiveVersions) -> ReadinessCheck {
    let active = active.clone();
    ReadinessCheck::new("active_versions", move || {
        let loaded = active.snapshot().is_some();
        async move { loaded.then_some(()).ok_or_else(|| "not loaded yet".to_owned()) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_budget_is_a_size_or_zero() {
        let parse = |v: &str| Config::try_parse_from(["matcher-api", "--matcher-filter-memory", v]);
        assert_eq!(parse("0").unwrap().matcher_filter_memory, 0, "0: no filters");
        assert_eq!(parse("512MiB").unwrap().matcher_filter_memory, 512 << 20);
        assert!(parse("lots").is_err());
        assert_eq!(Config::try_parse_from(["matcher-api"]).unwrap().matcher_filter_memory, 1 << 30);
    }
}
