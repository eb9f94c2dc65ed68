//! The filter loader (issue 21): keeps the membership filters of the active versions in memory,
//! within a budget, so that most "not a member" answers need no store read.
//!
//! Each merge unit writes its bucket's filter beside its manifest bucket
//! (`memberlake::versions::merge_bucket`), so a version's filter is complete before the version
//! can activate. When [`ActiveVersions`] sees a new version, this task reads that version's
//! filter objects from the work location and attaches the filter to that version only
//! ([`ActiveVersions::attach_filter`]); until then, and whenever a filter cannot be had, the
//! store answers as it always did. A filter never gives a false "no": it is built from the
//! version's exact member set.
//!
//! **Budget.** `MEMBERLAKE_MATCHER_FILTER_MEMORY` bounds the filters' memory. When the active
//! versions' filters do not all fit, the smallest lists get theirs first (the most lists answered
//! from memory for the bytes); the rest — `memberlake_matcher_filter_versions{state="over_budget"}`
//! — are answered from the store, as they were before filters. A version whose filter objects do
//! not exist (merged with `MEMBERLAKE_FILTER_BITS=off`, or before filters existed) is not tried
//! again; one whose filter could not be read is, after [`RETRY_AFTER`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use memberlake::filter::VersionFilter;
use memberlake::ids::{AdvertiserId, ListVersion};
use memberlake::shutdown::Shutdown;
use memberlake::versions::{read_version_filter, VersionObjects};
use memberlake::work::WorkLocation;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::active::{ActiveVersion, ActiveVersions};

/// How long a version whose filter could not be loaded waits before the next try.
pub const RETRY_AFTER: Duration = Duration::from_secs(60);

/// Bytes per member a filter takes at most (16-bit fingerprints, ~1.13 per key, and small
/// buckets' overhead): what a version is assumed to need before any filter was read.
const MAX_BYTES_PER_MEMBER: f64 = 2.5;

/// Loads the filters of the active versions, within `budget` bytes.
pub struct FilterLoader {
    active: ActiveVersions,
    work: WorkLocation,
    budget: u64,
    /// Versions whose filter could not be loaded (or did not fit), and when that was last tried.
    failed: HashMap<(String, ListVersion), (Instant, Skipped)>,
    /// The most bytes per member of a filter loaded so far: the estimate of the next one's size.
    bytes_per_member: Option<f64>,
}

/// Why a version is served without its filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skipped {
    /// Its filter (this many bytes) did not fit: read again once it would.
    OverBudget(usize),
    /// It has no filter objects (merged without filters, or before they existed): for good.
    Missing,
    /// A read or a decode failed: tried again after [`RETRY_AFTER`].
    Unreadable,
}

/// Filters attached to their versions at once (each attach copies the map of versions).
const ATTACH_BATCH: usize = 32;

/// What one pass found, for the gauges and the tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FilterPass {
    pub loaded: usize,
    pub over_budget: usize,
    pub unavailable: usize,
    pub legacy: usize,
    pub bytes: usize,
}

impl FilterLoader {
    pub fn new(active: ActiveVersions, work: WorkLocation, budget: u64) -> Self {
        Self { active, work, budget, failed: HashMap::new(), bytes_per_member: None }
    }

    /// Loads on every version change and every [`RETRY_AFTER`], until shutdown.
    pub async fn run(mut self, shutdown: Shutdown) {
        loop {
            let pass = self.load_once().await;
            debug!(?pass, "filter pass");
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = self.active.changed() => {}
                _ = tokio::time::sleep(RETRY_AFTER) => {}
            }
        }
    }

    /// One pass: loads the filter of every active version that has none, smallest list first,
    /// while the budget lasts; attaches them in batches (each attach copies the version map).
    pub async fn load_once(&mut self) -> FilterPass {
        let Some(snapshot) = self.active.snapshot() else { return FilterPass::default() };
        let mut pass = FilterPass::default();
        let mut wanted: Vec<(&str, &ActiveVersion)> = Vec::new();
        for (advertiser, version) in snapshot.versions() {
            match (&version.filter, version.bucket_bits) {
                (Some(filter), _) => {
                    pass.loaded += 1;
                    pass.bytes += filter.memory_bytes();
                }
                (None, None) => pass.legacy += 1,
                // An expired list answers nobody: no filter needed.
                (None, Some(_)) if snapshot.get(advertiser).is_none() => {}
                (None, Some(_)) => wanted.push((advertiser, version)),
            }
        }
        wanted.sort_by_key(|(advertiser, version)| (version.members, *advertiser));
        let now = Instant::now();
        self.failed.retain(|(a, v), _| snapshot.get(a).is_some_and(|av| av.version == *v));
        let mut loaded: Vec<(String, ListVersion, Arc<VersionFilter>, Instant)> = Vec::new();
        for (advertiser, version) in wanted {
            let key = (advertiser.to_owned(), version.version);
            let estimate = match self.failed.get(&key) {
                // A version without filter objects never gets them.
                Some((_, Skipped::Missing)) => {
                    pass.unavailable += 1;
                    continue;
                }
                Some((at, Skipped::Unreadable)) if now.duration_since(*at) < RETRY_AFTER => {
                    pass.unavailable += 1;
                    continue;
                }
                // Its real size is known: it is read again only once it fits.
                Some((_, Skipped::OverBudget(bytes))) => *bytes as f64,
                _ => version.members as f64 * self.bytes_per_member.unwrap_or(MAX_BYTES_PER_MEMBER),
            };
            if pass.bytes as f64 + estimate > self.budget as f64 {
                pass.over_budget += 1;
                continue;
            }
            match self.load(advertiser, version).await {
                Ok(filter) if (pass.bytes + filter.memory_bytes()) as u64 > self.budget => {
                    metrics::counter!("memberlake_matcher_filter_loads_total", "result" => "over_budget").increment(1);
                    self.failed.insert(key, (Instant::now(), Skipped::OverBudget(filter.memory_bytes())));
                    pass.over_budget += 1;
                }
                Ok(filter) => {
                    let bytes = filter.memory_bytes();
                    // Learn bytes per member from fuse filters only: an exact one (a small
                    // list's) costs 8 bytes a member and would make every large list look 7x
                    // its size.
                    if version.members > 0 && filter.is_approximate() {
                        let ratio = bytes as f64 / version.members as f64;
                        self.bytes_per_member = Some(self.bytes_per_member.map_or(ratio, |r| r.max(ratio)));
                    }
                    pass.bytes += bytes;
                    loaded.push((key.0, key.1, filter, version.observed_at));
                    if loaded.len() >= ATTACH_BATCH {
                        pass.loaded += self.attach(std::mem::take(&mut loaded));
                    }
                }
                Err(missing) => {
                    let why = if missing { Skipped::Missing } else { Skipped::Unreadable };
                    self.failed.insert(key, (Instant::now(), why));
                    pass.unavailable += 1;
                    if missing {
                        debug!(%advertiser, version = version.version.0, "no filter for this version: the store answers");
                    }
                }
            }
        }
        pass.loaded += self.attach(loaded);
        metrics::gauge!("memberlake_matcher_filter_bytes").set(pass.bytes as f64);
        for (state, n) in [
            ("loaded", pass.loaded),
            ("over_budget", pass.over_budget),
            ("unavailable", pass.unavailable),
            ("legacy", pass.legacy),
        ] {
            metrics::gauge!("memberlake_matcher_filter_versions", "state" => state).set(n as f64);
        }
        pass
    }

    /// Attaches loaded filters to their versions (those still active); returns how many.
    fn attach(&self, loaded: Vec<(String, ListVersion, Arc<VersionFilter>, Instant)>) -> usize {
        if loaded.is_empty() {
            return 0;
        }
        let lags: Vec<_> = loaded.iter().map(|(a, v, f, seen)| (a.clone(), *v, f.memory_bytes(), *seen)).collect();
        let attached = self.active.attach_filters(loaded.into_iter().map(|(a, v, f, _)| (a, v, f)).collect());
        for (advertiser, version, bytes, seen) in lags {
            if attached.contains(&(advertiser.clone(), version)) {
                metrics::histogram!("memberlake_matcher_filter_activation_lag_seconds").record(seen.elapsed());
                info!(%advertiser, version = version.0, bytes, "serving a version with its filter");
            }
        }
        attached.len()
    }

    /// Reads one version's filter. `Err(true)`: it has none; `Err(false)`: the read failed.
    async fn load(&self, advertiser: &str, version: &ActiveVersion) -> Result<Arc<VersionFilter>, bool> {
        let started = Instant::now();
        let objects = AdvertiserId::parse(advertiser)
            .ok()
            .and_then(|a| VersionObjects::new(&a, version.version, version.bucket_bits?).ok())
            .ok_or(false)?;
        let span = info_span!("load_filter", %advertiser, version = version.version.0);
        match read_version_filter(&self.work, &objects).instrument(span).await {
            Ok(filter) => {
                metrics::counter!("memberlake_matcher_filter_loads_total", "result" => "ok").increment(1);
                metrics::histogram!("memberlake_matcher_filter_load_seconds").record(started.elapsed());
                Ok(Arc::new(filter))
            }
            Err(e) if e.is_not_found() => {
                metrics::counter!("memberlake_matcher_filter_loads_total", "result" => "missing").increment(1);
                Err(true)
            }
            Err(e) => {
                metrics::counter!("memberlake_matcher_filter_loads_total", "result" => "error").increment(1);
                warn!(%advertiser, version = version.version.0, error = %e, "loading a filter failed; the store answers");
                Err(false)
            }
        }
    }
}
