//! The store's ceiling for BENCHMARKS.md: a raw insert loop of precomputed membership rows
//! through the same prepared statement and driver, at a given concurrency, with nothing else in
//! the way (no lake read, no parsing, no hashing, no catalog).
//!
//! `store_ceiling <hashes file: 32 hex digits per line> <advertiser> <version> <concurrency>`
//! with MEMBERLAKE_SCYLLA_NODES / MEMBERLAKE_SCYLLA_KEYSPACE set. Prints rows/s.

use std::time::{Duration, Instant};

use memberlake::ids::{AdvertiserId, EmailHash, ListVersion};
use memberlake::store::MembershipStore;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() == 5, "usage: store_ceiling <hashes> <advertiser> <version> <concurrency>");
    let hashes: Vec<EmailHash> = std::fs::read_to_string(&args[1])?
        .lines()
        .map(|l| EmailHash::from_hex(l.trim().as_bytes()))
        .collect::<Result<_, _>>()?;
    let advertiser = AdvertiserId::parse(&args[2])?;
    let version = ListVersion(args[3].parse()?);
    let concurrency: usize = args[4].parse()?;
    let nodes: Vec<String> = std::env::var("MEMBERLAKE_SCYLLA_NODES")?.split(',').map(str::to_owned).collect();
    let keyspace = std::env::var("MEMBERLAKE_SCYLLA_KEYSPACE")?;
    let store = MembershipStore::connect(&nodes, &keyspace, Duration::from_secs(10)).await?;
    let rows = hashes.len();
    let started = Instant::now();
    // One window kept full over all rows, as a worker's write window is, in a task of its own
    // on the runtime's threads, as a worker's write stage runs.
    tokio::spawn(async move { store.insert_members(&advertiser, version, &hashes, concurrency).await }).await??;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "store_ceiling rows={rows} concurrency={concurrency} seconds={secs:.2} rows_per_s={:.0}",
        rows as f64 / secs
    );
    Ok(())
}
