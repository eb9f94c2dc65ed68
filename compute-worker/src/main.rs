//! compute-worker: parse the configuration, open the catalog, the store and the lake, run.

use compute_worker::{Config, Deps};
use memberlake::service;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (config, shutdown) = service::start::<Config>("compute-worker", |c| &c.log);
    // Held to the end of main: the spans still queued are exported when it drops.
    let _traces = memberlake::telemetry::traces::flush_on_exit();
    if config.hash_threads > 0 {
        rayon::ThreadPoolBuilder::new().num_threads(config.hash_threads).build_global()?;
    }
    let deps = Deps::open(&config).await?;
    compute_worker::run(deps, &config, shutdown).await?;
    tracing::info!("compute-worker stopped");
    Ok(())
}
