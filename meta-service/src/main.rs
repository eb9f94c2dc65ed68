//! meta-service: parse the configuration, open the catalog and the lake, run.

use memberlake::service;
use meta_service::{Config, Deps};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (config, shutdown) = service::start::<Config>("meta-service", |c| &c.log);
    // Held to the end of main: the spans still queued are exported when it drops.
    let _traces = memberlake::telemetry::traces::flush_on_exit();
    let deps = Deps::open(&config).await?;
    meta_service::run(deps, &config, shutdown).await?;
    tracing::info!("meta-service stopped");
    Ok(())
}
