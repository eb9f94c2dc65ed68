//! meta-service: parse the configuration, open the catalog and the lake, run.

use memberlake::service;
use meta_service::{Config, Deps};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (config, shutdown) = service::start::<Config>("meta-service", |c| &c.log);
    let deps = Deps::open(&config).await?;
    meta_service::run(deps, &config, shutdown).await?;
    tracing::info!("meta-service stopped");
    Ok(())
}
