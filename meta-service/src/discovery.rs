//! Lake discovery: poll the listing (ListObjectsV2 on S3), register every new
//! (bucket, key, etag) once. A new etag under a known key is a new file, hence a new list
//! version. Registration is idempotent in Postgres, so two meta-services may poll at once.
//!
//! The seen-set (as in Spark's file stream source) keeps a steady-state poll from touching
//! Postgres for objects it already registered; it is seeded from the catalog at start.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use memberlake::catalog::{Catalog, CatalogError};
use memberlake::lake::{Lake, LakeEntry, LakeError};
use memberlake::shutdown::Shutdown;
use tracing::{info, info_span, warn, Instrument};

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// What one poll saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PollStats {
    pub listed: usize,
    pub registered: usize,
    pub ignored: usize,
}

pub struct Discovery {
    lake: Lake,
    catalog: Catalog,
    seen: HashSet<(String, String)>,
    ignored: HashSet<String>,
}

impl Discovery {
    pub async fn new(lake: Lake, catalog: Catalog) -> Result<Self, DiscoveryError> {
        let seen = catalog.registered_objects(lake.bucket()).await?.into_iter().collect();
        Ok(Self { lake, catalog, seen, ignored: HashSet::new() })
    }

    /// Lists the lake once and registers what is new.
    pub async fn poll_once(&mut self) -> Result<PollStats, DiscoveryError> {
        let started = Instant::now();
        let mut stats = PollStats::default();
        let mut listing = self.lake.list();
        let mut ignored_now = HashSet::new();
        while let Some(entry) = listing.next().await {
            stats.listed += 1;
            match entry? {
                LakeEntry::Member(object) => {
                    let seen_key = (object.key.clone(), object.etag.clone());
                    if self.seen.contains(&seen_key) {
                        continue;
                    }
                    if let Some(file_id) = self.catalog.register_file(self.lake.bucket(), &object).await? {
                        info!(
                            file_id = file_id.0,
                            advertiser_id = %object.advertiser_id,
                            key = %object.key,
                            size = object.size,
                            compression = object.compression.as_str(),
                            "registered new list file"
                        );
                        metrics::counter!("memberlake_files_registered_total").increment(1);
                        stats.registered += 1;
                    }
                    self.seen.insert(seen_key);
                }
                LakeEntry::Ignored { key } => {
                    stats.ignored += 1;
                    if !self.ignored.contains(&key) {
                        // The key only: an object's name is not member data.
                        warn!(%key, "ignoring object outside advertisers/<advertiser_id>/");
                        metrics::counter!("memberlake_lake_objects_ignored_total").increment(1);
                    }
                    ignored_now.insert(key);
                }
            }
        }
        self.ignored = ignored_now;
        metrics::gauge!("memberlake_lake_objects_ignored").set(stats.ignored as f64);
        metrics::gauge!("memberlake_lake_objects_listed").set(stats.listed as f64);
        metrics::histogram!("memberlake_lake_poll_seconds").record(started.elapsed().as_secs_f64());
        Ok(stats)
    }

    /// Polls every `interval` until shutdown. Errors are logged and retried next poll.
    pub async fn run(mut self, interval: Duration, shutdown: Shutdown) {
        let mut poll = 0u64;
        loop {
            poll += 1;
            let span = info_span!("lake_poll", poll, lake = %self.lake.url());
            match self.poll_once().instrument(span).await {
                Ok(stats) if stats.registered > 0 => info!(?stats, "lake poll"),
                Ok(_) => {}
                Err(e) => {
                    metrics::counter!("memberlake_lake_poll_errors_total").increment(1);
                    warn!(error = %e, "lake poll failed; retrying next interval");
                }
            }
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}
