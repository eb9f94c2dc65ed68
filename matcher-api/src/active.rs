//! `ActiveVersions`: every advertiser's active list version, held in memory and refreshed on
//! each activation (Postgres LISTEN/NOTIFY) with polling as the safety net.
//!
//! Each entry remembers *when this process first saw it*. Rows of a version are all written
//! before the version is activated, so a partition read that started after that instant is
//! guaranteed to contain them; the cache uses this to decide whether an entry is fresh enough.
//!
//! A version past its advertiser's list lifespan (issue 20) is not served: [`Snapshot::get`]
//! checks the expiry at each lookup against the wall clock, so a list stops matching on time
//! even while the catalog cannot be reached.
//!
//! Erased hashes (issue 20) are part of the snapshot: [`Snapshot::list`] finds no list for
//! one, so it is "not a member" of every advertiser without a store read, from the refresh
//! that first sees the erasure (its notification, else the next poll) — before the leader has
//! deleted its rows, whatever the cache holds. The set is loaded whole at start and then by
//! sequence number (`catalog.erasures_since`); each hash costs ~50 bytes of memory.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use memberlake::catalog::{list_expired, Catalog};
use memberlake::ids::{EmailHash, ListVersion};
use memberlake::shutdown::Shutdown;
use tracing::{debug, info, warn};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveVersion {
    pub version: ListVersion,
    /// A version ingested before change-proportional versions: its rows are in `memberships`.
    pub legacy: bool,
    /// When this process first saw this version active.
    pub observed_at: Instant,
    /// When it stops matching (its upload plus the advertiser's lifespan); `None`: never.
    pub expires_at: Option<DateTime<Utc>>,
}

/// One active version as the catalog lists it: (advertiser, version, legacy, expires at).
pub type ActiveRow = (String, ListVersion, bool, Option<DateTime<Utc>>);

/// An immutable snapshot: one request reads one snapshot, so its answer reflects one
/// consistent version per advertiser.
#[derive(Clone, Default)]
pub struct Snapshot {
    versions: Arc<HashMap<String, ActiveVersion>>,
    erased: Arc<HashSet<EmailHash>>,
}

impl Snapshot {
    /// The active list of `advertiser` that may hold `hash`: none if the advertiser has no
    /// list, its list expired, or the hash is erased. Every answer of the API goes through here.
    pub fn list(&self, advertiser: &str, hash: &EmailHash) -> Option<&ActiveVersion> {
        // No hashing at all while nothing is erased (the common case).
        if !self.erased.is_empty() && self.erased.contains(hash) {
            return None;
        }
        self.get(advertiser)
    }

    /// `advertiser`'s active version, unless it has none or it has expired (then nobody is a
    /// member).
    pub fn get(&self, advertiser: &str) -> Option<&ActiveVersion> {
        self.get_at(advertiser, Utc::now())
    }

    fn get_at(&self, advertiser: &str, now: DateTime<Utc>) -> Option<&ActiveVersion> {
        self.versions.get(advertiser).filter(|av| !list_expired(av.expires_at, now))
    }
}

#[derive(Clone, Default)]
pub struct ActiveVersions {
    inner: Arc<RwLock<Option<Snapshot>>>,
    /// The erased hashes known so far and the last sequence number read (the refresher's).
    erased: Arc<Mutex<(i64, Arc<HashSet<EmailHash>>)>>,
}

impl ActiveVersions {
    /// The current snapshot, or `None` before the first successful load.
    pub fn snapshot(&self) -> Option<Snapshot> {
        self.inner.read().expect("poisoned").clone()
    }

    /// Replaces the snapshot with `rows`, keeping `observed_at` of unchanged versions (a
    /// changed lifespan is taken as is).
    pub fn apply(&self, rows: Vec<ActiveRow>) -> usize {
        let now = Instant::now();
        let mut guard = self.inner.write().expect("poisoned");
        let previous = guard.clone().unwrap_or_default();
        let erased = self.erased.lock().expect("poisoned").1.clone();
        let mut changed = 0;
        let next: HashMap<String, ActiveVersion> = rows
            .into_iter()
            .map(|(adv, version, legacy, expires_at)| {
                let entry = match previous.versions.get(&adv) {
                    Some(prev) if prev.version == version => ActiveVersion { expires_at, ..*prev },
                    _ => {
                        changed += 1;
                        ActiveVersion { version, legacy, observed_at: now, expires_at }
                    }
                };
                (adv, entry)
            })
            .collect();
        metrics::gauge!("memberlake_matcher_active_advertisers").set(next.len() as f64);
        *guard = Some(Snapshot { versions: Arc::new(next), erased });
        changed
    }

    /// Adds erasures `(seq, hash)` (some may be known already: the catalog re-sends recent
    /// ones); the next [`apply`](Self::apply) serves them. Returns how many were new.
    pub fn apply_erasures(&self, rows: Vec<(i64, EmailHash)>) -> usize {
        let mut erased = self.erased.lock().expect("poisoned");
        let fresh: Vec<_> = rows.into_iter().filter(|(_, h)| !erased.1.contains(h)).collect();
        let Some(last) = fresh.iter().map(|(seq, _)| *seq).max() else { return 0 };
        let mut set = HashSet::clone(&erased.1);
        set.extend(fresh.iter().map(|(_, h)| *h));
        metrics::gauge!("memberlake_matcher_erased_hashes").set(set.len() as f64);
        *erased = (last.max(erased.0), Arc::new(set));
        fresh.len()
    }

    /// Loads from the catalog once.
    pub async fn refresh(&self, catalog: &Catalog) -> Result<usize, memberlake::catalog::CatalogError> {
        // Erasures first: a snapshot is never served without the erasures recorded before it.
        let since = self.erased.lock().expect("poisoned").0;
        let erased = self.apply_erasures(catalog.erasures_since(since).await?);
        if erased > 0 {
            info!(erased, "erasures received");
        }
        let rows = catalog.active_versions().await?;
        let rows = rows
            .into_iter()
            .map(|r| (r.advertiser_id.as_str().to_owned(), r.version, r.legacy, r.expires_at))
            .collect();
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

    fn row(adv: &str, version: i64, legacy: bool) -> ActiveRow {
        (adv.into(), ListVersion(version), legacy, None)
    }

    #[test]
    fn unchanged_versions_keep_their_observation_time() {
        let av = ActiveVersions::default();
        assert!(av.snapshot().is_none());
        assert_eq!(av.apply(vec![row("a", 1, false), row("b", 2, true)]), 2);
        let first = av.snapshot().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(av.apply(vec![row("a", 1, false), row("b", 3, false)]), 1);
        let second = av.snapshot().unwrap();
        assert_eq!(first.get("a"), second.get("a"));
        assert!(second.get("b").unwrap().observed_at > first.get("b").unwrap().observed_at);
        assert_eq!(second.get("b").unwrap().version, ListVersion(3));
    }

    #[test]
    fn an_expired_version_is_not_served() {
        let av = ActiveVersions::default();
        let expires = Utc::now() + chrono::Duration::hours(1);
        av.apply(vec![("a".into(), ListVersion(1), false, Some(expires)), row("b", 2, false)]);
        let snapshot = av.snapshot().unwrap();
        let before = expires - chrono::Duration::seconds(1);
        assert_eq!(snapshot.get_at("a", before).map(|v| v.version), Some(ListVersion(1)));
        assert_eq!(snapshot.get_at("a", expires), None, "expired at its expiry instant");
        assert_eq!(
            snapshot.get_at("b", expires + chrono::Duration::days(10_000)).map(|v| v.version),
            Some(ListVersion(2))
        );
        // A lifespan set later applies to the version already held, keeping its observation.
        let observed = snapshot.get("a").unwrap().observed_at;
        av.apply(vec![("a".into(), ListVersion(1), false, Some(before)), row("b", 2, false)]);
        let snapshot = av.snapshot().unwrap();
        assert_eq!(snapshot.get_at("a", before), None);
        assert_eq!(snapshot.versions["a"].observed_at, observed);
    }

    #[test]
    fn an_erased_hash_has_no_list_anywhere() {
        let av = ActiveVersions::default();
        let (gone, kept) = (EmailHash::md5([7; 16]), EmailHash::md5([8; 16]));
        av.apply(vec![row("a", 1, false), row("b", 2, false)]);
        assert!(av.snapshot().unwrap().list("a", &gone).is_some());
        assert_eq!(av.apply_erasures(vec![(3, gone)]), 1);
        assert!(av.snapshot().unwrap().list("a", &gone).is_some(), "served from the next snapshot");
        av.apply(vec![row("a", 1, false), row("b", 2, false)]);
        let snapshot = av.snapshot().unwrap();
        for adv in ["a", "b"] {
            assert!(snapshot.list(adv, &gone).is_none());
            assert!(snapshot.list(adv, &kept).is_some());
        }
        assert_eq!(av.erased.lock().unwrap().0, 3, "the next poll reads after seq 3");
        assert_eq!(av.apply_erasures(vec![]), 0);
        assert_eq!(av.apply_erasures(vec![(3, gone)]), 0, "a re-sent erasure is not new");
    }
}
