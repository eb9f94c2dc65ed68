//! The store's ceiling for BENCHMARKS.md: a raw insert loop of precomputed membership rows
//! (`membership_changes`, present from the version on, as a first version writes them) through
//! the same prepared statement and driver, at a given concurrency, with nothing else in
//! the way (no lake read, no parsing, no hashing, no catalog).
//!
//! `store_ceiling <hashes file: 32 hex digits per line> <advertiser> <version> <concurrency>
//! [rows per batch]` with MEMBERLAKE_SCYLLA_NODES / MEMBERLAKE_SCYLLA_KEYSPACE set. Prints
//! rows/s. With rows per batch > 1 (default 1: single-row inserts), rows go in UNLOGGED batches
//! of rows that share a replica set, `concurrency` batches in flight: the best raw loop the
//! driver can do, measured beside the single-row one.

use std::time::{Duration, Instant};

use memberlake::ids::{AdvertiserId, EmailHash, ListVersion};
use memberlake::store::{ChangeOp, MembershipStore};

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
    // The store's settings from MEMBERLAKE_SCYLLA_* as a service reads them (credentials, TLS).
    let mut settings = memberlake::config::ConnectionSettings::from_env()?.store;
    settings.scylla_timeout = Duration::from_secs(10);
    let store = MembershipStore::connect(&settings).await?;
    let rows = hashes.len();
    let started = Instant::now();
    // One window kept full over all rows, as a worker's write window is, in a task of its own
    // on the runtime's threads, as a worker's write stage runs.
    tokio::spawn(async move {
        store
            .apply_changes(ChangeOp::Set { present: true }, &advertiser, version, &hashes, concurrency, batch_rows)
            .await
    })
    .await??;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "store_ceiling rows={rows} concurrency={concurrency} batch_rows={batch_rows} seconds={secs:.2} rows_per_s={:.0}",
        rows as f64 / secs
    );
    Ok(())
}
