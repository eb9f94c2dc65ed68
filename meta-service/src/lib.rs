//! meta-service: watches the lake and registers each new member-list object once in the
//! catalog; serves the operator surface on `MEMBERLAKE_ADMIN_ADDR`.
//!
//! - [`Config`], [`Deps`], [`run`]: the service as a library; `main.rs` only wires them;
//! - `discovery`: the lake poll that registers new objects;
//! - the operator surface: `surface` assembles it (token check, limits) from `admin`, the
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
use std::time::Duration;

use clap::Parser;
use memberlake::bootstrap;
use memberlake::catalog::Catalog;
use memberlake::config::{parse_duration, DatabaseArgs, LakeArgs, LaneArgs, LogArgs, PriorityArgs};
use memberlake::http::{ops_router, Tokens};
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
    /// How often the lake is listed.
    #[arg(long, env = "MEMBERLAKE_POLL_INTERVAL", value_parser = parse_duration, default_value = "10s")]
    pub poll_interval: Duration,
    /// Operator API, status page, /healthz, /readyz and /metrics.
    #[arg(long, env = "MEMBERLAKE_ADMIN_ADDR", default_value = "127.0.0.1:8081")]
    pub admin_addr: SocketAddr,
    /// Bearer tokens accepted by the operator API (comma-separated). Unset: open (warned).
    #[arg(long, env = "MEMBERLAKE_ADMIN_TOKENS", value_delimiter = ',', hide_env_values = true)]
    pub admin_tokens: Vec<String>,
    /// A file of operator tokens (one per line or comma-separated), e.g. a mounted secret.
    #[arg(long, env = "MEMBERLAKE_ADMIN_TOKENS_FILE")]
    pub admin_tokens_file: Option<std::path::PathBuf>,
    /// Requests per second the operator API accepts (0: unlimited); over it: 429.
    #[arg(long, env = "MEMBERLAKE_ADMIN_RATE_LIMIT", default_value_t = 100)]
    pub admin_rate_limit: u32,
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

/// Serves the operator API, the status page, `/healthz`, `/readyz` and `/metrics` on
/// `admin_addr`, and polls the lake every `poll_interval`, until `shutdown`.
pub async fn run(deps: Deps, config: &Config, shutdown: Shutdown) -> Result<(), ServiceError> {
    let Deps { catalog, lake, tokens } = deps;
    let checks = vec![bootstrap::postgres_ready(&catalog), bootstrap::lake_ready(&lake)];
    let admin = surface::router(
        state::AdminState { catalog: catalog.clone(), tokens, knobs: config.priority.knobs(), lanes: config.lanes },
        memberlake::http::RateLimit::per_second(config.admin_rate_limit),
    );
    let app = admin.merge(ops_router(checks)).layer(axum::middleware::from_fn(memberlake::http::record_metrics));
    let server = Server::bind(config.admin_addr, app, shutdown.clone()).await?;
    let discovery = loop {
        // The seen-set comes from the catalog; wait for it rather than exit if Postgres blinks.
        match discovery::Discovery::new(lake.clone(), catalog.clone()).await {
            Ok(d) => break d,
            Err(e) => {
                tracing::warn!(error = %e, "loading the registered objects failed; retrying");
                tokio::select! {
                    _ = shutdown.wait() => return server.stopped().await,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            }
        }
    };
    discovery.run(config.poll_interval, shutdown.clone()).await;
    server.stopped().await
}
