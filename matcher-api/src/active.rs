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
//!
//! A version's membership filter (issue 21), once [`crate::filters`] has loaded the filter of
//! *that* version, is part of its entry: [`Snapshot::list`] finds no list for a hash the filter
//! rules out, so the API answers "not a member" without a store read. A new version starts
//! without one (the store answers) until its own filter is attached.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use memberlake::catalog::{list_expired, Catalog};
use memberlake::filter::VersionFilter;
use memberlake::ids::{EmailHash, ListVersion};
use memberlake::shutdown::Shutdown;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

#[derive(Debug, Clone)]
pub struct ActiveVersion {
    pub version: ListVersion,
    /// A version ingested before change-proportional versions: its rows are in `memberships`.
    pub legacy: bool,
    /// When this process first saw this version active.
    pub observed_at: Instant,
    /// When it stops matching (its upload plus the advertiser's lifespan); `None`: never.
    pub expires_at: Option<DateTime<Utc>>,
    /// Its manifest's buckets are `1 << bucket_bits` (`None`: a legacy version, no manifest).
    pub bucket_bits: Option<u8>,
    /// Its members, as its merge counted them.
    pub members: u64,
    /// This version's membership filter, once loaded: a hash it rules out is not a member.
    pub filter: Option<Arc<VersionFilter>>,
}

/// One active version as the catalog lists it.
#[derive(Debug, Clone)]
pub struct ActiveRow {
    pub advertiser: String,
    pub version: ListVersion,
    pub legacy: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub bucket_bits: Option<u8>,
    pub members: u64,
}

/// What the membership filters did for one request: recorded once per request, so a
/// `/v1/suppress` over many advertisers costs one metrics update, not one per advertiser.
#[derive(Debug, Default)]
pub struct FilterTally {
    /// Lists whose filter ruled the hash out (no store read for them).
    pub absent: u64,
    /// Lists whose filter let the hash through (the store answers).
    pub maybe: u64,
    /// Of those, lists the store then said the hash is not a member of.
    pub false_positives: u64,
}

impl FilterTally {
    pub fn record(&self) {
        if self.absent > 0 {
            metrics::counter!("memberlake_matcher_filter_probes_total", "result" => "absent").increment(self.absent);
        }
        if self.maybe > 0 {
            metrics::counter!("memberlake_matcher_filter_probes_total", "result" => "maybe").increment(self.maybe);
        }
        if self.false_positives > 0 {
            metrics::counter!("memberlake_matcher_filter_false_positives_total").increment(self.false_positives);
        }
    }
}

/// An immutable snapshot: one request reads one snapshot, so its answer reflects one
/// consistent version per advertiser.
#[derive(Clone, Default)]
pub struct Snapshot {
    versions: Arc<HashMap<String, ActiveVersion>>,
    erased: Arc<HashSet<EmailHash>>,
}

impl Snapshot {
    /// The active list of `advertiser` that may hold `hash`: none if the advertiser has no
    /// list, its list expired, the hash is erased, or the version's filter rules it out
    /// (counted in `tally`). Every answer of the API goes through here.
    pub fn list(&self, advertiser: &str, hash: &EmailHash, tally: &mut FilterTally) -> Option<&ActiveVersion> {
        // No hashing at all while nothing is erased (the common case).
        if !self.erased.is_empty() && self.erased.contains(hash) {
            return None;
        }
        let active = self.get(advertiser)?;
        match &active.filter {
            Some(filter) if !filter.contains(hash) => {
                tally.absent += 1;
                None
            }
            Some(_) => {
                tally.maybe += 1;
                Some(active)
            }
            None => Some(active),
        }
    }

    /// Every advertiser's active version (expired ones included).
    pub fn versions(&self) -> impl Iterator<Item = (&str, &ActiveVersion)> {
        self.versions.iter().map(|(a, v)| (a.as_str(), v))
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
    /// Woken when a version changes (the filter loader waits on it).
    changed: Arc<Notify>,
}

impl ActiveVersions {
    /// The current snapshot, or `None` before the first successful load.
    pub fn snapshot(&self) -> Option<Snapshot> {
        self.inner.read().expect("poisoned").clone()
    }

    /// Replaces the snapshot with `rows`, keeping `observed_at` and the filter of unchanged
    /// versions (a changed lifespan is taken as is).
    pub fn apply(&self, rows: Vec<ActiveRow>) -> usize {
        let now = Instant::now();
        let mut guard = self.inner.write().expect("poisoned");
        let previous = guard.clone().unwrap_or_default();
        let erased = self.erased.lock().expect("poisoned").1.clone();
        let mut changed = 0;
        let next: HashMap<String, ActiveVersion> = rows
            .into_iter()
            .map(|row| {
                let entry = match previous.versions.get(&row.advertiser) {
                    Some(prev) if prev.version == row.version => {
                        ActiveVersion { expires_at: row.expires_at, ..prev.clone() }
                    }
                    _ => {
                        changed += 1;
                        ActiveVersion {
                            version: row.version,
                            legacy: row.legacy,
                            observed_at: now,
                            expires_at: row.expires_at,
                            bucket_bits: row.bucket_bits,
                            members: row.members,
                            filter: None,
                        }
                    }
                };
                (row.advertiser, entry)
            })
            .collect();
        metrics::gauge!("memberlake_matcher_active_advertisers").set(next.len() as f64);
        let removed = previous.versions.keys().any(|a| !next.contains_key(a));
        *guard = Some(Snapshot { versions: Arc::new(next), erased });
        if changed > 0 || removed {
            self.changed.notify_one();
        }
        changed
    }

    /// Serves `filter` as the filter of `advertiser`'s version `version`, if that is still its
    /// active version (else the filter is dropped: it belongs to no served version). Returns
    /// whether it was attached.
    pub fn attach_filter(&self, advertiser: &str, version: ListVersion, filter: Arc<VersionFilter>) -> bool {
        !self.attach_filters(vec![(advertiser.to_owned(), version, filter)]).is_empty()
    }

    /// [`attach_filter`](Self::attach_filter) for several, in one copy of the version map;
    /// returns those attached.
    pub fn attach_filters(
        &self,
        filters: Vec<(String, ListVersion, Arc<VersionFilter>)>,
    ) -> Vec<(String, ListVersion)> {
        let mut guard = self.inner.write().expect("poisoned");
        let Some(snapshot) = guard.as_ref() else { return Vec::new() };
        let mut versions = HashMap::clone(&snapshot.versions);
        let mut attached = Vec::new();
        for (advertiser, version, filter) in filters {
            // Only to the version it was built for, and only while that one is active.
            if let Some(active) = versions.get_mut(&advertiser).filter(|av| av.version == version) {
                active.filter = Some(filter);
                attached.push((advertiser, version));
            }
        }
        if !attached.is_empty() {
            *guard = Some(Snapshot { versions: Arc::new(versions), erased: snapshot.erased.clone() });
        }
        attached
    }

    /// Waits until a version changes (after [`apply`](Self::apply) saw one).
    pub async fn changed(&self) {
        self.changed.notified().await
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
            .map(|r| ActiveRow {
                advertiser: r.advertiser_id.as_str().to_owned(),
                version: r.version,
                legacy: r.legacy,
                expires_at: r.expires_at,
                bucket_bits: r.bucket_bits.and_then(|b| u8::try_from(b).ok()),
                members: r.members.and_then(|m| u64::try_from(m).ok()).unwrap_or(0),
            })
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
        let r = expiring(adv, version, None);
        ActiveRow { legacy, bucket_bits: if legacy { None } else { r.bucket_bits }, ..r }
    }

    fn expiring(adv: &str, version: i64, expires_at: Option<DateTime<Utc>>) -> ActiveRow {
        ActiveRow {
            advertiser: adv.into(),
            version: ListVersion(version),
            legacy: false,
            expires_at,
            bucket_bits: Some(1),
            members: 100,
        }
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
        let seen = |s: &Snapshot, a: &str| s.get(a).map(|v| (v.version, v.observed_at));
        assert_eq!(seen(&first, "a"), seen(&second, "a"));
        assert!(second.get("b").unwrap().observed_at > first.get("b").unwrap().observed_at);
        assert_eq!(second.get("b").unwrap().version, ListVersion(3));
    }

    #[test]
    fn an_expired_version_is_not_served() {
        let av = ActiveVersions::default();
        let expires = Utc::now() + chrono::Duration::hours(1);
        av.apply(vec![expiring("a", 1, Some(expires)), row("b", 2, false)]);
        let snapshot = av.snapshot().unwrap();
        let before = expires - chrono::Duration::seconds(1);
        assert_eq!(snapshot.get_at("a", before).map(|v| v.version), Some(ListVersion(1)));
        assert!(snapshot.get_at("a", expires).is_none(), "expired at its expiry instant");
        assert_eq!(
            snapshot.get_at("b", expires + chrono::Duration::days(10_000)).map(|v| v.version),
            Some(ListVersion(2))
        );
        // A lifespan set later applies to the version already held, keeping its observation.
        let observed = snapshot.get("a").unwrap().observed_at;
        av.apply(vec![expiring("a", 1, Some(before)), row("b", 2, false)]);
        let snapshot = av.snapshot().unwrap();
        assert!(snapshot.get_at("a", before).is_none());
        assert_eq!(snapshot.versions["a"].observed_at, observed);
    }

    #[test]
    fn an_erased_hash_has_no_list_anywhere() {
        let av = ActiveVersions::default();
        let mut tally = FilterTally::default();
        let (gone, kept) = (EmailHash::md5([7; 16]), EmailHash::md5([8; 16]));
        av.apply(vec![row("a", 1, false), row("b", 2, false)]);
        assert!(av.snapshot().unwrap().list("a", &gone, &mut tally).is_some());
        assert_eq!(av.apply_erasures(vec![(3, gone)]), 1);
        assert!(av.snapshot().unwrap().list("a", &gone, &mut tally).is_some(), "served from the next snapshot");
        av.apply(vec![row("a", 1, false), row("b", 2, false)]);
        let snapshot = av.snapshot().unwrap();
        for adv in ["a", "b"] {
            assert!(snapshot.list(adv, &gone, &mut tally).is_none());
            assert!(snapshot.list(adv, &kept, &mut tally).is_some());
        }
        assert_eq!(av.erased.lock().unwrap().0, 3, "the next poll reads after seq 3");
        assert_eq!(av.apply_erasures(vec![]), 0);
        assert_eq!(av.apply_erasures(vec![(3, gone)]), 0, "a re-sent erasure is not new");
    }

    /// The filter of hashes `0..n` (as [`hash`]), in two buckets.
    fn filter_of(members: std::ops::Range<u64>) -> Arc<VersionFilter> {
        use memberlake::filter::{FingerprintBits, MemberFilter};
        use memberlake::manifest::Buckets;
        let buckets = Buckets::new(1).unwrap();
        let mut all: Vec<EmailHash> = members.map(hash).collect();
        all.sort_unstable();
        let filters = (0..2)
            .map(|b| {
                let bucket: Vec<_> = all.iter().copied().filter(|h| buckets.bucket_of(h.as_bytes()) == b).collect();
                MemberFilter::build(FingerprintBits::Sixteen, &bucket).unwrap()
            })
            .collect();
        Arc::new(VersionFilter::new(buckets, filters).unwrap())
    }

    fn hash(i: u64) -> EmailHash {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
        b[8..].copy_from_slice(&i.to_be_bytes());
        EmailHash::md5(b)
    }

    #[test]
    fn a_filter_answers_only_for_its_own_version() {
        let av = ActiveVersions::default();
        av.apply(vec![row("a", 1, false), row("b", 2, false)]);
        let (member, stranger) = (hash(5), hash(1_000_000));
        let mut tally = FilterTally::default();
        // No filter yet: every hash goes to the store.
        assert!(av.snapshot().unwrap().list("a", &stranger, &mut tally).is_some());
        assert!(!av.attach_filter("a", ListVersion(7), filter_of(0..1000)), "not a's active version");
        assert!(!av.attach_filter("zz", ListVersion(1), filter_of(0..1000)), "no such advertiser");
        assert!(av.attach_filter("a", ListVersion(1), filter_of(0..1000)));
        let snapshot = av.snapshot().unwrap();
        assert!(snapshot.list("a", &member, &mut tally).is_some(), "a member passes");
        assert!(snapshot.list("a", &stranger, &mut tally).is_none(), "ruled out by a's filter");
        assert!(snapshot.list("b", &stranger, &mut tally).is_some(), "b has no filter");
        assert_eq!((tally.absent, tally.maybe), (1, 1));
        // The same version again keeps its filter; a new version starts without one.
        av.apply(vec![row("a", 1, false), row("b", 2, false)]);
        assert!(av.snapshot().unwrap().list("a", &stranger, &mut tally).is_none());
        av.apply(vec![row("a", 3, false), row("b", 2, false)]);
        assert!(av.snapshot().unwrap().get("a").unwrap().filter.is_none());
        assert!(av.snapshot().unwrap().list("a", &stranger, &mut tally).is_some(), "v3: the store answers");
        assert!(!av.attach_filter("a", ListVersion(1), filter_of(0..1000)), "v1's filter came too late");
        // An erased member is nobody's, whatever the filter says.
        assert!(av.attach_filter("a", ListVersion(3), filter_of(0..1000)));
        av.apply_erasures(vec![(1, member)]);
        av.apply(vec![row("a", 3, false), row("b", 2, false)]);
        assert!(av.snapshot().unwrap().list("a", &member, &mut tally).is_none());
    }
}
