//! meta-service: watches the lake and registers each new member-list object once in the
//! catalog; serves the operator surface on `MEMBERLAKE_ADMIN_ADDR` and the operations port
//! (`/healthz`, `/readyz`, `/metrics`) on `MEMBERLAKE_METRICS_ADDR`.
//!
//! - [`Config`], [`Deps`], [`run`]: the service as a library; `main.rs` only wires them;
//! - `discovery`: the lake poll that registers new objects;
//! - the operator surface: `surface` assembles it (behind `memberlake::http::surface`'s token
//!   check, rate limit, overload and timeout layers) from `admin`, the
//!   operator API (`/admin/v1`, the contract of `memberlake-admin`, with `views` mapping the
//!   catalog's types into that contract's views), and `status_page`, the HTML status page;
//!   both work on `state::AdminState`, which depends on neither.

mod admin;
mod discovery;
mod state;
mod status_page;
mod surface;
mod views;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use clap::Parser;
use memberlake::bootstrap;
use memberlake::catalog::Catalog;
use memberlake::config::{parse_duration, DatabaseArgs, HashArgs, LakeArgs, LaneArgs, LogArgs, PriorityArgs};
use memberlake::http::fleet::{self, FleetArgs};
use memberlake::http::surface::{ApiSurface, CallerRate, SurfaceLimits};
use memberlake::http::{health_router, ops_router, Tokens};
use memberlake::lake::Lake;
use memberlake::service::{Server, ServiceError};
use memberlake::shutdown::Shutdown;

/// The meta-service's configuration.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "meta-service",
    version,
    about = "memberlake meta-service: discovers member lists in the lake and registers each object once."
)]
pub struct Config {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub lake: LakeArgs,
    /// How erasure requests hash an email and what width their hashes have.
    #[command(flatten)]
    pub hash: HashArgs,
    /// How often the lake is listed.
    #[arg(long, env = "MEMBERLAKE_POLL_INTERVAL", value_parser = parse_duration, default_value = "10s")]
    pub poll_interval: Duration,
    /// Operator API and status page (and a /healthz for load balancers that probe it).
    #[arg(long, env = "MEMBERLAKE_ADMIN_ADDR", default_value = "127.0.0.1:8081")]
    pub admin_addr: SocketAddr,
    /// Operations port: /healthz, /readyz and /metrics, for probes and the scraper only.
    #[arg(long, env = "MEMBERLAKE_METRICS_ADDR", default_value = "127.0.0.1:9101")]
    pub metrics_addr: SocketAddr,
    /// Bearer tokens accepted by the operator API (comma-separated). Unset: open (warned).
    #[arg(long, env = "MEMBERLAKE_ADMIN_TOKENS", value_delimiter = ',', hide_env_values = true)]
    pub admin_tokens: Vec<String>,
    /// A file of operator tokens (one per line or comma-separated), e.g. a mounted secret.
    #[arg(long, env = "MEMBERLAKE_ADMIN_TOKENS_FILE")]
    pub admin_tokens_file: Option<std::path::PathBuf>,
    /// Requests each operator (token name) may make of the service, all replicas together: N
    /// per second or N/<duration> (e.g. 600/1m), bursts up to N; 0: unlimited. Each of n live
    /// replicas admits N/n. Over it: 429 with Retry-After.
    #[arg(long, env = "MEMBERLAKE_ADMIN_RATE_LIMIT", default_value = "100")]
    pub admin_rate_limit: CallerRate,
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Requests the operator surface handles at once; one more is refused at once (503).
    #[arg(long, env = "MEMBERLAKE_ADMIN_MAX_CONCURRENCY", default_value = "32")]
    pub admin_max_concurrency: NonZeroUsize,
    /// Longest time an operator request may take (the overview reads the whole queue);
    /// beyond it: 503.
    #[arg(long, env = "MEMBERLAKE_ADMIN_REQUEST_TIMEOUT", value_parser = parse_duration, default_value = "30s")]
    pub admin_request_timeout: Duration,
    #[command(flatten)]
    pub priority: PriorityArgs,
    #[command(flatten)]
    pub lanes: LaneArgs,
}

/// What the meta-service works with.
#[derive(Clone)]
pub struct Deps {
    pub catalog: Catalog,
    pub lake: Lake,
    /// Operator tokens (`MEMBERLAKE_ADMIN_TOKENS` and `_FILE`).
    pub tokens: Tokens,
}

impl Deps {
    /// Loads the operator tokens, connects the catalog (checking its schema) and opens the lake.
    pub async fn open(config: &Config) -> Result<Self, ServiceError> {
        config.hash.install()?;
        let tokens = Tokens::load_for_surface(
            "MEMBERLAKE_ADMIN_TOKENS",
            &config.admin_tokens,
            config.admin_tokens_file.as_deref(),
            config.admin_addr,
        )?;
        Ok(Self {
            catalog: bootstrap::open_catalog(&config.database).await?,
            lake: Lake::open(&config.lake.lake_url)?,
            tokens,
        })
    }
}

/// Serves the operator API and the status page on `admin_addr` and `/healthz`, `/readyz` and
/// `/metrics` on `metrics_addr`, and polls the lake every `poll_interval`, until `shutdown`.
pub async fn run(deps: Deps, config: &Config, shutdown: Shutdown) -> Result<(), ServiceError> {
    let Deps { catalog, lake, tokens } = deps;
    let checks = vec![bootstrap::postgres_ready(&catalog), bootstrap::lake_ready(&lake)];
    let replicas = fleet::join(catalog.clone(), "admin", config.fleet, shutdown.clone()).await;
    let admin = surface::router(
        state::AdminState { catalog: catalog.clone(), knobs: config.priority.knobs(), lanes: config.lanes },
        ApiSurface::new(tokens, config.limits()).shared_by(replicas.live.clone()),
    );
    let server = Server::bind(config.admin_addr, admin.merge(health_router()), shutdown.clone()).await?;
    let ops = Server::bind(config.metrics_addr, ops_router(checks), shutdown.clone()).await?;
    let discovery = loop {
        // The seen-set comes from the catalog; wait for it rather than exit if Postgres blinks.
        match discovery::Discovery::new(lake.clone(), catalog.clone()).await {
            Ok(d) => break d,
            Err(e) => {
                tracing::warn!(error = %e, "loading the registered objects failed; retrying");
                tokio::select! {
                    _ = shutdown.wait() => return stopped(server, ops, replicas).await,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    discovery.run(config.poll_interval, shutdown.clone()).await;
    stopped(server, ops, replicas).await
}

async fn stopped(admin: Server, ops: Server, replicas: fleet::FleetMembership) -> Result<(), ServiceError> {
    let served = admin.stopped().await;
    replicas.left().await;
    served?;
    ops.stopped().await
}

impl Config {
    /// The operator surface's limits (`MEMBERLAKE_ADMIN_*`).
    pub fn limits(&self) -> SurfaceLimits {
        SurfaceLimits {
            request_timeout: self.admin_request_timeout,
            max_concurrency: self.admin_max_concurrency,
            per_caller: self.admin_rate_limit,
        }
    }
}
