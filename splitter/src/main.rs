//! splitter: parse the configuration, open the catalog and the store, run.

use memberlake::service;
use splitter::{Config, Deps};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (config, shutdown) = service::start::<Config>("splitter", |c| &c.log);
    // Held to the end of main: the spans still queued are exported when it drops.
    let _traces = memberlake::telemetry::traces::flush_on_exit();
    config.check()?;
    let deps = Deps::open(&config).await?;
    splitter::run(deps, &config, shutdown).await?;
    tracing::info!("splitter stopped");
    Ok(())
}
