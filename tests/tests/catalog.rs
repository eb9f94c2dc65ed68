//! The catalog test suite: the control plane's rules (lease fencing, leader-term fencing,
//! settling, merging and forward-only activation, the shrink guard, supersession, undo and
//! retirement of versions, lanes, operator actions) proven by calling the catalog API
//! in-process, as Quickwit's metastore test suite does.
//!
//! Each test gets a fresh migrated database and reads only through the catalog's public views
//! (`file`, `files`, `file_detail`, `list_files`, `active_versions`, `operator_actions`,
//! `runs_of`): no test probes a table. Time passes through short TTLs and sleeps, never through
//! SQL; cleanups use a zero grace. One fixture writes: [`Suite::make_legacy`] turns a file into
//! a legacy version, as migration 0006 leaves every file finished before the upgrade (no catalog
//! call creates one any more).
//!
//! A file's way to activation (docs/versions.md): registered, split (ingest units), merging once
//! every range is done (one merge unit per hash bucket), then activated by a second settle pass
//! once every bucket is done — or held by the shrink guard.

use std::future::Future;
use std::time::{Duration, Instant};

use memberlake::catalog::{
    shrink_guard, ActiveVersion, BucketReport, Catalog, CatalogError, ClaimPolicy, CleanupQueued, FileDetail,
    FileFilter, FileRecord, FileState, GiveBack, Lane, Leadership, LeaseGuard, PriorityKnobs, RangeCounts, RangeReport,
    RangeState, SettlePolicy, Settled, UnitReport, WorkStage, APPROVED, DEFAULT_BUCKET_TARGET,
};
use memberlake::ids::{AdvertiserId, FileId, ListVersion};
use memberlake::lake::{Compression, LakeObject};
use memberlake_tests::{fresh_database, unique, wait_for, Stack};
use serde_json::json;
use sqlx::types::chrono::{DateTime, Utc};

/// The bucket most tests register their files from.
const LAKE: &str = "lake-a";
/// The splitter's role.
const ROLE: &str = "splitter";
/// A lease or term that outlives any test.
const LONG: Duration = Duration::from_secs(30);
/// A lease short enough to lapse within a test.
const SHORT: Duration = Duration::from_millis(300);
/// Effective priority = operator priority; claims then go by (file_id, stage, range_index), so
/// each test knows which unit a claim takes.
const KNOBS: PriorityKnobs =
    PriorityKnobs { per_level: 1.0, per_log_weight: 0.0, aging_per_second: 0.0, per_size_doubling: 0.0 };
/// Ranges of 1000 bytes.
const RANGE_SIZE: u64 = 1000;
/// The splitter's default: every file of these tests (a few KB) gets one bucket bit...
const BUCKET_TARGET: u64 = DEFAULT_BUCKET_TARGET;
/// ...that is, two buckets (merge, undo and retire units).
const BUCKETS: u32 = 2;
/// Fail beyond 10 % rejected rows; hold a version with fewer than half its base's members.
const POLICY: SettlePolicy = SettlePolicy { max_reject_ratio: 0.1, max_shrink: 0.5 };

/// One test's catalog, on a fresh migrated database.
struct Suite {
    catalog: Catalog,
    url: String,
}

impl Suite {
    async fn new() -> Self {
        let stack = Stack::from_env();
        let url = fresh_database(&stack).await;
        let catalog = Catalog::open(&stack.database_args(&url, 6)).await.unwrap();
        memberlake::schema::migrate_postgres(catalog.pool()).await.unwrap();
        Self { catalog, url }
    }

    /// Takes the splitter role for a long term.
    async fn leader(&self) -> Leadership {
        self.catalog.acquire_leadership(ROLE, &unique("leader"), LONG, None).await.unwrap().expect("the role is free")
    }

    /// Registers a `size`-byte object of `advertiser` from `LAKE`, modified now.
    async fn register(&self, advertiser: &str, size: u64) -> FileId {
        self.register_object(LAKE, &object(advertiser, size, Utc::now())).await
    }

    async fn register_object(&self, bucket: &str, object: &LakeObject) -> FileId {
        self.catalog.register_file(bucket, object).await.unwrap().expect("a new object registers")
    }

    async fn file(&self, id: FileId) -> FileRecord {
        self.catalog.file(id).await.unwrap().expect("file exists")
    }

    async fn detail(&self, id: FileId) -> FileDetail {
        self.catalog.file_detail(id, &KNOBS).await.unwrap().expect("file exists")
    }

    async fn ranges(&self, id: FileId) -> RangeCounts {
        self.detail(id).await.ranges
    }

    /// Claims from `LAKE`'s bulk lane, no per-file cap.
    async fn claim(&self, owner: &str, ttl: Duration) -> Option<LeaseGuard> {
        self.catalog.claim_range(owner, ttl, &bulk(LAKE)).await.unwrap()
    }

    /// Claims and completes every queued range of `LAKE` with `rows` rows each.
    async fn complete_all(&self, rows: u64) -> usize {
        let mut n = 0;
        while let Some(guard) = self.claim("finisher", LONG).await {
            assert_eq!(guard.lease().stage, WorkStage::Ingest, "{:?}", guard.lease());
            assert!(guard.complete(&report(rows, 0)).await.unwrap());
            n += 1;
        }
        n
    }

    /// Claims and completes the merge units `file` has left (they must be the next queued units
    /// of `LAKE`), each bucket reporting `members` members, all added.
    async fn merge(&self, file: FileId, members: u64) {
        let f = self.file(file).await;
        assert_eq!(f.state, FileState::Merging, "{f:?}");
        let buckets = 1i32 << f.version.bucket_bits.expect("bucket bits are fixed at split");
        for _ in f.version.buckets_done..buckets {
            let g = self.claim("merger", LONG).await.expect("a queued merge unit");
            assert_eq!((g.lease().file_id, g.lease().stage), (file, WorkStage::Merge), "{:?}", g.lease());
            assert!(g.complete(&merged(members)).await.unwrap());
        }
        assert_eq!(self.file(file).await.version.buckets_done, buckets);
    }

    /// Claims and completes every queued unit of `LAKE`, each of which must be a `stage` cleanup
    /// unit of `file`, deleting `rows` store rows each; returns their buckets in claim order.
    async fn clean(&self, file: FileId, stage: WorkStage, rows: u64) -> Vec<i32> {
        let mut buckets = Vec::new();
        while let Some(g) = self.claim("cleaner", LONG).await {
            assert_eq!((g.lease().file_id, g.lease().stage), (file, stage), "{:?}", g.lease());
            buckets.push(g.lease().range_index);
            assert!(g.complete(&UnitReport::Cleanup { rows_deleted: rows }).await.unwrap());
        }
        buckets
    }

    /// Registers a one-range list of `advertiser` modified at `at`, ingests it (`rows` rows) and
    /// settles it: it merges, against the active version if there is one.
    async fn merging_version(&self, leader: &Leadership, advertiser: &str, at: DateTime<Utc>, rows: u64) -> FileId {
        let id = self.register_object(LAKE, &object(advertiser, 500, at)).await;
        assert_eq!(split(leader).await, (1, 1));
        let g = self.claim("w", LONG).await.expect("its range");
        assert_eq!(g.lease().file_id, id);
        assert!(g.complete(&report(rows, 0)).await.unwrap());
        let settled = settle(leader).await;
        assert_eq!(settled.merging.iter().map(|m| (m.0, m.1)).collect::<Vec<_>>(), [(id, BUCKETS)], "{settled:?}");
        id
    }

    /// [`merging_version`](Self::merging_version), merged with `members` members (half per
    /// bucket) and activated by a second settle pass.
    async fn active_version(&self, leader: &Leadership, advertiser: &str, members: u64) -> FileId {
        let id = self.merging_version(leader, advertiser, Utc::now(), members).await;
        self.merge(id, members / 2).await;
        assert_eq!(settle(leader).await.activated, [(adv(advertiser), id)]);
        id
    }

    /// Makes `id` a legacy version (its rows in `memberships`): what migration 0006 leaves of
    /// every file that had finished before the upgrade. The one write of this suite.
    async fn make_legacy(&self, id: FileId) {
        sqlx::query("UPDATE files SET store_format = 'rows' WHERE file_id = $1")
            .bind(id)
            .execute(self.catalog.pool())
            .await
            .unwrap();
        assert_eq!(self.file(id).await.version.store_format, "rows");
    }

    /// Each active version as [`version`] states one (its filter facts left out).
    async fn active_versions(&self) -> Vec<ActiveVersion> {
        let mut v = self.catalog.active_versions().await.unwrap();
        v.sort_by(|a, b| a.advertiser_id.cmp(&b.advertiser_id));
        v.into_iter().map(|v| ActiveVersion { bucket_bits: None, members: None, ..v }).collect()
    }

    async fn last_action(&self) -> memberlake::catalog::OperatorAction {
        self.catalog.operator_actions(1).await.unwrap().pop().expect("an audit entry")
    }
}

/// Splits registered files into 1000-byte ranges, with the default bucket target.
async fn split(leader: &Leadership) -> (usize, usize) {
    leader.split_registered_files(RANGE_SIZE, 10, BUCKET_TARGET).await.unwrap()
}

async fn settle(leader: &Leadership) -> Settled {
    leader.settle_files(&POLICY).await.unwrap()
}

async fn cleanup(leader: &Leadership) -> CleanupQueued {
    leader.schedule_cleanup(Duration::ZERO).await.unwrap()
}

fn adv(name: &str) -> AdvertiserId {
    AdvertiserId::parse(name).unwrap()
}

fn object(advertiser: &str, size: u64, last_modified: DateTime<Utc>) -> LakeObject {
    LakeObject {
        advertiser_id: adv(advertiser),
        key: format!("advertisers/{advertiser}/{}.csv", unique("list")),
        etag: unique("etag"),
        size,
        last_modified,
        compression: Compression::None,
    }
}

fn bulk(lake: &str) -> ClaimPolicy {
    ClaimPolicy { lake: lake.to_owned(), lane: Lane::bulk(), per_file_cap: 0, knobs: KNOBS }
}

/// An ingest range's report: one sorted run.
fn report(rows: u64, rejected: u64) -> UnitReport {
    UnitReport::Ingest(RangeReport { rows, rejected, samples: Vec::new(), run_parts: 1, ..Default::default() })
}

/// A merge unit's report: `members` members in the bucket, all added.
fn merged(members: u64) -> UnitReport {
    UnitReport::Merge(BucketReport { members, added: members, removed: 0, rows_written: members, erased: 0 })
}

fn counts(queued: i64, leased: i64, done: i64, failed: i64) -> RangeCounts {
    RangeCounts { queued, leased, done, failed }
}

fn version(advertiser: &str, id: FileId) -> ActiveVersion {
    ActiveVersion {
        advertiser_id: adv(advertiser),
        version: id.into(),
        legacy: false,
        expires_at: None,
        bucket_bits: None,
        members: None,
    }
}

fn after_error(error: &str, max_attempts: i32) -> GiveBack {
    GiveBack::AfterError { error: error.to_owned(), max_attempts }
}

fn superseded_by(newer: FileId) -> String {
    format!("superseded by a newer upload (file {newer})")
}

/// Whether the guard's lost-lease signal fires within `within`.
async fn lost_within(guard: &LeaseGuard, within: Duration) -> bool {
    tokio::time::timeout(within, guard.lost().cancelled()).await.is_ok()
}

/// Reaps until `n` expired leases were reaped (the leases lapse by the database's clock);
/// returns (requeued, failed).
async fn reap(leader: &Leadership, max_attempts: i32, n: usize) -> (usize, usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut requeued, mut failed) = (0, 0);
    while requeued + failed < n {
        assert!(Instant::now() < deadline, "timed out reaping {n} leases: {requeued} requeued, {failed} failed");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (r, f) = leader.reap_expired_leases(max_attempts).await.unwrap();
        requeued += r;
        failed += f;
    }
    assert_eq!(requeued + failed, n, "reaped more leases than expected");
    (requeued, failed)
}

fn assert_not_leader<T: std::fmt::Debug>(result: Result<T, CatalogError>, term: i64, what: &str) {
    match result {
        Err(CatalogError::NotLeader { role, term: t }) => assert_eq!((role.as_str(), t), (ROLE, term), "{what}"),
        other => panic!("{what}: expected NotLeader, got {other:?}"),
    }
}

fn assert_conflict<T: std::fmt::Debug>(result: Result<T, CatalogError>, what: &str) {
    assert!(matches!(result, Err(CatalogError::Conflict(_))), "{what}: expected Conflict, got {result:?}");
}

fn assert_conflict_naming<T: std::fmt::Debug>(result: Result<T, CatalogError>, needle: &str) {
    assert!(
        matches!(&result, Err(CatalogError::Conflict(m)) if m.contains(needle)),
        "expected a Conflict naming {needle:?}, got {result:?}"
    );
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, CatalogError>, what: &str) {
    assert!(matches!(result, Err(CatalogError::NotFound(_))), "{what}: expected NotFound, got {result:?}");
}

/// A worker whose runtime runs only while the test drives it ([`StalledWorker::run`]):
/// between calls its leases' heartbeats cannot run, as in a process that stalled (a long pause,
/// a frozen VM). Its catalog is its own pool, bound to that runtime.
struct StalledWorker {
    catalog: Catalog,
    runtime: tokio::runtime::Runtime,
}

impl StalledWorker {
    fn connect(url: &str) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let catalog = runtime.block_on(Catalog::connect(url, 2)).unwrap();
        Self { catalog, runtime }
    }

    fn run<F: Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }
}

fn main_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

// 1. Every query file prepares against the migrated schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_file_prepares_against_the_migrated_schema() {
    use sqlx::Executor;
    let suite = Suite::new().await;
    let queries = memberlake::catalog::query_files();
    assert!(queries.len() > 40, "query_files() lists {} queries", queries.len());
    let mut failures = Vec::new();
    for (name, text) in &queries {
        if let Err(e) = suite.catalog.pool().describe(text).await {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "queries that do not prepare:\n{}", failures.join("\n"));
}

// The SQL definition of "in flight" (migration 0008) is the Rust one, for every state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sql_and_rust_definitions_of_in_flight_agree() {
    let suite = Suite::new().await;
    for state in FileState::ALL {
        let in_flight: bool =
            sqlx::query_scalar("SELECT file_in_flight($1)").bind(state).fetch_one(suite.catalog.pool()).await.unwrap();
        assert_eq!(in_flight, state.is_in_flight(), "{state:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_is_once_per_bucket_key_and_etag() {
    let suite = Suite::new().await;
    let obj = object("acme", 3000, Utc::now());
    let id = suite.register_object(LAKE, &obj).await;
    assert_eq!(suite.catalog.register_file(LAKE, &obj).await.unwrap(), None, "same object again");
    let other_lake = suite.register_object("lake-b", &obj).await;
    let new_etag = suite.register_object(LAKE, &LakeObject { etag: unique("etag"), ..obj.clone() }).await;
    assert_eq!(
        suite.catalog.files().await.unwrap().iter().map(|f| f.file_id).collect::<Vec<_>>(),
        [id, other_lake, new_etag]
    );
    let f = suite.file(id).await;
    assert_eq!((f.state, f.size_bytes, f.ranges_total, f.active), (FileState::Registered, 3000, 0, false));
    assert_eq!((f.object_key.as_str(), f.etag.as_str()), (obj.key.as_str(), obj.etag.as_str()));
    // A new file is a change-format version, not yet bucketed.
    assert_eq!((f.version.store_format.as_str(), f.version.bucket_bits, f.version.members), ("changes", None, None));
    let mut seen = suite.catalog.registered_objects(LAKE).await.unwrap();
    seen.sort();
    assert_eq!(seen.len(), 2);
    assert!(seen.contains(&(obj.key.clone(), obj.etag.clone())));
}

// 2. Claim → heartbeat → complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeated_lease_outlives_its_ttl_and_completes() {
    let suite = Suite::new().await;
    let id = suite.register("acme", 3000).await;
    let leader = suite.leader().await;
    assert_eq!(split(&leader).await, (1, 3));
    let f = suite.file(id).await;
    assert_eq!((f.state, f.version.bucket_bits), (FileState::Ingesting, Some(1)));

    let ttl = Duration::from_millis(1500);
    let guard = suite.claim("w1", ttl).await.expect("a queued range");
    let lease = guard.lease().clone();
    assert_eq!((lease.file_id, lease.stage, lease.range_index, lease.attempt), (id, WorkStage::Ingest, 0, 1));
    assert_eq!((lease.range.start, lease.range.end, lease.object_size), (0, 1000, 3000));
    assert_eq!((lease.bucket.as_str(), lease.advertiser_id.as_str()), (LAKE, "acme"));
    assert_eq!((lease.bucket_bits, lease.base, lease.successor), (Some(1), None, None));

    // Twice the TTL later the heartbeat has kept the lease: the reaper finds nothing expired.
    tokio::time::sleep(ttl * 2).await;
    assert_eq!(leader.reap_expired_leases(5).await.unwrap(), (0, 0));
    assert_eq!(suite.ranges(id).await, counts(2, 1, 0, 0));
    assert!(!guard.lost().is_cancelled(), "the heartbeat keeps the lease");

    let samples =
        vec![memberlake::catalog::RejectionSample { offset: 17, reason: memberlake::records::RejectReason::MissingAt }];
    let first = RangeReport { rows: 40, rejected: 1, samples: samples.clone(), run_parts: 2, ..Default::default() };
    assert!(guard.complete(&UnitReport::Ingest(first)).await.unwrap());
    let f = suite.file(id).await;
    assert_eq!((f.ranges_done, f.rows_ingested, f.rows_rejected), (1, 40, 1));
    let d = suite.detail(id).await;
    assert_eq!(d.ranges, counts(2, 0, 1, 0));
    assert_eq!(d.rejection_samples, samples);

    // The other two ranges; then the queue is empty and range 0 never comes back.
    let mut others = Vec::new();
    while let Some(g) = suite.claim("w2", LONG).await {
        others.push(g.lease().range_index);
        assert!(g.complete(&report(30, 0)).await.unwrap());
    }
    assert_eq!(others, [1, 2]);
    assert!(suite.claim("w3", LONG).await.is_none(), "every range is done");
    let f = suite.file(id).await;
    assert_eq!((f.state, f.ranges_done, f.rows_ingested, f.rows_rejected), (FileState::Ingesting, 3, 100, 1));
    assert_eq!(suite.ranges(id).await, counts(0, 0, 3, 0));
    assert_eq!(suite.catalog.runs_of(id).await.unwrap(), [(0, 2), (1, 1), (2, 1)], "the runs each range wrote");
}

// 3. Stale tokens: a lapsed, reaped and re-leased lease records nothing — of an ingest range or
// of a merge unit alike.
#[test]
fn a_stale_lease_token_changes_nothing() {
    let main = main_runtime();
    let suite = main.block_on(Suite::new());
    let stalled = StalledWorker::connect(&suite.url);
    let (leader, id) = main.block_on(async {
        let id = suite.register("acme", 3000).await;
        let leader = suite.leader().await;
        assert_eq!(split(&leader).await, (1, 3));
        (leader, id)
    });

    // w1 claims all three ranges, then stalls: its heartbeats cannot run.
    let stale: Vec<LeaseGuard> = (0..3)
        .map(|_| stalled.run(stalled.catalog.claim_range("w1", SHORT, &bulk(LAKE))).unwrap().expect("a range"))
        .collect();

    // The leases lapse and are reaped; w2 re-leases the same ranges with new tokens.
    let fresh: Vec<LeaseGuard> = main.block_on(async {
        assert_eq!(reap(&leader, 5, 3).await, (3, 0));
        let mut fresh = Vec::new();
        while let Some(g) = suite.claim("w2", LONG).await {
            fresh.push(g);
        }
        fresh
    });
    assert_eq!(fresh.len(), 3);
    for (old, new) in stale.iter().zip(&fresh) {
        let (old, new) = (old.lease(), new.lease());
        assert_eq!((old.range_index, new.attempt), (new.range_index, 2));
        assert!(new.token > old.token, "a claim draws a fresh token");
    }

    // Once w1 runs again, its heartbeats find their leases gone.
    stalled.run(async {
        for g in &stale {
            assert!(lost_within(g, Duration::from_secs(5)).await, "lost() fires for range {}", g.lease().range_index);
        }
    });
    let [complete, give_back, fail]: [LeaseGuard; 3] = stale.try_into().unwrap();
    assert!(!stalled.run(complete.complete(&report(1000, 0))).unwrap(), "a stale completion is refused");
    assert_eq!(stalled.run(give_back.give_back(after_error("stale give-back", 1))).unwrap(), None);
    assert!(!stalled.run(fail.fail_file("stale failure")).unwrap(), "a stale failure is refused");

    main.block_on(async {
        // Nothing changed: w2 still holds every range, no progress, no stale error recorded.
        let f = suite.file(id).await;
        assert_eq!((f.state, f.ranges_done, f.rows_ingested, f.failure_reason), (FileState::Ingesting, 0, 0, None));
        let d = suite.detail(id).await;
        assert_eq!(d.ranges, counts(0, 3, 0, 0));
        assert_eq!(d.last_errors.len(), 3);
        for e in &d.last_errors {
            assert_eq!(e.error, "lease expired: worker w1 stopped heartbeating", "range {}", e.range_index);
        }

        // w2's leases are live and complete; the file merges.
        for g in fresh {
            assert!(!g.lost().is_cancelled());
            assert!(g.complete(&report(10, 0)).await.unwrap());
        }
        let f = suite.file(id).await;
        assert_eq!((f.ranges_done, f.rows_ingested), (3, 30));
        assert_eq!(settle(&leader).await, Settled { merging: vec![(id, BUCKETS, None)], ..Default::default() });
    });

    // w1 claims both merge units and stalls again; they lapse, are reaped and re-leased by w2.
    let stale: Vec<LeaseGuard> = (0..BUCKETS)
        .map(|_| stalled.run(stalled.catalog.claim_range("w1", SHORT, &bulk(LAKE))).unwrap().expect("a bucket"))
        .collect();
    for g in &stale {
        assert_eq!((g.lease().file_id, g.lease().stage, g.lease().bucket_bits), (id, WorkStage::Merge, Some(1)));
    }
    let fresh: Vec<LeaseGuard> = main.block_on(async {
        assert_eq!(reap(&leader, 5, BUCKETS as usize).await, (BUCKETS as usize, 0));
        let mut fresh = Vec::new();
        while let Some(g) = suite.claim("w2", LONG).await {
            fresh.push(g);
        }
        fresh
    });
    assert_eq!(fresh.iter().map(|g| (g.lease().range_index, g.lease().attempt)).collect::<Vec<_>>(), [(0, 2), (1, 2)]);
    stalled.run(async {
        for g in stale {
            assert!(lost_within(&g, Duration::from_secs(5)).await, "lost() fires for bucket {}", g.lease().range_index);
            assert!(!g.complete(&merged(1000)).await.unwrap(), "a stale merge completion is refused");
        }
    });
    main.block_on(async {
        let f = suite.file(id).await;
        assert_eq!((f.state, f.version.buckets_done, f.version.members), (FileState::Merging, 0, None));
        for g in fresh {
            assert!(g.complete(&merged(10)).await.unwrap());
        }
        assert_eq!(settle(&leader).await, Settled { activated: vec![(adv("acme"), id)], ..Default::default() });
        let f = suite.file(id).await;
        assert_eq!(
            (f.state, f.active, f.version.members, f.version.rows_written),
            (FileState::Ingested, true, Some(20), 20)
        );
    });
    main.block_on(suite.catalog.pool().close());
    stalled.run(stalled.catalog.pool().close());
}

// 4. Reaping: requeue with the attempt counted, fail at max_attempts, settle fails the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_leases_are_requeued_then_failed_at_max_attempts() {
    let suite = Suite::new().await;
    let id = suite.register("acme", 3000).await;
    let leader = suite.leader().await;
    split(&leader).await;
    let max_attempts = 2;

    // A worker dies holding range 0 (the guard is dropped without an ending: no heartbeat).
    let g = suite.claim("w1", SHORT).await.unwrap();
    assert_eq!((g.lease().range_index, g.lease().attempt), (0, 1));
    drop(g);
    assert_eq!(reap(&leader, max_attempts, 1).await, (1, 0));
    let d = suite.detail(id).await;
    assert_eq!(d.ranges, counts(3, 0, 0, 0));
    assert_eq!(d.last_errors.len(), 1);
    let e = &d.last_errors[0];
    assert_eq!((e.stage, e.range_index, e.attempts), (WorkStage::Ingest, 0, 1));
    assert_eq!(e.error, "lease expired: worker w1 stopped heartbeating");
    assert_eq!(suite.file(id).await.state, FileState::Ingesting);

    // Its second and last attempt dies too: the range fails.
    let g = suite.claim("w2", SHORT).await.unwrap();
    assert_eq!((g.lease().range_index, g.lease().attempt), (0, 2));
    drop(g);
    assert_eq!(reap(&leader, max_attempts, 1).await, (0, 1));
    assert_eq!(suite.ranges(id).await, counts(2, 0, 0, 1));

    // Settling fails the file, naming the range; its other ranges are no longer claimable.
    let settled = settle(&leader).await;
    assert!(settled.activated.is_empty() && settled.superseded.is_empty() && settled.merging.is_empty());
    assert_eq!(settled.failed.len(), 1);
    let (failed_id, reason) = &settled.failed[0];
    assert_eq!(*failed_id, id);
    assert!(reason.starts_with("range 0 failed after 2 attempts"), "{reason}");
    assert!(reason.contains("w2 stopped heartbeating"), "{reason}");
    let f = suite.file(id).await;
    assert_eq!((f.state, f.failure_reason.as_deref(), f.active), (FileState::Failed, Some(reason.as_str()), false));
    assert!(f.finished_at.is_some());
    assert_eq!(suite.ranges(id).await, counts(0, 0, 0, 3));
    assert!(suite.claim("w3", LONG).await.is_none());
    assert_eq!(settle(&leader).await, Settled::default(), "settled once");
    assert!(suite.active_versions().await.is_empty());
}

// 5. give_back: after an error the attempt counts; at shutdown it is handed back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn giving_back_counts_attempts_after_errors_but_not_at_shutdown() {
    let suite = Suite::new().await;
    let id = suite.register("acme", 3000).await;
    let leader = suite.leader().await;
    split(&leader).await;

    let g = suite.claim("w1", LONG).await.unwrap();
    assert_eq!((g.lease().range_index, g.lease().attempt), (0, 1));
    assert_eq!(g.give_back(after_error("store timed out", 2)).await.unwrap(), Some(RangeState::Queued));
    let d = suite.detail(id).await;
    assert_eq!(d.ranges, counts(3, 0, 0, 0));
    assert_eq!((d.last_errors[0].range_index, d.last_errors[0].attempts), (0, 1));
    assert_eq!(d.last_errors[0].error, "store timed out");

    let g = suite.claim("w1", LONG).await.unwrap();
    assert_eq!((g.lease().range_index, g.lease().attempt), (0, 2));
    assert_eq!(g.give_back(after_error("store timed out again", 2)).await.unwrap(), Some(RangeState::Failed));
    assert_eq!(suite.ranges(id).await, counts(2, 0, 0, 1));

    // Shutdowns hand the attempt back, however often they happen.
    for _ in 0..3 {
        let g = suite.claim("w2", LONG).await.unwrap();
        assert_eq!((g.lease().range_index, g.lease().attempt), (1, 1));
        assert_eq!(g.give_back(GiveBack::AtShutdown).await.unwrap(), Some(RangeState::Queued));
    }
    assert_eq!(suite.ranges(id).await, counts(2, 0, 0, 1));
    let g = suite.claim("w2", LONG).await.unwrap();
    assert_eq!((g.lease().range_index, g.lease().attempt), (1, 1));
    assert!(g.complete(&report(10, 0)).await.unwrap());

    let settled = settle(&leader).await;
    assert_eq!(settled.failed.len(), 1);
    assert!(settled.failed[0].1.starts_with("range 0 failed after 2 attempts: store timed out again"));
    assert_eq!(suite.file(id).await.state, FileState::Failed);
}

// 6. Settling: a file merges once every range is done and activates once every bucket is;
// forward only (an older upload is superseded); too many rejects fail the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settling_merges_complete_files_and_activates_forward_only() {
    let suite = Suite::new().await;
    let leader = suite.leader().await;
    let mut activations = suite.catalog.listen_activations().await.unwrap();
    let t0 = Utc::now() - Duration::from_secs(3600);
    let minutes = |m: u64| t0 + Duration::from_secs(60 * m);

    // A three-range file merges only once all its ranges are done...
    let whole = suite.register_object(LAKE, &object("acme", 3000, minutes(0))).await;
    split(&leader).await;
    for _ in 0..2 {
        assert!(suite.claim("w", LONG).await.unwrap().complete(&report(10, 0)).await.unwrap());
    }
    assert_eq!(settle(&leader).await, Settled::default(), "a range is left");
    assert_eq!(suite.file(whole).await.state, FileState::Ingesting);
    assert!(suite.claim("w", LONG).await.unwrap().complete(&report(10, 1)).await.unwrap());
    let settled = settle(&leader).await;
    assert_eq!(settled, Settled { merging: vec![(whole, BUCKETS, None)], ..Default::default() });
    let f = suite.file(whole).await;
    assert_eq!((f.state, f.active, f.rows_ingested, f.rows_rejected), (FileState::Merging, false, 30, 1));
    assert_eq!((f.version.base_version, f.version.buckets_done, f.version.members), (None, 0, None));
    assert!(f.finished_at.is_none());

    // ...and activates only once all its buckets are.
    let g = suite.claim("w", LONG).await.unwrap();
    assert_eq!(
        (g.lease().file_id, g.lease().stage, g.lease().range_index, g.lease().base),
        (whole, WorkStage::Merge, 0, None)
    );
    assert!(g.complete(&merged(15)).await.unwrap());
    assert_eq!(settle(&leader).await, Settled::default(), "a bucket is left");
    assert_eq!(suite.file(whole).await.version.buckets_done, 1);
    suite.merge(whole, 15).await;
    let settled = settle(&leader).await;
    assert_eq!(settled, Settled { activated: vec![(adv("acme"), whole)], ..Default::default() });
    let f = suite.file(whole).await;
    assert_eq!((f.state, f.active, f.rows_ingested, f.rows_rejected), (FileState::Ingested, true, 30, 1));
    assert_eq!(
        (f.version.members, f.version.added, f.version.rows_written, f.version.unchanged()),
        (Some(30), 30, 30, Some(0))
    );
    assert!(f.finished_at.is_some() && f.version.activated_at.is_some());
    let note = tokio::time::timeout(Duration::from_secs(5), activations.recv()).await.expect("notified").unwrap();
    assert_eq!(note.payload(), format!("acme:{whole}"));

    // Two later uploads in flight at once: the older (v2) is superseded by the newer (v3) and its
    // lease revoked; v3 merges against the active version and replaces it.
    let v2 = suite.register_object(LAKE, &object("acme", 500, minutes(2))).await;
    let v3 = suite.register_object(LAKE, &object("acme", 500, minutes(3))).await;
    split(&leader).await;
    let g2 = suite.claim("w", LONG).await.unwrap();
    let g3 = suite.claim("w", LONG).await.unwrap();
    assert_eq!((g2.lease().file_id, g3.lease().file_id), (v2, v3));
    assert!(g3.complete(&report(5, 0)).await.unwrap());
    let settled = settle(&leader).await;
    assert_eq!(
        settled,
        Settled { superseded: vec![v2], merging: vec![(v3, BUCKETS, Some(whole))], ..Default::default() }
    );
    assert!(!g2.complete(&report(5, 0)).await.unwrap(), "the superseded version's lease is revoked");
    let f2 = suite.file(v2).await;
    assert_eq!((f2.state, f2.active, f2.failure_reason), (FileState::Cancelled, false, Some(superseded_by(v3))));
    assert_eq!(suite.ranges(v2).await, counts(0, 0, 0, 1));
    assert_eq!(suite.file(v3).await.version.base_version, Some(whole));
    suite.merge(v3, 10).await;
    let settled = settle(&leader).await;
    assert_eq!(settled, Settled { activated: vec![(adv("acme"), v3)], ..Default::default() });
    let (f3, f1) = (suite.file(v3).await, suite.file(whole).await);
    assert_eq!((f3.state, f3.active), (FileState::Ingested, true));
    assert_eq!((f1.state, f1.active, f1.version.superseded_by), (FileState::Ingested, false, Some(v3)));
    assert_eq!(suite.active_versions().await, [version("acme", v3)]);
    let note = tokio::time::timeout(Duration::from_secs(5), activations.recv()).await.expect("notified").unwrap();
    assert_eq!(note.payload(), format!("acme:{v3}"), "the superseded version is not notified");

    // An upload older than the active version never gets going: it is superseded before it is
    // even split.
    let old = suite.register_object(LAKE, &object("acme", 500, minutes(1))).await;
    assert_eq!(settle(&leader).await, Settled { superseded: vec![old], ..Default::default() });
    let f = suite.file(old).await;
    assert_eq!((f.state, f.ranges_total, f.failure_reason), (FileState::Cancelled, 0, Some(superseded_by(v3))));
    assert_eq!(split(&leader).await, (0, 0));

    // Too many rejected rows hold a file before it writes a row (11 of 100 > 10%); exactly at
    // the limit passes. Approved, the held file merges.
    let bad = suite.register_object(LAKE, &object("beta", 500, minutes(0))).await;
    let fine = suite.register_object(LAKE, &object("gamma", 500, minutes(0))).await;
    split(&leader).await;
    assert!(suite.claim("w", LONG).await.unwrap().complete(&report(89, 11)).await.unwrap());
    assert!(suite.claim("w", LONG).await.unwrap().complete(&report(90, 10)).await.unwrap());
    let settled = settle(&leader).await;
    assert_eq!(settled.merging, [(fine, BUCKETS, None)]);
    assert_eq!(settled.held.len(), 1);
    assert_eq!(settled.held[0].0, bad);
    assert!(settled.held[0].1.starts_with("too many rejected rows: 11 of 100"), "{}", settled.held[0].1);
    let f = suite.file(bad).await;
    assert_eq!((f.state, f.active, f.version.rows_written), (FileState::Held, false, 0));
    assert_eq!(f.version.held_reason.as_deref(), Some(settled.held[0].1.as_str()));
    suite.merge(fine, 45).await;
    assert_eq!(settle(&leader).await.activated, [(adv("gamma"), fine)]);
    assert_eq!(suite.active_versions().await, [version("acme", v3), version("gamma", fine)]);
    assert_eq!(suite.catalog.approve_file("ops", bad).await.unwrap().state, FileState::Ingesting);
    let settled = settle(&leader).await;
    assert_eq!(settled.merging, [(bad, BUCKETS, None)], "approved for its rejects, it merges");
    assert!(settled.held.is_empty());
}

// Bucket width: fixed at split time from the file's size and the bucket target; merging queues
// one unit per bucket, each leased with the version's bucket bits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merging_queues_one_unit_per_bucket_fixed_at_split() {
    let suite = Suite::new().await;
    let leader = suite.leader().await;
    let id = suite.register("acme", 3000).await;
    // 3000 bytes: at most 188 lines; 16 hashes a bucket: 12 buckets, rounded up to 16.
    let bits = memberlake::catalog::bucket_bits_for(3000, 16);
    assert_eq!(bits, 4);
    assert_eq!(leader.split_registered_files(RANGE_SIZE, 10, 16).await.unwrap(), (1, 3));
    assert_eq!(suite.file(id).await.version.bucket_bits, Some(i16::from(bits)));
    assert_eq!(suite.complete_all(5).await, 3);
    assert_eq!(settle(&leader).await, Settled { merging: vec![(id, 16, None)], ..Default::default() });
    let mut buckets = Vec::new();
    while let Some(g) = suite.claim("w", LONG).await {
        assert_eq!((g.lease().file_id, g.lease().stage, g.lease().bucket_bits), (id, WorkStage::Merge, Some(bits)));
        buckets.push(g.lease().range_index);
        assert!(g.complete(&merged(1)).await.unwrap());
    }
    assert_eq!(buckets, (0..16).collect::<Vec<_>>());
    assert_eq!(settle(&leader).await.activated, [(adv("acme"), id)]);
    assert_eq!(suite.file(id).await.version.members, Some(16));
    // Ingest units are what operators count as a file's ranges.
    assert_eq!(suite.ranges(id).await, counts(0, 0, 3, 0));
}

// 7. A permanent error or an operator's cancel ends the file and revokes its other leases, merge
// leases included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_or_cancelling_a_file_revokes_its_leases() {
    let suite = Suite::new().await;
    let leader = suite.leader().await;
    let ttl = Duration::from_millis(600);

    let failed = suite.register("acme", 3000).await;
    split(&leader).await;
    let g0 = suite.claim("w0", ttl).await.unwrap();
    let g1 = suite.claim("w1", ttl).await.unwrap();
    assert!(g0.fail_file("object changed under its key").await.unwrap());
    let f = suite.file(failed).await;
    assert_eq!((f.state, f.failure_reason.as_deref()), (FileState::Failed, Some("object changed under its key")));
    assert!(lost_within(&g1, Duration::from_secs(5)).await, "the other lease is revoked");
    assert!(!g1.complete(&report(10, 0)).await.unwrap(), "a revoked lease completes nothing");
    let d = suite.detail(failed).await;
    assert_eq!(d.ranges, counts(0, 0, 0, 3));
    assert_eq!(
        d.last_errors.iter().map(|e| (e.range_index, e.error.as_str())).collect::<Vec<_>>(),
        [(0, "object changed under its key")]
    );
    assert_eq!((d.file.ranges_done, d.file.rows_ingested), (0, 0));
    assert!(suite.claim("w2", LONG).await.is_none());
    assert_eq!(settle(&leader).await, Settled::default());

    let cancelled = suite.register("acme", 3000).await;
    split(&leader).await;
    let g0 = suite.claim("w0", ttl).await.unwrap();
    let g1 = suite.claim("w1", ttl).await.unwrap();
    assert_eq!(g0.lease().file_id, cancelled);
    let f = suite.catalog.cancel_file("alice", cancelled).await.unwrap();
    assert_eq!((f.state, f.failure_reason.as_deref()), (FileState::Cancelled, Some("cancelled by alice")));
    let action = suite.last_action().await;
    assert_eq!((action.actor.as_str(), action.action.as_str()), ("alice", "cancel"));
    assert_eq!(action.target, format!("file:{cancelled}"));
    assert!(lost_within(&g0, Duration::from_secs(5)).await);
    assert!(lost_within(&g1, Duration::from_secs(5)).await);
    assert!(!g0.complete(&report(10, 0)).await.unwrap());
    assert!(!g1.fail_file("too late").await.unwrap(), "a revoked lease fails nothing");
    let f = suite.file(cancelled).await;
    assert_eq!((f.state, f.failure_reason.as_deref()), (FileState::Cancelled, Some("cancelled by alice")));
    assert_eq!(suite.ranges(cancelled).await, counts(0, 0, 0, 3));
    assert_conflict(suite.catalog.cancel_file("alice", cancelled).await, "cancelling twice");
    assert_eq!(settle(&leader).await, Settled::default());
    assert!(suite.active_versions().await.is_empty());

    // A merging file: one merge lease fails it for good, and the other merge lease is revoked.
    let merging = suite.merging_version(&leader, "beta", Utc::now(), 10).await;
    let m0 = suite.claim("w0", ttl).await.unwrap();
    let m1 = suite.claim("w1", ttl).await.unwrap();
    assert_eq!((m0.lease().file_id, m0.lease().stage, m1.lease().stage), (merging, WorkStage::Merge, WorkStage::Merge));
    assert!(m0.fail_file("run unreadable").await.unwrap());
    assert!(lost_within(&m1, Duration::from_secs(5)).await, "the other merge lease is revoked");
    assert!(!m1.complete(&merged(5)).await.unwrap());
    let f = suite.file(merging).await;
    assert_eq!(
        (f.state, f.failure_reason.as_deref(), f.version.buckets_done),
        (FileState::Failed, Some("run unreadable"), 0)
    );
    assert!(suite.claim("w2", LONG).await.is_none());

    // An operator's cancel of a merging file revokes its merge leases alike.
    let merging = suite.merging_version(&leader, "gamma", Utc::now(), 10).await;
    let m0 = suite.claim("w0", ttl).await.unwrap();
    assert_eq!((m0.lease().file_id, m0.lease().stage), (merging, WorkStage::Merge));
    let f = suite.catalog.cancel_file("alice", merging).await.unwrap();
    assert_eq!(f.state, FileState::Cancelled);
    assert!(lost_within(&m0, Duration::from_secs(5)).await);
    assert!(!m0.complete(&merged(5)).await.unwrap());
    assert!(suite.claim("w2", LONG).await.is_none(), "no merge unit of a cancelled file is claimable");
    assert_eq!(settle(&leader).await, Settled::default());
    assert!(suite.active_versions().await.is_empty());
}

/// A file of three ranges whose ranges 0 and 1 are done (10 rows each) and whose range 2 failed
/// for good, settled as failed: it never merged.
async fn failed_file_with_two_done_ranges(suite: &Suite, leader: &Leadership) -> FileId {
    let id = suite.register("acme", 3000).await;
    split(leader).await;
    for _ in 0..2 {
        assert!(suite.claim("w", LONG).await.unwrap().complete(&report(10, 0)).await.unwrap());
    }
    let g = suite.claim("w", LONG).await.unwrap();
    assert_eq!(g.give_back(after_error("store unavailable", 1)).await.unwrap(), Some(RangeState::Failed));
    let settled = settle(leader).await;
    assert_eq!(settled.failed.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [id]);
    let f = suite.file(id).await;
    assert_eq!((f.state, f.ranges_done, f.rows_ingested), (FileState::Failed, 2, 20));
    id
}

/// [`failed_file_with_two_done_ranges`], as a legacy version: its done ranges wrote rows to
/// `memberships`, which only a retirement pass removes.
async fn failed_legacy_file(suite: &Suite, leader: &Leadership) -> FileId {
    let id = failed_file_with_two_done_ranges(suite, leader).await;
    suite.make_legacy(id).await;
    id
}

/// Starts a retirement pass once `id` is retirable after `grace`; returns what the pass took.
async fn begin_pass_with(leader: &Leadership, id: FileId, grace: Duration) -> Vec<(FileId, AdvertiserId)> {
    wait_for(Duration::from_secs(5), "the failed file to be taken by a retirement pass", || async {
        let taken = leader.begin_retirement(grace).await.unwrap();
        taken.iter().any(|(f, _)| *f == id).then_some(taken)
    })
    .await
}

// 8. Retry vs retire (legacy versions): a retry is refused until a retirement pass has deleted
// the file's rows; it then starts over as a change-format version, split afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_retry_is_refused_until_its_rows_are_retired_then_splits_afresh() {
    let suite = Suite::new().await;
    let leader = suite.leader().await;
    let grace = Duration::from_secs(1);
    let settled_at = Instant::now();
    let id = failed_legacy_file(&suite, &leader).await;
    let early = leader.begin_retirement(grace).await.unwrap();
    if settled_at.elapsed() < grace {
        assert!(early.is_empty(), "retirable before the grace: {early:?}");
    }
    // Its rows are still in the store: a retry is refused, and changes nothing.
    assert_conflict_naming(suite.catalog.retry_file("bob", id).await, "not yet retired");

    // The pass takes the file (and would now delete its rows from the store)...
    let taken = begin_pass_with(&leader, id, grace).await;
    assert_eq!(taken, [(id, adv("acme"))]);
    // ...an operator's retry is still refused meanwhile, and changes nothing...
    assert_conflict_naming(suite.catalog.retry_file("bob", id).await, "not yet retired");
    let f = suite.file(id).await;
    assert_eq!((f.state, f.ranges_done, f.retired_at), (FileState::Failed, 2, None));
    assert!(suite.claim("w", LONG).await.is_none());
    // ...until the pass records it retired.
    leader.finish_retirement(&[id]).await.unwrap();
    let f = suite.file(id).await;
    assert_eq!(f.state, FileState::Failed);
    assert!(f.retired_at.is_some());

    // A retry now starts it over, registered again as a change-format version.
    let (f, requeued) = suite.catalog.retry_file("bob", id).await.unwrap();
    assert_eq!(requeued, 0);
    assert_eq!((f.state, f.failure_reason, f.finished_at, f.retired_at), (FileState::Registered, None, None, None));
    assert_eq!((f.ranges_total, f.ranges_done, f.rows_ingested, f.rows_rejected), (0, 0, 0, 0));
    assert_eq!(f.version.store_format, "changes");
    assert_eq!(suite.ranges(id).await, counts(0, 0, 0, 0));
    let action = suite.last_action().await;
    assert_eq!(
        (action.actor.as_str(), action.action.as_str(), &action.details),
        ("bob", "retry", &json!({"ranges": 0, "split_afresh": true}))
    );
    assert!(leader.begin_retirement(Duration::ZERO).await.unwrap().is_empty(), "a registered file is not retirable");

    // It is split afresh, every range redone; it merges and activates.
    assert_eq!(split(&leader).await, (1, 3));
    let mut redone = Vec::new();
    while let Some(g) = suite.claim("w", LONG).await {
        redone.push((g.lease().range_index, g.lease().attempt));
        assert!(g.complete(&report(10, 0)).await.unwrap());
    }
    assert_eq!(redone, [(0, 1), (1, 1), (2, 1)]);
    assert_eq!(settle(&leader).await.merging, [(id, BUCKETS, None)]);
    suite.merge(id, 15).await;
    assert_eq!(settle(&leader).await.activated, [(adv("acme"), id)]);
    let f = suite.file(id).await;
    assert_eq!((f.state, f.active, f.rows_ingested, f.retired_at), (FileState::Ingested, true, 30, None));
}

// A change-format version that never merged wrote no rows: the cleanup pass records it undone at
// once (no unit), and a retry keeps its done ranges (their runs are kept) and requeues only the
// failed one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_of_a_version_that_never_merged_requeues_only_failed_ranges() {
    let suite = Suite::new().await;
    let leader = suite.leader().await;
    let id = failed_file_with_two_done_ranges(&suite, &leader).await;
    assert!(leader.begin_retirement(Duration::ZERO).await.unwrap().is_empty(), "not a legacy version");
    assert_eq!(cleanup(&leader).await, CleanupQueued { undo: vec![(id, 0)], ..Default::default() });
    assert!(suite.file(id).await.retired_at.is_some(), "no rows to undo");
    assert_eq!(cleanup(&leader).await, CleanupQueued::default(), "undone once");

    let (f, requeued) = suite.catalog.retry_file("bob", id).await.unwrap();
    assert_eq!((requeued, f.state, f.ranges_done, f.rows_ingested), (1, FileState::Ingesting, 2, 20));
    assert_eq!((f.failure_reason, f.retired_at), (None, None));
    assert_eq!(suite.ranges(id).await, counts(1, 0, 2, 0));
    let action = suite.last_action().await;
    assert_eq!((action.action.as_str(), &action.details), ("retry", &json!({"ranges": 1, "rows_undone": false})));
    assert_eq!(cleanup(&leader).await, CleanupQueued::default(), "an ingesting file is not undone");
    let g = suite.claim("w", LONG).await.unwrap();
    assert_eq!((g.lease().range_index, g.lease().attempt), (2, 1));
    assert!(g.complete(&report(10, 0)).await.unwrap());
    assert_eq!(suite.catalog.runs_of(id).await.unwrap(), [(0, 1), (1, 1), (2, 1)]);
    assert_eq!(settle(&leader).await.merging, [(id, BUCKETS, None)]);
    suite.merge(id, 15).await;
    assert_eq!(settle(&leader).await.activated, [(adv("acme"), id)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retirement_without_a_retry_marks_the_file_retired() {
    let suite = Suite::new().await;
    let leader = suite.leader().await;
    let id = failed_legacy_file(&suite, &leader).await;
    begin_pass_with(&leader, id, Duration::from_millis(200)).await;
    leader.finish_retirement(&[id]).await.unwrap();
    let f = suite.file(id).await;
    assert_eq!((f.state, f.ranges_done), (FileState::Failed, 2));
    assert!(f.retired_at.is_some());
    assert!(leader.begin_retirement(Duration::ZERO).await.unwrap().is_empty(), "retired once");
    assert_eq!(cleanup(&leader).await, CleanupQueued::default(), "a legacy version is never undone");
}

// A pass that died is taken again by the next one; a version no pass took is never recorded
// retired (an active one in particular); a change-format version is never taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_pass_is_taken_again_and_untaken_versions_are_never_marked() {
    let suite = Suite::new().await;
    let leader = suite.leader().await;
    let failed = failed_legacy_file(&suite, &leader).await;
    let modern = failed_file_with_two_done_ranges(&suite, &leader).await;
    begin_pass_with(&leader, failed, Duration::ZERO).await;
    // The pass dies before finishing; the next one takes the same file again (and only it).
    assert_eq!(leader.begin_retirement(Duration::ZERO).await.unwrap(), [(failed, adv("acme"))]);

    let active = suite.active_version(&leader, "globex", 10).await;
    leader.finish_retirement(&[failed, active, modern]).await.unwrap();
    assert!(suite.file(failed).await.retired_at.is_some());
    let a = suite.file(active).await;
    assert!(a.active && a.retired_at.is_none(), "{a:?}");
    assert!(suite.file(modern).await.retired_at.is_none());
}

// 9. Leader fencing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_changes_nothing() {
    let suite = Suite::new().await;
    let cat = &suite.catalog;
    let a = cat.acquire_leadership(ROLE, "a", LONG, None).await.unwrap().expect("free");
    assert!(cat.acquire_leadership(ROLE, "b", LONG, None).await.unwrap().is_none(), "a holds the role");
    let info = cat.leader(ROLE).await.unwrap().unwrap();
    assert_eq!((info.holder.as_str(), info.term), ("a", a.term()));

    // While a leads: S (all done, to settle), R (an expiring lease, to reap), F (failed, to
    // undo), then X (registered, to split).
    let s = suite.register("acme", 500).await;
    let r = suite.register("beta", 500).await;
    let f = suite.register("gamma", 500).await;
    assert_eq!(split(&a).await, (3, 3));
    assert!(suite.claim("w", LONG).await.unwrap().complete(&report(1, 0)).await.unwrap());
    drop(suite.claim("w", SHORT).await.unwrap());
    assert!(suite.claim("w", LONG).await.unwrap().fail_file("corrupt").await.unwrap());
    let x = suite.register("delta", 3000).await;

    // a renews with a short TTL (the term is kept) and lets it lapse; b takes over.
    let a = cat.acquire_leadership(ROLE, "a", SHORT, Some(&a)).await.unwrap().expect("a renews");
    let b = wait_for(Duration::from_secs(5), "b to take the role", || async {
        cat.acquire_leadership(ROLE, "b", LONG, None).await.unwrap()
    })
    .await;
    assert!(b.term() > a.term(), "a take bumps the term");
    assert_eq!(cat.leader(ROLE).await.unwrap().unwrap().holder, "b");

    // Every action through a's term fails and changes nothing.
    assert_not_leader(a.split_registered_files(RANGE_SIZE, 10, BUCKET_TARGET).await, a.term(), "split");
    assert_not_leader(a.reap_expired_leases(5).await, a.term(), "reap");
    assert_not_leader(a.settle_files(&POLICY).await, a.term(), "settle");
    assert_not_leader(a.schedule_cleanup(Duration::ZERO).await, a.term(), "schedule_cleanup");
    assert_not_leader(a.begin_retirement(Duration::ZERO).await, a.term(), "begin_retirement");
    assert_not_leader(a.finish_retirement(&[f]).await, a.term(), "finish_retirement");
    assert!(cat.acquire_leadership(ROLE, "a", LONG, Some(&a)).await.unwrap().is_none(), "a cannot renew");
    assert_eq!((suite.file(x).await.state, suite.file(x).await.ranges_total), (FileState::Registered, 0));
    assert_eq!(suite.ranges(r).await, counts(0, 1, 0, 0), "the expired lease is not reaped");
    assert_eq!(suite.file(s).await.state, FileState::Ingesting);
    assert!(suite.active_versions().await.is_empty());
    assert_eq!(suite.file(f).await.retired_at, None);

    // b's succeed.
    assert_eq!(split(&b).await, (1, 3));
    assert_eq!(b.reap_expired_leases(5).await.unwrap(), (1, 0));
    assert_eq!(suite.ranges(r).await, counts(1, 0, 0, 0));
    let settled = b.settle_files(&POLICY).await.unwrap();
    assert_eq!(settled, Settled { merging: vec![(s, BUCKETS, None)], ..Default::default() });
    let queued = b.schedule_cleanup(Duration::ZERO).await.unwrap();
    assert_eq!(queued, CleanupQueued { undo: vec![(f, 0)], ..Default::default() });
    assert!(suite.file(f).await.retired_at.is_some());
    suite.merge(s, 1).await;
    let settled = b.settle_files(&POLICY).await.unwrap();
    assert_eq!(settled, Settled { activated: vec![(adv("acme"), s)], ..Default::default() });
    assert_eq!(suite.active_versions().await, [version("acme", s)]);

    // Renewal keeps the term; resigning lets another holder take the role at once.
    let b2 = cat.acquire_leadership(ROLE, "b", LONG, Some(&b)).await.unwrap().expect("b renews");
    assert_eq!(b2.term(), b.term());
    assert!(b2.expires_at() >= b.expires_at());
    assert!(cat.acquire_leadership(ROLE, "c", LONG, None).await.unwrap().is_none());
    b2.resign().await.unwrap();
    assert_eq!(cat.leader(ROLE).await.unwrap(), None);
    let c = cat.acquire_leadership(ROLE, "c", LONG, None).await.unwrap().expect("free after resigning");
    assert!(c.term() > b.term());
    assert_not_leader(b.reap_expired_leases(5).await, b.term(), "reap after resigning");
    c.reap_expired_leases(5).await.unwrap();
}

// 10. Lanes and lakes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_respect_lake_lane_cap_and_pause() {
    let suite = Suite::new().await;
    let cat = &suite.catalog;
    let leader = suite.leader().await;
    let claim =
        |owner: &'static str, policy: ClaimPolicy| async move { cat.claim_range(owner, LONG, &policy).await.unwrap() };

    // Lakes: a worker of another lake never claims this lake's files (and its claims do not
    // disturb them); this lake's worker does.
    let a = suite.register_object("lake-a", &object("acme", 2000, Utc::now())).await;
    split(&leader).await;
    assert!(claim("wrong", bulk("lake-b")).await.is_none(), "a file of lake-a claimed from lake-b");
    assert_eq!(suite.ranges(a).await, counts(2, 0, 0, 0));
    let g = claim("right", bulk("lake-a")).await.unwrap();
    assert_eq!((g.lease().file_id, g.lease().bucket.as_str()), (a, "lake-a"));

    // Express lane (files <= 1500 bytes or priority >= 10): small files only, until the large
    // one is made urgent; the bulk lane takes any.
    let express = ClaimPolicy { lane: Lane::express(1500, 10), ..bulk("lanes") };
    let large = suite.register_object("lanes", &object("acme", 5000, Utc::now())).await;
    let small = suite.register_object("lanes", &object("beta", 1000, Utc::now())).await;
    split(&leader).await;
    let g = claim("x", express.clone()).await.unwrap();
    assert_eq!(g.lease().file_id, small);
    assert!(claim("x", express.clone()).await.is_none(), "the express lane took a range of a large file");
    cat.set_priority("ops", large, 10).await.unwrap();
    let g = claim("x", express.clone()).await.unwrap();
    assert_eq!(g.lease().file_id, large, "an urgent file takes the express lane");
    cat.set_priority("ops", large, 0).await.unwrap();
    assert!(claim("x", express.clone()).await.is_none());
    let g = claim("b", bulk("lanes")).await.unwrap();
    assert_eq!(g.lease().file_id, large);

    // Per-file cap: at most two leases of one file at a time.
    let capped = ClaimPolicy { per_file_cap: 2, ..bulk("capped") };
    let big = suite.register_object("capped", &object("acme", 5000, Utc::now())).await;
    split(&leader).await;
    let g0 = claim("c", capped.clone()).await.unwrap();
    let _g1 = claim("c", capped.clone()).await.unwrap();
    assert!(claim("c", capped.clone()).await.is_none(), "a third lease of a capped file");
    assert_eq!(suite.ranges(big).await, counts(3, 2, 0, 0));
    assert!(claim("c", bulk("capped")).await.is_some(), "an uncapped slot may take it");
    assert!(g0.complete(&report(1, 0)).await.unwrap());
    assert!(claim("c", capped.clone()).await.is_none(), "still two leases");

    // Paused files are not claimed; leases in flight keep going; resumed, they are.
    let paused = suite.register_object("paused", &object("acme", 3000, Utc::now())).await;
    split(&leader).await;
    let g = claim("p", bulk("paused")).await.unwrap();
    assert!(cat.set_paused("ops", paused, true).await.unwrap().paused);
    assert!(claim("p", bulk("paused")).await.is_none(), "a paused file was claimed");
    assert!(g.complete(&report(1, 0)).await.unwrap(), "a lease in flight finishes");
    assert!(!cat.set_paused("ops", paused, false).await.unwrap().paused);
    assert_eq!(claim("p", bulk("paused")).await.unwrap().lease().file_id, paused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_follow_priority_then_registration_order() {
    let suite = Suite::new().await;
    let leader = suite.leader().await;
    let first = suite.register("acme", 1000).await;
    let second = suite.register("beta", 1000).await;
    let third = suite.register("gamma", 1000).await;
    split(&leader).await;
    suite.catalog.set_priority("ops", third, 5).await.unwrap();
    assert_eq!(suite.detail(third).await.effective_priority, 5.0);
    let mut order = Vec::new();
    while let Some(g) = suite.claim("w", LONG).await {
        order.push(g.lease().file_id);
    }
    assert_eq!(order, [third, first, second]);
}

// 11. Operator views and actions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_views_filter_count_and_audit() {
    let suite = Suite::new().await;
    let cat = &suite.catalog;
    let leader = suite.leader().await;

    // Two advertisers, so that neither upload supersedes the other.
    let four = suite.register("acme", 4000).await;
    let done = suite.register("globex", 500).await;
    split(&leader).await;

    // file_detail counts a file's ranges by state: done, failed, leased, queued.
    assert!(suite.claim("w", LONG).await.unwrap().complete(&report(7, 0)).await.unwrap());
    let g = suite.claim("w", LONG).await.unwrap();
    assert_eq!(g.give_back(after_error("boom", 1)).await.unwrap(), Some(RangeState::Failed));
    let _leased = suite.claim("w", LONG).await.unwrap();
    let d = suite.detail(four).await;
    assert_eq!(d.ranges, counts(1, 1, 1, 1));
    assert_eq!((d.file.ranges_total, d.file.ranges_done, d.file.rows_ingested), (4, 1, 7));
    assert_eq!(
        d.last_errors.iter().map(|e| (e.stage, e.range_index, e.attempts)).collect::<Vec<_>>(),
        [(WorkStage::Ingest, 1, 1)]
    );

    // `four` fails (its range 1 did) and `done` merges, then is ingested and active.
    cat.set_paused("ops", four, true).await.unwrap();
    assert_eq!(suite.complete_all(3).await, 1);
    let settled = leader.settle_files(&POLICY).await.unwrap();
    assert_eq!(settled.merging, [(done, BUCKETS, None)]);
    assert_eq!(settled.failed.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [four]);
    let f = suite.file(done).await;
    assert_eq!(f.state, FileState::Merging);
    assert_conflict(cat.retry_file("ops", done).await, "retrying a merging file");
    suite.merge(done, 2).await;
    assert_eq!(settle(&leader).await.activated, [(adv("globex"), done)]);
    // A newer upload of globex, registered once `done` is active, waits to be split.
    let registered = suite.register("globex", 500).await;
    assert_eq!(suite.ranges(registered).await, counts(0, 0, 0, 0));

    // list_files filters by state and advertiser, newest first.
    let list = |state: Option<FileState>, advertiser: Option<&str>, limit: i64| {
        let filter = FileFilter { state, advertiser_id: advertiser.map(adv), limit };
        async move { cat.list_files(&filter).await.unwrap().iter().map(|f| f.file_id).collect::<Vec<_>>() }
    };
    assert_eq!(list(None, None, 0).await, [registered, done, four]);
    assert_eq!(list(None, None, 2).await, [registered, done]);
    assert_eq!(list(None, Some("globex"), 0).await, [registered, done]);
    assert_eq!(list(None, Some("acme"), 0).await, [four]);
    assert_eq!(list(Some(FileState::Ingested), None, 0).await, [done]);
    assert_eq!(list(Some(FileState::Failed), Some("acme"), 0).await, [four]);
    assert_eq!(list(Some(FileState::Registered), None, 0).await, [registered]);
    assert!(list(Some(FileState::Merging), None, 0).await.is_empty());
    assert!(list(Some(FileState::Failed), Some("globex"), 0).await.is_empty());
    assert!(list(None, Some("nobody"), 0).await.is_empty());
    assert!(suite.file(done).await.active);

    // Actions are audited, newest first.
    let before = cat.operator_actions(1000).await.unwrap().len();
    let f = cat.set_priority("carol", registered, 7).await.unwrap();
    assert_eq!(f.priority, 7);
    let a = suite.last_action().await;
    assert_eq!(
        (a.actor.as_str(), a.action.as_str(), a.target.clone(), a.details),
        ("carol", "prioritize", format!("file:{registered}"), json!({"priority": 7}))
    );
    assert!(cat.set_paused("dave", registered, true).await.unwrap().paused);
    let a = suite.last_action().await;
    assert_eq!(
        (a.actor.as_str(), a.action.as_str(), a.target.clone()),
        ("dave", "pause", format!("file:{registered}"))
    );
    assert!(!cat.set_paused("dave", registered, false).await.unwrap().paused);
    assert_eq!(suite.last_action().await.action, "resume");
    cat.set_weight("erin", &adv("beta"), 2.5).await.unwrap();
    let a = suite.last_action().await;
    assert_eq!(
        (a.actor.as_str(), a.action.as_str(), a.target.as_str(), a.details),
        ("erin", "weight", "advertiser:beta", json!({"weight": 2.5}))
    );
    let log = cat.operator_actions(1000).await.unwrap();
    assert_eq!(log.len(), before + 4);
    assert!(log.windows(2).all(|w| w[0].action_id > w[1].action_id), "newest first");

    // Conflicts and unknown ids change nothing and record nothing.
    assert_conflict(cat.set_paused("ops", done, true).await, "pausing an ingested file");
    assert_conflict(cat.set_paused("ops", four, false).await, "resuming a failed file");
    assert_conflict(cat.cancel_file("ops", done).await, "cancelling an ingested file");
    assert_conflict(cat.retry_file("ops", done).await, "retrying an ingested file");
    assert_conflict(cat.retry_file("ops", registered).await, "retrying a registered file");
    assert_conflict(cat.approve_file("ops", done).await, "approving an ingested file");
    assert_conflict(cat.approve_file("ops", registered).await, "approving a registered file");
    assert_conflict(cat.reject_file("ops", four).await, "rejecting a failed file");
    assert!(matches!(cat.set_weight("ops", &adv("beta"), 0.0).await, Err(CatalogError::Invalid(_))));
    assert!(matches!(cat.set_weight("ops", &adv("beta"), f64::NAN).await, Err(CatalogError::Invalid(_))));
    let unknown = FileId(i64::MAX);
    assert_not_found(cat.set_priority("ops", unknown, 1).await, "set_priority");
    assert_not_found(cat.set_paused("ops", unknown, true).await, "set_paused");
    assert_not_found(cat.cancel_file("ops", unknown).await, "cancel_file");
    assert_not_found(cat.retry_file("ops", unknown).await, "retry_file");
    assert_not_found(cat.approve_file("ops", unknown).await, "approve_file");
    assert_not_found(cat.reject_file("ops", unknown).await, "reject_file");
    assert!(cat.file(unknown).await.unwrap().is_none());
    assert!(cat.file_detail(unknown, &KNOBS).await.unwrap().is_none());
    assert_eq!(cat.operator_actions(1000).await.unwrap().len(), before + 4, "failed actions are not audited");
    let f = suite.file(done).await;
    assert_eq!((f.state, f.paused, f.active), (FileState::Ingested, false, true));
    assert_eq!(suite.file(four).await.state, FileState::Failed);

    // Retry of the failed file is audited too, and makes it claimable again.
    let (f, requeued) = cat.retry_file("frank", four).await.unwrap();
    assert_eq!((f.state, requeued), (FileState::Ingesting, 3));
    assert_eq!(suite.last_action().await.action, "retry");
}

// 12. Supersession: a newer upload of an advertiser cancels the version in flight, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_upload_supersedes_the_version_in_flight() {
    let suite = Suite::new().await;
    let leader = suite.leader().await;
    let ttl = Duration::from_millis(600);
    let v1 = suite.register("acme", 3000).await;
    assert_eq!(split(&leader).await, (1, 3));
    let g = suite.claim("w", ttl).await.unwrap();
    assert_eq!(g.lease().file_id, v1);
    assert!(suite.claim("w", LONG).await.unwrap().complete(&report(10, 0)).await.unwrap());
    // Another advertiser's upload supersedes nothing of acme's.
    let other = suite.register("globex", 500).await;
    let v2 = suite.register("acme", 500).await;

    let settled = settle(&leader).await;
    assert_eq!(settled, Settled { superseded: vec![v1], ..Default::default() });
    let f = suite.file(v1).await;
    assert_eq!((f.state, f.active, f.failure_reason), (FileState::Cancelled, false, Some(superseded_by(v2))));
    assert!(f.finished_at.is_some());
    assert_eq!(suite.ranges(v1).await, counts(0, 0, 1, 2), "its outstanding ranges are revoked");
    assert!(lost_within(&g, Duration::from_secs(5)).await, "its lease is revoked");
    assert!(!g.complete(&report(10, 0)).await.unwrap());
    assert_eq!(
        (suite.file(v2).await.state, suite.file(other).await.state),
        (FileState::Registered, FileState::Registered)
    );
    assert_eq!(settle(&leader).await, Settled::default(), "superseded once");
    // It never merged, so it wrote no rows: recorded undone at once.
    assert_eq!(cleanup(&leader).await, CleanupQueued { undo: vec![(v1, 0)], ..Default::default() });
    assert!(suite.file(v1).await.retired_at.is_some());
    assert_conflict(suite.catalog.retry_file("ops", v1).await, "retrying a superseded version");

    // The newer upload goes its way, as a first version (nothing of acme is active).
    assert_eq!(split(&leader).await, (2, 2));
    assert_eq!(suite.complete_all(10).await, 2);
    let settled = settle(&leader).await;
    assert_eq!(settled.merging, [(other, BUCKETS, None), (v2, BUCKETS, None)]);
    suite.merge(other, 5).await;
    suite.merge(v2, 5).await;
    let settled = settle(&leader).await;
    assert_eq!(settled.activated, [(adv("globex"), other), (adv("acme"), v2)]);
    assert_eq!(suite.active_versions().await, [version("acme", v2), version("globex", other)]);
}

// 13. The shrink guard holds a version that shrinks the active list by more than allowed; an
// operator's approval lets the next settle pass activate it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shrink_guard_holds_a_version_until_an_operator_approves_it() {
    let suite = Suite::new().await;
    let leader = suite.leader().await;
    let v1 = suite.active_version(&leader, "acme", 100).await;
    let v2 = suite.merging_version(&leader, "acme", Utc::now(), 40).await;
    let f = suite.file(v2).await;
    assert_eq!(f.version.base_version, Some(v1), "diffed against the active version");
    let g = suite.claim("w", LONG).await.unwrap();
    assert_eq!((g.lease().file_id, g.lease().base), (v2, Some((ListVersion::from(v1), 1))));
    assert!(g.complete(&merged(20)).await.unwrap());
    suite.merge(v2, 20).await;

    // 40 members against 100: held, with the guard's reason; v1 stays active.
    let reason = shrink_guard(40, Some(100), POLICY.max_shrink).expect("40 of 100 is held");
    assert!(reason.contains("from 100 to 40"), "{reason}");
    assert_eq!(settle(&leader).await, Settled { held: vec![(v2, reason.clone())], ..Default::default() });
    let f = suite.file(v2).await;
    assert_eq!((f.state, f.active, f.version.held_reason.as_deref()), (FileState::Held, false, Some(reason.as_str())));
    assert_eq!((f.version.members, f.finished_at), (Some(40), None));
    assert_eq!(suite.active_versions().await, [version("acme", v1)]);
    assert_eq!(settle(&leader).await, Settled::default(), "held until an operator decides");
    assert_eq!(cleanup(&leader).await, CleanupQueued::default(), "a held version is not cleaned up");

    // Approved: back to merging, marked approved, and activated by the next pass.
    let f = suite.catalog.approve_file("olga", v2).await.unwrap();
    assert_eq!((f.state, f.version.held_reason.as_deref()), (FileState::Merging, Some(APPROVED)));
    let action = suite.last_action().await;
    assert_eq!((action.actor.as_str(), action.action.as_str()), ("olga", "approve"));
    assert_eq!(action.target, format!("file:{v2}"));
    assert_conflict(suite.catalog.approve_file("olga", v2).await, "approving twice");
    assert_conflict(suite.catalog.reject_file("olga", v2).await, "rejecting an approved version");
    assert_eq!(settle(&leader).await, Settled { activated: vec![(adv("acme"), v2)], ..Default::default() });
    let f = suite.file(v2).await;
    assert_eq!((f.state, f.active), (FileState::Ingested, true));
    assert_eq!(suite.file(v1).await.version.superseded_by, Some(v2));
    assert_eq!(suite.active_versions().await, [version("acme", v2)]);

    // Exactly at the guard's limit (half of 40) is not held.
    let v3 = suite.merging_version(&leader, "acme", Utc::now(), 20).await;
    suite.merge(v3, 10).await;
    assert_eq!(settle(&leader).await.activated, [(adv("acme"), v3)]);
}

// 14. A rejected held version is cancelled; its rows are undone, one undo unit per bucket, and
// the cleanup pass then records it undone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_version_is_cancelled_and_its_rows_undone() {
    let suite = Suite::new().await;
    let leader = suite.leader().await;
    let v1 = suite.active_version(&leader, "acme", 100).await;
    let v2 = suite.merging_version(&leader, "acme", Utc::now(), 40).await;
    suite.merge(v2, 20).await;
    assert_eq!(settle(&leader).await.held.iter().map(|h| h.0).collect::<Vec<_>>(), [v2]);

    let f = suite.catalog.reject_file("rita", v2).await.unwrap();
    assert_eq!(
        (f.state, f.failure_reason.as_deref(), f.active),
        (FileState::Cancelled, Some("rejected by rita"), false)
    );
    assert!(f.finished_at.is_some() && f.retired_at.is_none());
    let action = suite.last_action().await;
    assert_eq!((action.actor.as_str(), action.action.as_str()), ("rita", "reject"));
    assert_conflict(suite.catalog.reject_file("rita", v2).await, "rejecting twice");
    assert_conflict(suite.catalog.approve_file("rita", v2).await, "approving a rejected version");
    assert_eq!(settle(&leader).await, Settled::default());
    assert_eq!(suite.active_versions().await, [version("acme", v1)], "v1 stays");

    // It wrote rows while merging: one undo unit per bucket.
    assert_eq!(cleanup(&leader).await, CleanupQueued { undo: vec![(v2, BUCKETS)], ..Default::default() });
    assert_eq!(cleanup(&leader).await, CleanupQueued::default(), "queued once");
    let g = suite.claim("u", LONG).await.unwrap();
    let lease = g.lease().clone();
    assert_eq!((lease.file_id, lease.stage, lease.range_index, lease.attempt), (v2, WorkStage::Undo, 0, 1));
    assert_eq!((lease.bucket_bits, lease.base, lease.successor), (Some(1), Some((ListVersion::from(v1), 1)), None));
    // A store outage delays an undo unit but never fails it.
    assert_eq!(g.give_back(after_error("store unavailable", 1)).await.unwrap(), Some(RangeState::Queued));
    let g = suite.claim("u", LONG).await.unwrap();
    assert_eq!((g.lease().range_index, g.lease().attempt), (0, 2));
    assert_eq!(g.give_back(after_error("store unavailable", 1)).await.unwrap(), Some(RangeState::Queued));
    assert_eq!(suite.clean(v2, WorkStage::Undo, 20).await, [0, 1]);
    let f = suite.file(v2).await;
    assert_eq!((f.version.rows_deleted, f.retired_at), (40, None), "recorded by the next cleanup pass");

    assert_eq!(cleanup(&leader).await, CleanupQueued { finished: vec![v2], ..Default::default() });
    let f = suite.file(v2).await;
    assert!(f.retired_at.is_some());
    assert_eq!((f.state, f.version.rows_written, f.version.rows_deleted), (FileState::Cancelled, 40, 40));
    assert_eq!(cleanup(&leader).await, CleanupQueued::default(), "recorded once");
    assert_conflict(suite.catalog.retry_file("rita", v2).await, "retrying a rejected version");
    assert_eq!(suite.active_versions().await, [version("acme", v1)]);
}

// 15. A version activates only once an older version of its advertiser that wrote rows (it
// started merging) and was cancelled has been undone: its rows would answer for it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_waits_for_an_older_versions_undo() {
    let suite = Suite::new().await;
    let leader = suite.leader().await;
    let v1 = suite.merging_version(&leader, "acme", Utc::now(), 20).await;
    let m0 = suite.claim("w", LONG).await.unwrap();
    let m1 = suite.claim("w", Duration::from_millis(600)).await.unwrap();
    assert_eq!((m0.lease().file_id, m1.lease().file_id), (v1, v1));
    assert!(m0.complete(&merged(10)).await.unwrap());

    // v2 arrives while v1 merges: v1 is superseded, its other merge lease revoked.
    let v2 = suite.register("acme", 500).await;
    assert_eq!(settle(&leader).await, Settled { superseded: vec![v1], ..Default::default() });
    assert!(lost_within(&m1, Duration::from_secs(5)).await);
    assert!(!m1.complete(&merged(10)).await.unwrap());
    let f = suite.file(v1).await;
    assert_eq!((f.state, f.failure_reason), (FileState::Cancelled, Some(superseded_by(v2))));
    assert_eq!((f.version.buckets_done, f.version.rows_written), (1, 10));

    // v2 ingests and merges, but waits while v1's rows are still in the store.
    assert_eq!(split(&leader).await, (1, 1));
    assert_eq!(suite.complete_all(30).await, 1);
    assert_eq!(settle(&leader).await, Settled { merging: vec![(v2, BUCKETS, None)], ..Default::default() });
    suite.merge(v2, 15).await;
    assert_eq!(settle(&leader).await, Settled::default(), "v1 is not undone");
    assert_eq!(suite.file(v2).await.state, FileState::Merging);
    assert!(suite.active_versions().await.is_empty());

    // v1's undo is queued (one unit per bucket, whatever it had merged) and done...
    assert_eq!(cleanup(&leader).await, CleanupQueued { undo: vec![(v1, BUCKETS)], ..Default::default() });
    assert_eq!(settle(&leader).await, Settled::default(), "the undo is queued, not done");
    let g = suite.claim("u", LONG).await.unwrap();
    assert_eq!((g.lease().file_id, g.lease().stage, g.lease().base), (v1, WorkStage::Undo, None));
    assert!(g.complete(&UnitReport::Cleanup { rows_deleted: 10 }).await.unwrap());
    assert_eq!(suite.clean(v1, WorkStage::Undo, 0).await, [1]);
    assert_eq!(settle(&leader).await, Settled::default(), "the undo is done but not yet recorded");
    // ...recorded by the cleanup pass; then v2 activates.
    assert_eq!(cleanup(&leader).await, CleanupQueued { finished: vec![v1], ..Default::default() });
    let f = suite.file(v1).await;
    assert!(f.retired_at.is_some());
    assert_eq!(f.version.rows_deleted, 10);
    assert_eq!(settle(&leader).await, Settled { activated: vec![(adv("acme"), v2)], ..Default::default() });
    assert_eq!(suite.active_versions().await, [version("acme", v2)]);
}

// 16. A replaced active version is retired (once the grace has passed): one retire unit per
// bucket of its successor's diff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_active_version_is_retired_over_its_successors_diff() {
    let suite = Suite::new().await;
    let leader = suite.leader().await;
    let v1 = suite.active_version(&leader, "acme", 100).await;
    assert_eq!(cleanup(&leader).await, CleanupQueued::default(), "an active version is not retired");
    let v2 = suite.active_version(&leader, "acme", 60).await;
    let f = suite.file(v1).await;
    assert_eq!(
        (f.state, f.active, f.version.superseded_by, f.retired_at),
        (FileState::Ingested, false, Some(v2), None)
    );
    assert_eq!(suite.file(v2).await.version.base_version, Some(v1));

    // Not before the grace (matchers may still answer from v1)...
    assert_eq!(leader.schedule_cleanup(LONG).await.unwrap(), CleanupQueued::default());
    // ...then one retire unit per bucket of v2.
    assert_eq!(cleanup(&leader).await, CleanupQueued { retire: vec![(v1, BUCKETS)], ..Default::default() });
    assert_eq!(cleanup(&leader).await, CleanupQueued::default(), "queued once");
    let g = suite.claim("r", LONG).await.unwrap();
    let lease = g.lease().clone();
    assert_eq!((lease.file_id, lease.stage, lease.range_index), (v1, WorkStage::Retire, 0));
    assert_eq!((lease.bucket_bits, lease.base, lease.successor), (Some(1), None, Some((ListVersion::from(v2), 1))));
    assert!(g.complete(&UnitReport::Cleanup { rows_deleted: 7 }).await.unwrap());
    assert_eq!(suite.clean(v1, WorkStage::Retire, 7).await, [1]);
    assert!(suite.file(v1).await.retired_at.is_none());

    assert_eq!(cleanup(&leader).await, CleanupQueued { finished: vec![v1], ..Default::default() });
    let f = suite.file(v1).await;
    assert!(f.retired_at.is_some());
    assert_eq!((f.state, f.version.rows_deleted), (FileState::Ingested, 14));
    let f = suite.file(v2).await;
    assert_eq!((f.active, f.retired_at), (true, None));
    assert_eq!(cleanup(&leader).await, CleanupQueued::default());
    assert_eq!(suite.active_versions().await, [version("acme", v2)]);
}

// 17. A version that failed after it started merging may have written rows: a retry is refused
// until they are undone; it then merges afresh (its runs are kept).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_is_refused_until_a_merged_failed_version_is_undone() {
    let suite = Suite::new().await;
    let leader = suite.leader().await;
    let v1 = suite.merging_version(&leader, "acme", Utc::now(), 20).await;
    let g = suite.claim("w", LONG).await.unwrap();
    assert_eq!((g.lease().stage, g.lease().range_index), (WorkStage::Merge, 0));
    assert_eq!(g.give_back(after_error("store unavailable", 1)).await.unwrap(), Some(RangeState::Failed));
    assert!(suite.claim("w", LONG).await.unwrap().complete(&merged(10)).await.unwrap());
    let settled = settle(&leader).await;
    let reason = "bucket 0 failed after 1 attempts: store unavailable".to_owned();
    assert_eq!(settled, Settled { failed: vec![(v1, reason.clone())], ..Default::default() });
    let f = suite.file(v1).await;
    assert_eq!((f.state, f.failure_reason), (FileState::Failed, Some(reason)));
    let d = suite.detail(v1).await;
    assert_eq!(d.last_errors.iter().map(|e| (e.stage, e.range_index)).collect::<Vec<_>>(), [(WorkStage::Merge, 0)]);

    assert_conflict_naming(suite.catalog.retry_file("bob", v1).await, "being undone");
    assert_eq!(cleanup(&leader).await, CleanupQueued { undo: vec![(v1, BUCKETS)], ..Default::default() });
    assert_conflict_naming(suite.catalog.retry_file("bob", v1).await, "being undone");
    assert_eq!(suite.clean(v1, WorkStage::Undo, 5).await, [0, 1]);
    assert_conflict_naming(suite.catalog.retry_file("bob", v1).await, "being undone");
    assert_eq!(suite.file(v1).await.state, FileState::Failed, "refused retries change nothing");
    assert_eq!(cleanup(&leader).await, CleanupQueued { finished: vec![v1], ..Default::default() });

    // Undone: the retry reopens it; no ingest range failed, so none is requeued.
    let (f, requeued) = suite.catalog.retry_file("bob", v1).await.unwrap();
    assert_eq!(requeued, 0);
    assert_eq!((f.state, f.failure_reason, f.retired_at, f.ranges_done), (FileState::Ingesting, None, None, 1));
    let v = &f.version;
    assert_eq!((v.buckets_done, v.members, v.rows_written, v.rows_deleted), (0, None, 0, 0));
    let action = suite.last_action().await;
    assert_eq!((action.action.as_str(), &action.details), ("retry", &json!({"ranges": 0, "rows_undone": true})));
    assert_eq!(cleanup(&leader).await, CleanupQueued::default(), "a reopened file is not undone");
    assert_eq!(settle(&leader).await, Settled { merging: vec![(v1, BUCKETS, None)], ..Default::default() });
    suite.merge(v1, 10).await;
    assert_eq!(settle(&leader).await, Settled { activated: vec![(adv("acme"), v1)], ..Default::default() });
    let f = suite.file(v1).await;
    assert_eq!((f.state, f.active, f.version.members), (FileState::Ingested, true, Some(20)));
}

/// The pipeline's health (`Catalog::pipeline_health`, exported by the splitter leader): the
/// claimable queue per lane and the age of its oldest unit, files per state, and the SLA
/// projection — a file is at risk when the fraction of its units done lags the fraction of the
/// SLA spent, judged from SLA/10 after registration on; paused files are neither queued work nor
/// at risk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_health_counts_the_queue_per_lane_files_per_state_and_sla_risk() {
    use memberlake::catalog::{HealthQuery, PipelineHealth};
    let suite = Suite::new().await;
    let leader = suite.leader().await;
    let health = |sla: Duration| {
        let catalog = suite.catalog.clone();
        async move {
            let q = HealthQuery {
                express_max_bytes: 2000,
                urgent_priority: 100,
                sla,
                finished_window: Duration::from_secs(3600),
            };
            catalog.pipeline_health(&q).await.unwrap()
        }
    };
    let files_in = |h: &PipelineHealth, state: FileState| h.files.iter().find(|(s, _)| *s == state).unwrap().1;
    let units = |h: &PipelineHealth| (h.lanes[0].units, h.lanes[1].units);

    let empty = health(LONG).await;
    assert_eq!((empty.lanes[0].lane.as_str(), empty.lanes[1].lane.as_str()), ("express", "bulk"));
    assert_eq!((units(&empty), empty.lanes[0].oldest_seconds, empty.sla_at_risk), ((0, 0), 0.0, 0));
    assert_eq!(empty.files.len(), FileState::ALL.len());
    assert!(empty.files.iter().all(|(_, n)| *n == 0), "{empty:?}");

    // A small file (express: 2 ranges) and a large one (bulk only: 4 ranges).
    let small = suite.register("small", 1500).await;
    let large = suite.register("large", 3500).await;
    let registered = Instant::now();
    let h = health(LONG).await;
    assert_eq!((files_in(&h, FileState::Registered), units(&h)), (2, (0, 0)), "not split: no unit yet");
    split(&leader).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let h = health(LONG).await;
    assert_eq!((files_in(&h, FileState::Ingesting), files_in(&h, FileState::Registered)), (2, 0));
    assert_eq!(units(&h), (2, 4));
    assert!(h.lanes.iter().all(|l| l.oldest_seconds >= 0.3 && l.oldest_seconds < 60.0), "{h:?}");

    // The small file's two ranges done: 2 of its 4 units (2 ranges + 2 buckets).
    for _ in 0..2 {
        let g = suite.claim("w", LONG).await.unwrap();
        assert_eq!(g.lease().file_id, small);
        assert!(g.complete(&report(10, 0)).await.unwrap());
    }
    assert_eq!(units(&health(LONG).await), (0, 4));
    // Within a tenth of the SLA nothing is judged.
    assert_eq!(health(LONG).await.sla_at_risk, 0);
    // SLA 10 s, judged from 1 s on: the large file (nothing done) is at risk; the small one (half
    // done) is not before 5 s have passed.
    let since = registered.elapsed();
    if since < Duration::from_millis(1100) {
        tokio::time::sleep(Duration::from_millis(1100) - since).await;
    }
    let h = health(Duration::from_secs(10)).await;
    assert!(registered.elapsed() < Duration::from_secs(5), "the machine is too slow for this check");
    assert_eq!(h.sla_at_risk, 1, "{h:?}");
    // SLA 1 s: both are past due.
    assert_eq!(health(Duration::from_secs(1)).await.sla_at_risk, 2);

    // Paused: its units are no claimable queue, and it waits for an operator, not at risk.
    suite.catalog.set_paused("ops", large, true).await.unwrap();
    let h = health(Duration::from_secs(1)).await;
    assert_eq!((units(&h), h.lanes[1].oldest_seconds, h.sla_at_risk), ((0, 0), 0.0, 1));
    // Cancelled: a terminal state, counted in the window.
    suite.catalog.cancel_file("ops", large).await.unwrap();
    let h = health(Duration::from_secs(1)).await;
    assert_eq!((files_in(&h, FileState::Cancelled), files_in(&h, FileState::Ingesting)), (1, 1));
}

// An erasure (issue 20) is idempotent and audited; the leader fences it after its commit and it
// settles only once every ingest or merge lease drawn at or below the fence has ended and the
// grace has passed since; the merge units' erasure list is the bucket's erased hashes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_settles_only_after_every_unit_leased_before_its_fence() {
    use memberlake::ids::EmailHash;
    use memberlake::manifest::Buckets;
    let suite = Suite::new().await;
    let leader = suite.leader().await;
    let id = suite.merging_version(&leader, "acme", Utc::now(), 10).await;
    // A merge unit leased before the erasure: it may not have seen it.
    let early = suite.claim("merger", LONG).await.expect("a merge unit");
    assert_eq!(early.lease().stage, WorkStage::Merge);
    let gone = EmailHash::md5([0x80; 16]);
    let first = suite.catalog.request_erasure("ops", gone).await.unwrap();
    assert!(first.created && first.completed_at.is_none());
    let again = suite.catalog.request_erasure("someone-else", gone).await.unwrap();
    assert!(!again.created, "a repeat is the same erasure");
    assert_eq!((again.seq, again.requested_by.as_str()), (first.seq, "ops"));
    let action = suite.last_action().await;
    assert_eq!(
        (action.action.as_str(), action.target.as_str()),
        ("erase", "email_hash:80808080808080808080808080808080")
    );
    assert_eq!(suite.catalog.operator_actions(100).await.unwrap().iter().filter(|a| a.action == "erase").count(), 1);

    // The merge units' list: bucket 1 of 1 bit holds 0x80.., bucket 0 nothing.
    let one = Buckets::new(1).unwrap();
    assert_eq!(suite.catalog.erased_in_bucket(one, 1).await.unwrap(), [gone]);
    assert!(suite.catalog.erased_in_bucket(one, 0).await.unwrap().is_empty());
    assert_eq!(suite.catalog.erasures_since(0).await.unwrap(), [(first.seq, gone)]);
    assert!(suite.catalog.erased_hashes().await.unwrap().contains(&gone));

    // Fenced by the first pass; the early merge unit holds it back, even past the grace.
    let pending = leader.pending_erasures(Duration::ZERO, 10).await.unwrap();
    assert_eq!((pending.len(), pending[0].settled), (1, false), "{pending:?}");
    // A unit leased after the fence does not hold it back.
    let late = suite.claim("merger-2", LONG).await.expect("the other merge unit");
    assert!(early.complete(&merged(5)).await.unwrap());
    let pending = leader.pending_erasures(Duration::ZERO, 10).await.unwrap();
    assert!(pending[0].settled, "only units leased at or below the fence count: {pending:?}");
    // ...but the grace does, counted from the fence.
    assert!(!leader.pending_erasures(LONG, 10).await.unwrap()[0].settled);
    assert!(late.complete(&merged(5)).await.unwrap());
    assert_eq!(settle(&leader).await.activated, [(adv("acme"), id)]);

    leader.record_erasure_pass(gone, 3, false).await.unwrap();
    let e = suite.catalog.erasure(gone).await.unwrap().unwrap();
    assert_eq!((e.passes, e.objects_rewritten, e.completed_at), (1, 3, None));
    leader.record_erasure_pass(gone, 0, true).await.unwrap();
    let e = suite.catalog.erasure(gone).await.unwrap().unwrap();
    assert_eq!((e.passes, e.objects_rewritten), (2, 3));
    assert!(e.completed_at.is_some());
    assert!(leader.pending_erasures(Duration::ZERO, 10).await.unwrap().is_empty());
    assert_eq!(suite.catalog.erasure_backlog().await.unwrap().pending, 0);
    assert!(suite.catalog.erasure(EmailHash::md5([1; 16])).await.unwrap().is_none());
}
