//! `ActiveVersions`: every advertiser's active list version, held in memory and refreshed on
//! each activation (Postgres LISTEN/NOTIFY) with polling as the safety net.
//!
//! Each entry remembers *when this process first saw it*. Rows of a version are all written
//! before the version is activated, so a partition read that started after that instant is
//! guaranteed to contain them; the cache uses this to decide whether an entry is fresh enough.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use memberlake::catalog::Catalog;
use memberlake::ids::ListVersion;
use memberlake::shutdown::Shutdown;
use tracing::{debug, info, warn};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveVersion {
    pub version: ListVersion,
    /// A version ingested before change-proportional versions: its rows are in `memberships`.
    pub legacy: bool,
    /// When this process first saw this version active.
    pub observed_at: Instant,
}

/// An immutable snapshot: one request reads one snapshot, so its answer reflects one
/// consistent version per advertiser.
pub type Snapshot = Arc<HashMap<String, ActiveVersion>>;

#[derive(Clone, Default)]
pub struct ActiveVersions {
    inner: Arc<RwLock<Option<Snapshot>>>,
}

impl ActiveVersions {
    /// The current snapshot, or `None` before the first successful load.
    pub fn snapshot(&self) -> Option<Snapshot> {
        self.inner.read().expect("poisoned").clone()
    }

    /// Replaces the snapshot with `rows`, keeping `observed_at` of unchanged versions.
    pub fn apply(&self, rows: Vec<(String, ListVersion, bool)>) -> usize {
        let now = Instant::now();
        let mut guard = self.inner.write().expect("poisoned");
        let previous = guard.clone().unwrap_or_default();
        let mut changed = 0;
        let next: HashMap<String, ActiveVersion> = rows
            .into_iter()
            .map(|(adv, version, legacy)| {
                let entry = match previous.get(&adv) {
                    Some(prev) if prev.version == version => *prev,
                    _ => {
                        changed += 1;
                        ActiveVersion { version, legacy, observed_at: now }
                    }
                };
                (adv, entry)
            })
            .collect();
        metrics::gauge!("memberlake_matcher_active_advertisers").set(next.len() as f64);
        *guard = Some(Arc::new(next));
        changed
    }

    /// Loads from the catalog once.
    pub async fn refresh(&self, catalog: &Catalog) -> Result<usize, memberlake::catalog::CatalogError> {
        let rows = catalog.active_versions().await?;
        let rows = rows.into_iter().map(|r| (r.advertiser_id.as_str().to_owned(), r.version, r.legacy)).collect();
        Ok(self.apply(rows))
    }

    /// Refreshes on every activation notice and at least every `poll`.
    pub async fn run(self, catalog: Catalog, poll: Duration, shutdown: Shutdown) {
        let mut listener = None;
        loop {
            if listener.is_none() {
                match catalog.listen_activations().await {
                    Ok(l) => listener = Some(l),
                    Err(e) => debug!(error = %e, "LISTEN unavailable; polling only"),
                }
            }
            match self.refresh(&catalog).await {
                Ok(changed) if changed > 0 => info!(changed, "active list versions updated"),
                Ok(_) => {}
                Err(e) => {
                    metrics::counter!("memberlake_matcher_version_refresh_errors_total").increment(1);
                    warn!(error = %e, "refreshing active versions failed; serving the last known versions");
                }
            }
            let notified = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.map(|_| ()),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(poll) => {}
                r = notified => {
                    if r.is_err() {
                        listener = None;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_versions_keep_their_observation_time() {
        let av = ActiveVersions::default();
        assert!(av.snapshot().is_none());
        assert_eq!(av.apply(vec![("a".into(), ListVersion(1), false), ("b".into(), ListVersion(2), true)]), 2);
        let first = av.snapshot().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(av.apply(vec![("a".into(), ListVersion(1), false), ("b".into(), ListVersion(3), false)]), 1);
        let second = av.snapshot().unwrap();
        assert_eq!(first["a"], second["a"]);
        assert!(second["b"].observed_at > first["b"].observed_at);
        assert_eq!(second["b"].version, ListVersion(3));
    }
}
