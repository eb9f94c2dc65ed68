//! The store's ceiling for BENCHMARKS.md: a raw insert loop of precomputed membership rows
//! through the same prepared statement and driver, at a given concurrency, with nothing else in
//! the way (no lake read, no parsing, no hashing, no catalog).
//!
//! `store_ceiling <hashes file: 32 hex digits per line> <advertiser> <version> <concurrency>
//! [rows per batch]` with MEMBERLAKE_SCYLLA_NODES / MEMBERLAKE_SCYLLA_KEYSPACE set. Prints
//! rows/s. With rows per batch > 1 (default 1: single-row inserts), rows go in UNLOGGED batches
//! of rows that share a replica set, `concurrency` batches in flight: the best raw loop the
//! driver can do, measured beside the single-row one.

use std::time::{Duration, Instant};

use futures::StreamExt;
use memberlake::ids::{AdvertiserId, EmailHash, ListVersion};
use memberlake::store::MembershipStore;

/// Groups the rows by replica set, cuts batches of `batch_rows`, keeps `concurrency` in flight.
async fn insert_batched(
    store: &MembershipStore,
    advertiser: &AdvertiserId,
    version: ListVersion,
    hashes: &[EmailHash],
    concurrency: usize,
    batch_rows: usize,
) -> Result<(), memberlake::store::StoreError> {
    let groups = store.replica_groups();
    let mut by_group: std::collections::HashMap<u64, Vec<EmailHash>> = Default::default();
    for h in hashes {
        by_group.entry(groups.group_of(h)).or_default().push(*h);
    }
    // A plain loop rather than `buffer_unordered` over a closure, so the future stays `Send`
    // for any lifetime and can be spawned (as a worker's write stage is).
    let mut batches = by_group.values().flat_map(|rows| rows.chunks(batch_rows));
    let mut in_flight = futures::stream::FuturesUnordered::new();
    loop {
        while in_flight.len() < concurrency.max(1) {
            match batches.next() {
                Some(b) => in_flight.push(store.insert_batch(advertiser, version, b)),
                None => break,
            }
        }
        match in_flight.next().await {
            Some(done) => done?,
            None => break,
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() == 5 || args.len() == 6,
        "usage: store_ceiling <hashes> <advertiser> <version> <concurrency> [rows per batch]"
    );
    let hashes: Vec<EmailHash> = std::fs::read_to_string(&args[1])?
        .lines()
        .map(|l| EmailHash::from_hex(l.trim().as_bytes()))
        .collect::<Result<_, _>>()?;
    let advertiser = AdvertiserId::parse(&args[2])?;
    let version = ListVersion(args[3].parse()?);
    let concurrency: usize = args[4].parse()?;
    let batch_rows: usize = args.get(5).map(|a| a.parse()).transpose()?.unwrap_or(1);
    let nodes: Vec<String> = std::env::var("MEMBERLAKE_SCYLLA_NODES")?.split(',').map(str::to_owned).collect();
    let keyspace = std::env::var("MEMBERLAKE_SCYLLA_KEYSPACE")?;
    let store = MembershipStore::connect(&nodes, &keyspace, Duration::from_secs(10)).await?;
    let rows = hashes.len();
    let started = Instant::now();
    // One window kept full over all rows, as a worker's write window is, in a task of its own
    // on the runtime's threads, as a worker's write stage runs.
    if batch_rows <= 1 {
        tokio::spawn(async move { store.insert_members(&advertiser, version, &hashes, concurrency).await }).await??;
    } else {
        tokio::spawn(
            async move { insert_batched(&store, &advertiser, version, &hashes, concurrency, batch_rows).await },
        )
        .await??;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "store_ceiling rows={rows} concurrency={concurrency} batch_rows={batch_rows} seconds={secs:.2} rows_per_s={:.0}",
        rows as f64 / secs
    );
    Ok(())
}
