//! meta-service: watches the lake and registers each new member-list object once in the
//! catalog; serves the operator surface on `MEMBERLAKE_ADMIN_ADDR`.

mod admin;
mod discovery;
mod status_page;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use memberlake::bootstrap;
use memberlake::config::{self, parse_duration, DatabaseArgs, LakeArgs, LaneArgs, LogArgs, PriorityArgs};
use memberlake::http::{ops_router, spawn_server};
use memberlake::lake::Lake;
use memberlake::shutdown::Shutdown;

#[derive(Parser, Debug)]
#[command(
    name = "meta-service",
    version,
    about = "memberlake meta-service: discovers member lists in the lake and registers each object once."
)]
struct Args {
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    lake: LakeArgs,
    /// How often the lake is listed.
    #[arg(long, env = "MEMBERLAKE_POLL_INTERVAL", value_parser = parse_duration, default_value = "10s")]
    poll_interval: Duration,
    /// Operator API, status page, /healthz, /readyz and /metrics.
    #[arg(long, env = "MEMBERLAKE_ADMIN_ADDR", default_value = "127.0.0.1:8081")]
    admin_addr: SocketAddr,
    /// Bearer tokens accepted by the operator API (comma-separated). Unset: open (warned).
    #[arg(long, env = "MEMBERLAKE_ADMIN_TOKENS", value_delimiter = ',', hide_env_values = true)]
    admin_tokens: Vec<String>,
    /// A file of operator tokens (one per line or comma-separated), e.g. a mounted secret.
    #[arg(long, env = "MEMBERLAKE_ADMIN_TOKENS_FILE")]
    admin_tokens_file: Option<std::path::PathBuf>,
    /// Requests per second the operator API accepts (0: unlimited); over it: 429.
    #[arg(long, env = "MEMBERLAKE_ADMIN_RATE_LIMIT", default_value_t = 100)]
    admin_rate_limit: u32,
    #[command(flatten)]
    priority: PriorityArgs,
    #[command(flatten)]
    lanes: LaneArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = config::start("meta-service", |a: &Args| &a.log);
    let tokens = memberlake::http::Tokens::load_for_surface(
        "MEMBERLAKE_ADMIN_TOKENS",
        &args.admin_tokens,
        args.admin_tokens_file.as_deref(),
        args.admin_addr,
    )
    .context("reading MEMBERLAKE_ADMIN_TOKENS_FILE")?;
    let shutdown = Shutdown::on_signals();
    let catalog = bootstrap::open_catalog(&args.database).await.context("opening the catalog")?;
    let lake = Lake::open(&args.lake.lake_url)?;

    let checks = vec![bootstrap::postgres_ready(&catalog), bootstrap::lake_ready(&lake)];
    let admin = admin::router(
        admin::AdminState { catalog: catalog.clone(), tokens, knobs: args.priority, lanes: args.lanes },
        memberlake::http::RateLimit::per_second(args.admin_rate_limit),
    );
    let app = admin.merge(ops_router(checks)).layer(axum::middleware::from_fn(memberlake::http::record_metrics));
    let (_, server) = spawn_server(args.admin_addr, app, shutdown.clone())
        .await
        .with_context(|| format!("binding {}", args.admin_addr))?;

    let discovery = discovery::Discovery::new(lake, catalog).await?;
    discovery.run(args.poll_interval, shutdown.clone()).await;
    server.await??;
    tracing::info!("meta-service stopped");
    Ok(())
}
