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
//! - **Errors** are shared by the requests that waited on the failed read, then dropped from
//!   the cache: an unavailable store is a 503, never a cached "not a member".

use std::sync::Arc;
use std::time::{Duration, Instant};

use memberlake::ids::{EmailHash, ListVersion};
use memberlake::store::{MembershipStore, StoreError};
use moka::future::Cache;

/// The rows of one email hash's partition, as read at `read_at`.
#[derive(Debug)]
pub struct Partition {
    pub read_at: Instant,
    rows: Box<[(Box<str>, i64)]>,
}

impl Partition {
    pub fn contains(&self, advertiser: &str, version: ListVersion) -> bool {
        self.rows.iter().any(|(a, v)| &**a == advertiser && *v == version.0)
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

    /// `h`'s partition, read no earlier than `needed_since`.
    pub async fn partition(&self, h: EmailHash, needed_since: Instant) -> Result<Arc<Partition>, Arc<StoreError>> {
        if let Some(Ok(p)) = self.cache.get(&h).await {
            if p.read_at >= needed_since {
                metrics::counter!("memberlake_matcher_cache_hits_total").increment(1);
                return Ok(p);
            }
        }
        metrics::counter!("memberlake_matcher_cache_misses_total").increment(1);
        let store = self.store.clone();
        let load = async move {
            let started = Instant::now();
            metrics::counter!("memberlake_matcher_store_reads_total").increment(1);
            match store.read_partition(&h).await {
                Ok(rows) => Ok(Arc::new(Partition {
                    read_at: started,
                    rows: rows.into_iter().map(|r| (r.advertiser_id.into_boxed_str(), r.list_version.0)).collect(),
                })),
                Err(e) => {
                    metrics::counter!("memberlake_matcher_store_errors_total").increment(1);
                    Err(Arc::new(e))
                }
            }
        };
        let stale = |cached: &Cached| cached.as_ref().map_or(true, |p| p.read_at < needed_since);
        let value = self.cache.entry(h).or_insert_with_if(load, stale).await.into_value();
        if value.is_err() {
            self.cache.invalidate(&h).await;
        }
        value
    }
}
