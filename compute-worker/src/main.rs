//! compute-worker: parse the configuration, open the catalog, the store and the lake, run.

use compute_worker::{Config, Deps};
use memberlake::service;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (config, shutdown) = service::start::<Config>("compute-worker", |c| &c.log);
    if config.hash_threads > 0 {
        rayon::ThreadPoolBuilder::new().num_threads(config.hash_threads).build_global()?;
    }
    let deps = Deps::open(&config).await?;
    compute_worker::run(deps, &config, shutdown).await?;
    tracing::info!("compute-worker stopped");
    Ok(())
}
