//! matcher-api: parse the configuration, open the catalog and the store, run.

use matcher_api::{Config, Deps};
use memberlake::service;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (config, shutdown) = service::start::<Config>("matcher-api", |c| &c.log);
    // Held to the end of main: the spans still queued are exported when it drops.
    let _traces = memberlake::telemetry::traces::flush_on_exit();
    let deps = Deps::open(&config).await?;
    matcher_api::run(deps, &config, shutdown).await?;
    tracing::info!("matcher-api stopped");
    Ok(())
}
