//! Membership lookups: a moka cache of whole partitions (one per email hash) in front of the
//! store.
//!
//! - **Coalescing**: concurrent misses for one hash share one store read
//!   (`or_insert_with_if` runs the loader once per key).
//! - **Negative entries**: an empty partition is cached like any other.
//! - **Freshness**: an entry records when its read *started*; it may answer for advertiser `a`
//!   only if it started after this process saw `a`'s active version (see
//!   [`crate::active`]). After an activation the first lookup re-reads; no answer is stale
//!   beyond the version refresh delay.
//! - **Two tables**: an advertiser's active version answers from `membership_changes` (the newest
//!   row at or below it), or — a version ingested before change-proportional versions — from
//!   its exact rows in `memberships`. The legacy partition is read only while some advertiser
//!   asked about has a legacy active version, so after an upgrade has run its course a lookup
//!   is one read again.
//! - **Errors** are shared by the requests that waited on the failed read, then dropped from
//!   the cache: an unavailable store is a 503, never a cached "not a member".

use std::sync::Arc;
use std::time::{Duration, Instant};

use memberlake::ids::EmailHash;
use memberlake::store::{member_at, MembershipStore, StoreError};
use moka::future::Cache;
use tracing::Instrument;

use crate::active::ActiveVersion;

/// The rows of one email hash's partitions, as read at `read_at`.
#[derive(Debug)]
pub struct Partition {
    pub read_at: Instant,
    /// `membership_changes`: (advertiser, since version, present).
    changes: Box<[(Box<str>, i64, bool)]>,
    /// `memberships` (legacy versions), when it was read: (advertiser, version).
    legacy: Option<LegacyRows>,
}

/// A partition's rows in `memberships`: (advertiser, version).
type LegacyRows = Box<[(Box<str>, i64)]>;

impl Partition {
    /// Whether the hash is a member of `advertiser`'s list at its active version `active`.
    /// `None`: the partition was read without the legacy rows this version needs.
    pub fn contains(&self, advertiser: &str, active: &ActiveVersion) -> Option<bool> {
        if active.legacy {
            let legacy = self.legacy.as_ref()?;
            return Some(legacy.iter().any(|(a, v)| &**a == advertiser && *v == active.version.0));
        }
        Some(member_at(self.changes.iter().map(|(a, v, p)| (&**a, *v, *p)), advertiser, active.version.0))
    }
}

type Cached = Result<Arc<Partition>, Arc<StoreError>>;

#[derive(Clone)]
pub struct Memberships {
    cache: Cache<EmailHash, Cached>,
    store: Arc<MembershipStore>,
}

impl Memberships {
    /// `capacity`: partitions kept (each a few dozen bytes plus its rows); `ttl`: upper bound
    /// on an entry's age.
    pub fn new(store: Arc<MembershipStore>, capacity: u64, ttl: Duration) -> Self {
        let cache = Cache::builder().max_capacity(capacity).time_to_live(ttl).build();
        Self { cache, store }
    }

    /// `h`'s partition, read no earlier than `needed_since`, with its legacy rows if
    /// `with_legacy`.
    pub async fn partition(
        &self,
        h: EmailHash,
        needed_since: Instant,
        with_legacy: bool,
    ) -> Result<Arc<Partition>, Arc<StoreError>> {
        let fresh = |p: &Partition| p.read_at >= needed_since && (!with_legacy || p.legacy.is_some());
        if let Some(Ok(p)) = self.cache.get(&h).await {
            if fresh(&p) {
                metrics::counter!("memberlake_matcher_cache_hits_total").increment(1);
                return Ok(p);
            }
        }
        metrics::counter!("memberlake_matcher_cache_misses_total").increment(1);
        let store = self.store.clone();
        let load = async move {
            let started = Instant::now();
            metrics::counter!("memberlake_matcher_store_reads_total").increment(1);
            let legacy = async {
                match with_legacy {
                    true => store.read_legacy_partition(&h).await.map(Some),
                    false => Ok(None),
                }
            };
            match tokio::try_join!(store.read_changes(&h), legacy) {
                Ok((changes, legacy)) => Ok(Arc::new(Partition {
                    read_at: started,
                    changes: changes
                        .into_iter()
                        .map(|r| (r.advertiser_id.into_boxed_str(), r.since.0, r.present))
                        .collect(),
                    legacy: legacy.map(|rows| {
                        rows.into_iter().map(|r| (r.advertiser_id.into_boxed_str(), r.list_version.0)).collect()
                    }),
                })),
                Err(e) => {
                    metrics::counter!("memberlake_matcher_store_errors_total").increment(1);
                    Err(Arc::new(e))
                }
            }
        };
        // Under the span of the request that reads; requests coalesced onto it wait in theirs.
        let load = load.instrument(tracing::info_span!("store_read", legacy = with_legacy));
        let stale = |cached: &Cached| cached.as_ref().map_or(true, |p| !fresh(p));
        let value = self.cache.entry(h).or_insert_with_if(load, stale).await.into_value();
        if value.is_err() {
            self.cache.invalidate(&h).await;
        }
        value
    }
}
