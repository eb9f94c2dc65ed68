//! matcher-api: stateless HTTP service answering "is this email hash a member of these
//! advertisers' active lists?" from the store, behind a moka cache.

use matcher_api::{active, api, lookup};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use memberlake::bootstrap;
use memberlake::config::{self, parse_duration, DatabaseArgs, LogArgs, StoreArgs};
use memberlake::http::{ops_router, spawn_server, ReadinessCheck};
use memberlake::shutdown::Shutdown;

#[derive(Parser, Debug)]
#[command(name = "matcher-api", version, about = "memberlake matcher-api: GET /v1/match and POST /v1/suppress.")]
struct Args {
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    store: StoreArgs,
    /// Address of the API (and its /healthz, /readyz, /metrics).
    #[arg(long, env = "MEMBERLAKE_MATCHER_ADDR", default_value = "127.0.0.1:8080")]
    matcher_addr: SocketAddr,
    /// Bearer tokens accepted from callers (comma-separated). Unset: open (warned).
    #[arg(long, env = "MEMBERLAKE_MATCHER_TOKENS", value_delimiter = ',', hide_env_values = true)]
    matcher_tokens: Vec<String>,
    /// A file of caller tokens (one per line or comma-separated), e.g. a mounted secret.
    #[arg(long, env = "MEMBERLAKE_MATCHER_TOKENS_FILE")]
    matcher_tokens_file: Option<std::path::PathBuf>,
    /// Requests per second this replica accepts on /v1 (0: unlimited); over it: 429.
    #[arg(long, env = "MEMBERLAKE_MATCHER_RATE_LIMIT", default_value_t = 50_000)]
    matcher_rate_limit: u32,
    /// Partitions (email hashes) kept in the cache.
    #[arg(long, env = "MEMBERLAKE_CACHE_ENTRIES", default_value_t = 1_000_000)]
    cache_entries: u64,
    /// Longest time a cached partition is kept.
    #[arg(long, env = "MEMBERLAKE_CACHE_TTL", value_parser = parse_duration, default_value = "10m")]
    cache_ttl: Duration,
    /// Active versions are re-read at least this often (and at once on each activation notice).
    #[arg(long, env = "MEMBERLAKE_VERSIONS_REFRESH", value_parser = parse_duration, default_value = "1s")]
    versions_refresh: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = config::start("matcher-api", |a: &Args| &a.log);
    let tokens = memberlake::http::Tokens::load_for_surface(
        "MEMBERLAKE_MATCHER_TOKENS",
        &args.matcher_tokens,
        args.matcher_tokens_file.as_deref(),
        args.matcher_addr,
    )
    .context("reading MEMBERLAKE_MATCHER_TOKENS_FILE")?;
    let shutdown = Shutdown::on_signals();
    let catalog = bootstrap::open_catalog(&args.database).await.context("opening the catalog")?;
    let store = Arc::new(bootstrap::open_store(&args.store).await.context("opening the store")?);

    let active = active::ActiveVersions::default();
    if let Err(e) = active.refresh(&catalog).await {
        tracing::warn!(error = %e, "initial load of active versions failed; retrying in the background");
    }
    tokio::spawn(active.clone().run(catalog.clone(), args.versions_refresh, shutdown.clone()));

    let memberships = lookup::Memberships::new(store.clone(), args.cache_entries, args.cache_ttl);
    let state = api::AppState { active: active.clone(), memberships, tokens };
    let checks = vec![
        bootstrap::cql_ready(&store),
        ReadinessCheck::new("active_versions", {
            let a = active.clone();
            move || {
                let loaded = a.snapshot().is_some();
                async move {
                    if loaded {
                        Ok(())
                    } else {
                        Err("not loaded yet".to_owned())
                    }
                }
            }
        }),
    ];
    let app = api::router(state, memberlake::http::RateLimit::per_second(args.matcher_rate_limit))
        .merge(ops_router(checks))
        .layer(axum::middleware::from_fn(memberlake::http::record_metrics));
    let (_, server) = spawn_server(args.matcher_addr, app, shutdown.clone())
        .await
        .with_context(|| format!("binding {}", args.matcher_addr))?;
    server.await??;
    tracing::info!("matcher-api stopped");
    Ok(())
}
