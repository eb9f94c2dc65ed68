//! The CQL data plane (ScyllaDB, or Cassandra for local work: same protocol).
//!
//! One partition per email hash (`memberships`, see `migrations/cql/`), so that "which of these
//! advertisers have this person?" is a single partition read. A row `(h, a, v)` says: version `v`
//! of advertiser `a`'s list contains `h`. A lookup is a member iff the advertiser's *active*
//! version is among the partition's rows; rows of other versions are ignored, which is what makes
//! a list replacement atomic (the version flips in Postgres) and ingestion retries idempotent.
//!
//! Writes are single-row prepared inserts sent concurrently: prepared statements are routed by
//! token to a replica (shard-aware on ScyllaDB), whereas a batch spanning partitions is routed by
//! its first statement only and fans out on the coordinator.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;

use crate::ids::{AdvertiserId, EmailHash, ListVersion};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot connect to the CQL store at {nodes}: {message}")]
    Connect { nodes: String, message: String },
    #[error("CQL {operation} failed: {message}")]
    Request { operation: &'static str, message: String },
    #[error("CQL {operation} timed out after {timeout:?}")]
    Timeout { operation: &'static str, timeout: Duration },
    #[error("unexpected CQL result for {operation}: {message}")]
    Decode { operation: &'static str, message: String },
}

impl StoreError {
    fn request(operation: &'static str, e: impl std::fmt::Display) -> Self {
        StoreError::Request { operation, message: e.to_string() }
    }
}

/// The store writes one process may have in flight, shared by everything it writes (every lane
/// of a worker), so that the load a worker puts on the store is one number sized for the store,
/// not a per-range figure that doubles when a second range starts. Rows wait for a permit in
/// FIFO order.
#[derive(Debug, Clone)]
pub struct WriteWindow {
    permits: Arc<tokio::sync::Semaphore>,
    capacity: usize,
}

impl WriteWindow {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self { permits: Arc::new(tokio::sync::Semaphore::new(capacity)), capacity }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Writes currently in flight through this window.
    pub fn in_use(&self) -> usize {
        self.capacity - self.permits.available_permits()
    }

    /// Waits for a slot; the write holds it until the permit is dropped.
    pub async fn acquire(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.permits.acquire().await.expect("the write window's semaphore is never closed")
    }
}

/// One row of a membership partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MembershipRow {
    pub advertiser_id: String,
    pub list_version: ListVersion,
}

/// A connected session with the prepared statements of the memberships table.
#[derive(Clone)]
pub struct MembershipStore {
    session: Arc<Session>,
    insert: PreparedStatement,
    select_partition: PreparedStatement,
    delete_row: PreparedStatement,
    scan_segment: PreparedStatement,
    timeout: Duration,
}

/// Opens a CQL session to `nodes` (host:port), without a keyspace.
pub async fn connect_session(nodes: &[String], timeout: Duration) -> Result<Session, StoreError> {
    SessionBuilder::new()
        .known_nodes(nodes)
        .connection_timeout(timeout.max(Duration::from_secs(3)))
        .build()
        .await
        .map_err(|e| StoreError::Connect { nodes: nodes.join(","), message: e.to_string() })
}

impl MembershipStore {
    /// Connects and prepares the statements of `keyspace.memberships`. `timeout` bounds every
    /// request (the matcher turns a timeout into a 503, never into "not a member").
    pub async fn connect(nodes: &[String], keyspace: &str, timeout: Duration) -> Result<Self, StoreError> {
        let session = connect_session(nodes, timeout).await?;
        Self::with_session(Arc::new(session), keyspace, timeout).await
    }

    pub async fn with_session(session: Arc<Session>, keyspace: &str, timeout: Duration) -> Result<Self, StoreError> {
        let ks = crate::schema::quote_identifier(keyspace)
            .map_err(|e| StoreError::Request { operation: "prepare", message: e.to_string() })?;
        let prepare = |cql: String| {
            let session = session.clone();
            async move {
                let mut statement = session.prepare(cql).await.map_err(|e| StoreError::request("prepare", e))?;
                statement.set_request_timeout(Some(timeout));
                statement.set_consistency(Consistency::LocalQuorum);
                Ok::<_, StoreError>(statement)
            }
        };
        let mut insert =
            prepare(format!("INSERT INTO {ks}.memberships (email_hash, advertiser_id, list_version) VALUES (?, ?, ?)"))
                .await?;
        // Inserts are idempotent: the driver may retry them safely.
        insert.set_is_idempotent(true);
        let mut select_partition =
            prepare(format!("SELECT advertiser_id, list_version FROM {ks}.memberships WHERE email_hash = ?")).await?;
        select_partition.set_is_idempotent(true);
        let mut delete_row = prepare(format!(
            "DELETE FROM {ks}.memberships WHERE email_hash = ? AND advertiser_id = ? AND list_version = ?"
        ))
        .await?;
        delete_row.set_is_idempotent(true);
        let mut scan_segment = prepare(format!(
            "SELECT email_hash, advertiser_id, list_version FROM {ks}.memberships \
             WHERE token(email_hash) >= ? AND token(email_hash) <= ?"
        ))
        .await?;
        scan_segment.set_is_idempotent(true);
        scan_segment.set_page_size(5000);
        Ok(Self { session, insert, select_partition, delete_row, scan_segment, timeout })
    }

    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// Writes the row `(h, advertiser, version)`. Idempotent: the driver and the caller may
    /// retry it freely.
    pub async fn insert_member(
        &self,
        advertiser: &AdvertiserId,
        version: ListVersion,
        h: &EmailHash,
    ) -> Result<(), StoreError> {
        let started = Instant::now();
        self.session
            .execute_unpaged(&self.insert, (&h.0[..], advertiser.as_str(), version.0))
            .await
            .map_err(|e| StoreError::request("insert", e))?;
        metrics::histogram!("memberlake_store_write_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("memberlake_store_rows_written_total").increment(1);
        Ok(())
    }

    /// Writes `(h, advertiser, version)` for every hash, at most `concurrency` requests in
    /// flight. Idempotent: re-running a range rewrites the same rows. (The worker streams rows
    /// through a [`WriteWindow`] instead; this is for tools and tests.)
    pub async fn insert_members(
        &self,
        advertiser: &AdvertiserId,
        version: ListVersion,
        hashes: &[EmailHash],
        concurrency: usize,
    ) -> Result<(), StoreError> {
        // A plain loop rather than `buffer_unordered` over a closure: the future stays `Send`
        // for any lifetime, so callers may spawn it.
        let mut rows = hashes.iter();
        let mut in_flight = futures::stream::FuturesUnordered::new();
        loop {
            while in_flight.len() < concurrency.max(1) {
                match rows.next() {
                    Some(h) => in_flight.push(self.insert_member(advertiser, version, h)),
                    None => break,
                }
            }
            match in_flight.next().await {
                Some(done) => done?,
                None => return Ok(()),
            }
        }
    }

    /// Every row of `h`'s partition: one read, whatever the number of advertisers asked about.
    pub async fn read_partition(&self, h: &EmailHash) -> Result<Vec<MembershipRow>, StoreError> {
        let started = Instant::now();
        let result =
            tokio::time::timeout(self.timeout, self.session.execute_unpaged(&self.select_partition, (&h.0[..],)))
                .await
                .map_err(|_| StoreError::Timeout { operation: "read", timeout: self.timeout })?
                .map_err(|e| StoreError::request("read", e))?;
        let rows =
            result.into_rows_result().map_err(|e| StoreError::Decode { operation: "read", message: e.to_string() })?;
        let out = rows
            .rows::<(String, i64)>()
            .map_err(|e| StoreError::Decode { operation: "read", message: e.to_string() })?
            .map(|r| {
                r.map(|(advertiser_id, v)| MembershipRow { advertiser_id, list_version: ListVersion(v) })
                    .map_err(|e| StoreError::Decode { operation: "read", message: e.to_string() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        metrics::histogram!("memberlake_store_read_seconds").record(started.elapsed().as_secs_f64());
        Ok(out)
    }

    /// Deletes every row whose `(advertiser, version)` satisfies `retire`, scanning the token
    /// ring in `segments` slices, `concurrency` at a time. Returns (rows scanned, rows deleted).
    ///
    /// This is how superseded, failed and cancelled versions leave the store: one pass retires
    /// every version retired so far, whatever happened to their source objects (a re-upload under
    /// the same key leaves nothing to re-read). Each delete writes one row tombstone inside a
    /// small partition (one per email hash), so reads stay cheap until compaction drops them.
    pub async fn retire_rows<F>(&self, retire: F, segments: u32, concurrency: usize) -> Result<(u64, u64), StoreError>
    where
        F: Fn(&str, ListVersion) -> bool + Sync,
    {
        let segments = segments.max(1) as i128;
        let (min, max) = (i64::MIN as i128, i64::MAX as i128);
        let width = (max - min + 1) / segments;
        let bounds: Vec<(i64, i64)> = (0..segments)
            .map(|i| {
                let lo = min + i * width;
                let hi = if i == segments - 1 { max } else { lo + width - 1 };
                (lo as i64, hi as i64)
            })
            .collect();
        let retire = &retire;
        let totals = futures::stream::iter(bounds)
            .map(|(lo, hi)| async move {
                let mut scanned = 0u64;
                let mut deleted = 0u64;
                let mut rows = self
                    .session
                    .execute_iter(self.scan_segment.clone(), (lo, hi))
                    .await
                    .map_err(|e| StoreError::request("scan", e))?
                    .rows_stream::<(Vec<u8>, String, i64)>()
                    .map_err(|e| StoreError::Decode { operation: "scan", message: e.to_string() })?;
                while let Some(row) = rows.next().await {
                    let (h, adv, v) = row.map_err(|e| StoreError::request("scan", e))?;
                    scanned += 1;
                    if retire(&adv, ListVersion(v)) {
                        self.session
                            .execute_unpaged(&self.delete_row, (&h[..], adv.as_str(), v))
                            .await
                            .map_err(|e| StoreError::request("delete", e))?;
                        deleted += 1;
                    }
                }
                Ok::<_, StoreError>((scanned, deleted))
            })
            .buffer_unordered(concurrency.max(1))
            .try_fold((0u64, 0u64), |acc, x| async move { Ok((acc.0 + x.0, acc.1 + x.1)) })
            .await?;
        metrics::counter!("memberlake_store_rows_retired_total").increment(totals.1);
        Ok(totals)
    }

    /// Cheap reachability check for /readyz.
    pub async fn ping(&self) -> Result<(), StoreError> {
        tokio::time::timeout(self.timeout, self.session.query_unpaged("SELECT release_version FROM system.local", ()))
            .await
            .map_err(|_| StoreError::Timeout { operation: "ping", timeout: self.timeout })?
            .map(|_| ())
            .map_err(|e| StoreError::request("ping", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_write_window_bounds_writes_in_flight_across_clones() {
        let window = WriteWindow::new(2);
        let lane_b = window.clone(); // another lane of the same worker
        let a1 = window.acquire().await;
        let _b1 = lane_b.acquire().await;
        assert_eq!(window.in_use(), 2);
        let third = tokio::time::timeout(Duration::from_millis(50), lane_b.acquire()).await;
        assert!(third.is_err(), "a third write must wait while two are in flight");
        drop(a1);
        let _b2 = tokio::time::timeout(Duration::from_secs(1), lane_b.acquire()).await.expect("a slot was freed");
        assert_eq!(lane_b.in_use(), 2);
        assert_eq!(WriteWindow::new(0).capacity(), 1, "a zero window would stall every write");
    }
}
