//! The catalog test suite: the control plane's rules (lease fencing, leader-term fencing,
//! settling and forward-only activation, lanes, retirement, operator actions) proven by calling
//! the catalog API in-process, as Quickwit's metastore test suite does.
//!
//! Each test gets a fresh migrated database and reads only through the catalog's public views
//! (`file`, `files`, `file_detail`, `list_files`, `active_versions`, `operator_actions`): no
//! test probes a table. Time passes through short TTLs and sleeps, never through SQL.

use std::future::Future;
use std::time::{Duration, Instant};

use memberlake::catalog::{
    ActiveVersion, Catalog, CatalogError, ClaimPolicy, FileDetail, FileFilter, FileRecord, FileState, GiveBack, Lane,
    Leadership, LeaseGuard, PriorityKnobs, RangeCounts, RangeReport, RangeState, Settled,
};
use memberlake::ids::{AdvertiserId, FileId};
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
/// Effective priority = operator priority; claims then go by (file_id, range_index), so each
/// test knows which range a claim takes.
const KNOBS: PriorityKnobs =
    PriorityKnobs { per_level: 1.0, per_log_weight: 0.0, aging_per_second: 0.0, per_size_doubling: 0.0 };
const MAX_REJECT_RATIO: f64 = 0.1;

/// One test's catalog, on a fresh migrated database.
struct Suite {
    catalog: Catalog,
    url: String,
}

impl Suite {
    async fn new() -> Self {
        let url = fresh_database(&Stack::from_env().database_url).await;
        let catalog = Catalog::connect(&url, 6).await.unwrap();
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
            assert!(guard.complete(&report(rows, 0)).await.unwrap());
            n += 1;
        }
        n
    }

    async fn active_versions(&self) -> Vec<ActiveVersion> {
        let mut v = self.catalog.active_versions().await.unwrap();
        v.sort_by(|a, b| a.advertiser_id.cmp(&b.advertiser_id));
        v
    }

    async fn last_action(&self) -> memberlake::catalog::OperatorAction {
        self.catalog.operator_actions(1).await.unwrap().pop().expect("an audit entry")
    }
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

fn report(rows: u64, rejected: u64) -> RangeReport {
    RangeReport { rows, rejected, samples: Vec::new() }
}

fn counts(queued: i64, leased: i64, done: i64, failed: i64) -> RangeCounts {
    RangeCounts { queued, leased, done, failed }
}

fn version(advertiser: &str, id: FileId) -> ActiveVersion {
    ActiveVersion { advertiser_id: adv(advertiser), version: id.into() }
}

fn after_error(error: &str, max_attempts: i32) -> GiveBack {
    GiveBack::AfterError { error: error.to_owned(), max_attempts }
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
    assert_eq!(leader.split_registered_files(1000, 10).await.unwrap(), (1, 3));
    assert_eq!(suite.file(id).await.state, FileState::Ingesting);

    let ttl = Duration::from_millis(1500);
    let guard = suite.claim("w1", ttl).await.expect("a queued range");
    let lease = guard.lease().clone();
    assert_eq!((lease.file_id, lease.range_index, lease.attempt), (id, 0, 1));
    assert_eq!((lease.range.start, lease.range.end, lease.object_size), (0, 1000, 3000));
    assert_eq!((lease.bucket.as_str(), lease.advertiser_id.as_str()), (LAKE, "acme"));

    // Twice the TTL later the heartbeat has kept the lease: the reaper finds nothing expired.
    tokio::time::sleep(ttl * 2).await;
    assert_eq!(leader.reap_expired_leases(5).await.unwrap(), (0, 0));
    assert_eq!(suite.ranges(id).await, counts(2, 1, 0, 0));
    assert!(!guard.lost().is_cancelled(), "the heartbeat keeps the lease");

    let samples =
        vec![memberlake::catalog::RejectionSample { offset: 17, reason: memberlake::records::RejectReason::MissingAt }];
    assert!(guard.complete(&RangeReport { rows: 40, rejected: 1, samples: samples.clone() }).await.unwrap());
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
}

// 3. Stale tokens: a lapsed, reaped and re-leased lease records nothing.
#[test]
fn a_stale_lease_token_changes_nothing() {
    let main = main_runtime();
    let suite = main.block_on(Suite::new());
    let stalled = StalledWorker::connect(&suite.url);
    let (leader, id) = main.block_on(async {
        let id = suite.register("acme", 3000).await;
        let leader = suite.leader().await;
        assert_eq!(leader.split_registered_files(1000, 10).await.unwrap(), (1, 3));
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

        // w2's leases are live and complete.
        for g in fresh {
            assert!(!g.lost().is_cancelled());
            assert!(g.complete(&report(10, 0)).await.unwrap());
        }
        let f = suite.file(id).await;
        assert_eq!((f.ranges_done, f.rows_ingested), (3, 30));
        let settled = leader.settle_files(MAX_REJECT_RATIO).await.unwrap();
        assert_eq!(settled.activated, [(adv("acme"), id)]);
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
    leader.split_registered_files(1000, 10).await.unwrap();
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
    assert_eq!((e.range_index, e.attempts), (0, 1));
    assert_eq!(e.error, "lease expired: worker w1 stopped heartbeating");
    assert_eq!(suite.file(id).await.state, FileState::Ingesting);

    // Its second and last attempt dies too: the range fails.
    let g = suite.claim("w2", SHORT).await.unwrap();
    assert_eq!((g.lease().range_index, g.lease().attempt), (0, 2));
    drop(g);
    assert_eq!(reap(&leader, max_attempts, 1).await, (0, 1));
    assert_eq!(suite.ranges(id).await, counts(2, 0, 0, 1));

    // Settling fails the file, naming the range; its other ranges are no longer claimable.
    let settled = leader.settle_files(MAX_REJECT_RATIO).await.unwrap();
    assert!(settled.activated.is_empty() && settled.superseded.is_empty());
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
    assert_eq!(leader.settle_files(MAX_REJECT_RATIO).await.unwrap(), Settled::default(), "settled once");
    assert!(suite.active_versions().await.is_empty());
}

// 5. give_back: after an error the attempt counts; at shutdown it is handed back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn giving_back_counts_attempts_after_errors_but_not_at_shutdown() {
    let suite = Suite::new().await;
    let id = suite.register("acme", 3000).await;
    let leader = suite.leader().await;
    leader.split_registered_files(1000, 10).await.unwrap();

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

    let settled = leader.settle_files(MAX_REJECT_RATIO).await.unwrap();
    assert_eq!(settled.failed.len(), 1);
    assert!(settled.failed[0].1.starts_with("range 0 failed after 2 attempts: store timed out again"));
    assert_eq!(suite.file(id).await.state, FileState::Failed);
}

// 6. Settling: ingest and activate, forward only; too many rejects fail the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settling_ingests_complete_files_and_activates_forward_only() {
    let suite = Suite::new().await;
    let leader = suite.leader().await;
    let mut activations = suite.catalog.listen_activations().await.unwrap();
    let t0 = Utc::now() - Duration::from_secs(3600);
    let minutes = |m: u64| t0 + Duration::from_secs(60 * m);

    // A three-range file is settled only once all its ranges are done.
    let whole = suite.register_object(LAKE, &object("acme", 3000, minutes(0))).await;
    leader.split_registered_files(1000, 10).await.unwrap();
    for _ in 0..2 {
        assert!(suite.claim("w", LONG).await.unwrap().complete(&report(10, 0)).await.unwrap());
    }
    assert_eq!(leader.settle_files(MAX_REJECT_RATIO).await.unwrap(), Settled::default(), "a range is left");
    assert_eq!(suite.file(whole).await.state, FileState::Ingesting);
    assert!(suite.claim("w", LONG).await.unwrap().complete(&report(10, 1)).await.unwrap());
    let settled = leader.settle_files(MAX_REJECT_RATIO).await.unwrap();
    assert_eq!(settled, Settled { activated: vec![(adv("acme"), whole)], ..Default::default() });
    let f = suite.file(whole).await;
    assert_eq!((f.state, f.active, f.rows_ingested, f.rows_rejected), (FileState::Ingested, true, 30, 1));
    assert!(f.finished_at.is_some());
    let note = tokio::time::timeout(Duration::from_secs(5), activations.recv()).await.expect("notified").unwrap();
    assert_eq!(note.payload(), format!("acme:{whole}"));

    // Three later versions, one range each, finishing out of order: v3, then v2.
    let v2 = suite.register_object(LAKE, &object("acme", 500, minutes(2))).await;
    let v3 = suite.register_object(LAKE, &object("acme", 500, minutes(3))).await;
    leader.split_registered_files(1000, 10).await.unwrap();
    let g2 = suite.claim("w", LONG).await.unwrap();
    let g3 = suite.claim("w", LONG).await.unwrap();
    assert_eq!((g2.lease().file_id, g3.lease().file_id), (v2, v3));
    assert!(g3.complete(&report(5, 0)).await.unwrap());
    let settled = leader.settle_files(MAX_REJECT_RATIO).await.unwrap();
    assert_eq!(settled, Settled { activated: vec![(adv("acme"), v3)], ..Default::default() });
    assert!(g2.complete(&report(5, 0)).await.unwrap());
    let settled = leader.settle_files(MAX_REJECT_RATIO).await.unwrap();
    assert_eq!(settled, Settled { superseded: vec![v2], ..Default::default() });
    let (f2, f3, f1) = (suite.file(v2).await, suite.file(v3).await, suite.file(whole).await);
    assert_eq!((f2.state, f2.active), (FileState::Ingested, false), "the older version is superseded");
    assert_eq!((f3.state, f3.active), (FileState::Ingested, true));
    assert!(!f1.active);
    assert_eq!(suite.active_versions().await, [version("acme", v3)]);
    let note = tokio::time::timeout(Duration::from_secs(5), activations.recv()).await.expect("notified").unwrap();
    assert_eq!(note.payload(), format!("acme:{v3}"), "the superseded version is not notified");

    // Too many rejected rows fail a file (11 of 100 > 10%); exactly at the limit passes.
    let bad = suite.register_object(LAKE, &object("beta", 500, minutes(0))).await;
    let fine = suite.register_object(LAKE, &object("gamma", 500, minutes(0))).await;
    leader.split_registered_files(1000, 10).await.unwrap();
    assert!(suite.claim("w", LONG).await.unwrap().complete(&report(89, 11)).await.unwrap());
    assert!(suite.claim("w", LONG).await.unwrap().complete(&report(90, 10)).await.unwrap());
    let settled = leader.settle_files(MAX_REJECT_RATIO).await.unwrap();
    assert_eq!(settled.activated, [(adv("gamma"), fine)]);
    assert_eq!(settled.failed.len(), 1);
    assert_eq!(settled.failed[0].0, bad);
    assert!(settled.failed[0].1.starts_with("too many rejected rows: 11 of 100"), "{}", settled.failed[0].1);
    let f = suite.file(bad).await;
    assert_eq!((f.state, f.active), (FileState::Failed, false));
    assert_eq!(f.failure_reason.as_deref(), Some(settled.failed[0].1.as_str()));
    assert_eq!(suite.active_versions().await, [version("acme", v3), version("gamma", fine)]);
}

// 7. A permanent error or an operator's cancel ends the file and revokes its other leases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_or_cancelling_a_file_revokes_its_leases() {
    let suite = Suite::new().await;
    let leader = suite.leader().await;
    let ttl = Duration::from_millis(600);

    let failed = suite.register("acme", 3000).await;
    leader.split_registered_files(1000, 10).await.unwrap();
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
    assert_eq!(leader.settle_files(MAX_REJECT_RATIO).await.unwrap(), Settled::default());

    let cancelled = suite.register("acme", 3000).await;
    leader.split_registered_files(1000, 10).await.unwrap();
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
    assert_eq!(leader.settle_files(MAX_REJECT_RATIO).await.unwrap(), Settled::default());
    assert!(suite.active_versions().await.is_empty());
}

/// A file of three ranges whose ranges 0 and 1 are done (10 rows each) and whose range 2 failed
/// for good, settled as failed.
async fn failed_file_with_two_done_ranges(suite: &Suite, leader: &Leadership) -> FileId {
    let id = suite.register("acme", 3000).await;
    leader.split_registered_files(1000, 10).await.unwrap();
    for _ in 0..2 {
        assert!(suite.claim("w", LONG).await.unwrap().complete(&report(10, 0)).await.unwrap());
    }
    let g = suite.claim("w", LONG).await.unwrap();
    assert_eq!(g.give_back(after_error("store unavailable", 1)).await.unwrap(), Some(RangeState::Failed));
    let settled = leader.settle_files(MAX_REJECT_RATIO).await.unwrap();
    assert_eq!(settled.failed.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [id]);
    let f = suite.file(id).await;
    assert_eq!((f.state, f.ranges_done, f.rows_ingested), (FileState::Failed, 2, 20));
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

// 8. Retry vs retire: a retry is refused while a retirement pass is deleting the file's rows;
// after the pass, a retry redoes every range (the done ranges' rows are gone too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_during_a_retirement_pass_is_refused_then_redoes_every_range() {
    let suite = Suite::new().await;
    let leader = suite.leader().await;
    let grace = Duration::from_secs(1);
    let settled_at = Instant::now();
    let id = failed_file_with_two_done_ranges(&suite, &leader).await;
    let early = leader.begin_retirement(grace).await.unwrap();
    if settled_at.elapsed() < grace {
        assert!(early.is_empty(), "retirable before the grace: {early:?}");
    }

    // The pass takes the file (and would now delete its rows from the store)...
    let taken = begin_pass_with(&leader, id, grace).await;
    assert_eq!(taken, [(id, adv("acme"))]);
    // ...an operator's retry is refused meanwhile, and changes nothing...
    let err = suite.catalog.retry_file("bob", id).await.unwrap_err();
    assert!(matches!(&err, CatalogError::Conflict(m) if m.contains("being retired")), "{err:?}");
    let f = suite.file(id).await;
    assert_eq!((f.state, f.ranges_done, f.retired_at), (FileState::Failed, 2, None));
    assert!(suite.claim("w", LONG).await.is_none());
    // ...until the pass records it retired.
    leader.finish_retirement(&[id]).await.unwrap();
    let f = suite.file(id).await;
    assert_eq!(f.state, FileState::Failed);
    assert!(f.retired_at.is_some());

    // A retry now redoes every range: the rows of the done ones were deleted too.
    let (f, requeued) = suite.catalog.retry_file("bob", id).await.unwrap();
    assert_eq!(requeued, 3);
    assert_eq!((f.state, f.failure_reason, f.finished_at, f.retired_at), (FileState::Ingesting, None, None, None));
    assert_eq!((f.ranges_done, f.rows_ingested, f.rows_rejected), (0, 0, 0));
    assert_eq!(suite.ranges(id).await, counts(3, 0, 0, 0));
    let action = suite.last_action().await;
    assert_eq!(
        (action.actor.as_str(), action.action.as_str(), &action.details),
        ("bob", "retry", &json!({"ranges": 3, "rows_retired": true}))
    );
    assert!(leader.begin_retirement(Duration::ZERO).await.unwrap().is_empty(), "an ingesting file is not retirable");

    // It completes and activates with every range redone.
    let mut redone = Vec::new();
    while let Some(g) = suite.claim("w", LONG).await {
        redone.push((g.lease().range_index, g.lease().attempt));
        assert!(g.complete(&report(10, 0)).await.unwrap());
    }
    assert_eq!(redone, [(0, 1), (1, 1), (2, 1)]);
    let settled = leader.settle_files(MAX_REJECT_RATIO).await.unwrap();
    assert_eq!(settled.activated, [(adv("acme"), id)]);
    let f = suite.file(id).await;
    assert_eq!((f.state, f.active, f.rows_ingested, f.retired_at), (FileState::Ingested, true, 30, None));
}

// A retry before any pass took the file keeps its done ranges (their rows are still there), and
// the reopened file is no longer retirable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_before_retirement_requeues_only_failed_ranges() {
    let suite = Suite::new().await;
    let leader = suite.leader().await;
    let id = failed_file_with_two_done_ranges(&suite, &leader).await;
    let (f, requeued) = suite.catalog.retry_file("bob", id).await.unwrap();
    assert_eq!((requeued, f.state, f.ranges_done, f.rows_ingested), (1, FileState::Ingesting, 2, 20));
    assert_eq!(suite.ranges(id).await, counts(1, 0, 2, 0));
    assert!(leader.begin_retirement(Duration::ZERO).await.unwrap().is_empty());
    let g = suite.claim("w", LONG).await.unwrap();
    assert_eq!((g.lease().range_index, g.lease().attempt), (2, 1));
    assert!(g.complete(&report(10, 0)).await.unwrap());
    let settled = leader.settle_files(MAX_REJECT_RATIO).await.unwrap();
    assert_eq!(settled.activated, [(adv("acme"), id)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retirement_without_a_retry_marks_the_file_retired() {
    let suite = Suite::new().await;
    let leader = suite.leader().await;
    let id = failed_file_with_two_done_ranges(&suite, &leader).await;
    begin_pass_with(&leader, id, Duration::from_millis(200)).await;
    leader.finish_retirement(&[id]).await.unwrap();
    let f = suite.file(id).await;
    assert_eq!((f.state, f.ranges_done), (FileState::Failed, 2));
    assert!(f.retired_at.is_some());
    assert!(leader.begin_retirement(Duration::ZERO).await.unwrap().is_empty(), "retired once");
}

// A pass that died is taken again by the next one; a version no pass took is never recorded
// retired (an active one in particular).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_pass_is_taken_again_and_untaken_versions_are_never_marked() {
    let suite = Suite::new().await;
    let leader = suite.leader().await;
    let failed = failed_file_with_two_done_ranges(&suite, &leader).await;
    begin_pass_with(&leader, failed, Duration::ZERO).await;
    // The pass dies before finishing; the next one takes the same file again.
    assert_eq!(leader.begin_retirement(Duration::ZERO).await.unwrap(), [(failed, adv("acme"))]);

    let active = suite.register("globex", 1000).await;
    leader.split_registered_files(1000, 10).await.unwrap();
    assert!(suite.claim("w", LONG).await.unwrap().complete(&report(5, 0)).await.unwrap());
    assert_eq!(leader.settle_files(MAX_REJECT_RATIO).await.unwrap().activated, [(adv("globex"), active)]);
    leader.finish_retirement(&[failed, active]).await.unwrap();
    assert!(suite.file(failed).await.retired_at.is_some());
    let a = suite.file(active).await;
    assert!(a.active && a.retired_at.is_none(), "{a:?}");
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
    // retire), then X (registered, to split).
    let s = suite.register("acme", 500).await;
    let r = suite.register("beta", 500).await;
    let f = suite.register("gamma", 500).await;
    assert_eq!(a.split_registered_files(1000, 10).await.unwrap(), (3, 3));
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
    assert_not_leader(a.split_registered_files(1000, 10).await, a.term(), "split");
    assert_not_leader(a.reap_expired_leases(5).await, a.term(), "reap");
    assert_not_leader(a.settle_files(MAX_REJECT_RATIO).await, a.term(), "settle");
    assert_not_leader(a.begin_retirement(Duration::ZERO).await, a.term(), "begin_retirement");
    assert_not_leader(a.finish_retirement(&[f]).await, a.term(), "finish_retirement");
    assert!(cat.acquire_leadership(ROLE, "a", LONG, Some(&a)).await.unwrap().is_none(), "a cannot renew");
    assert_eq!((suite.file(x).await.state, suite.file(x).await.ranges_total), (FileState::Registered, 0));
    assert_eq!(suite.ranges(r).await, counts(0, 1, 0, 0), "the expired lease is not reaped");
    assert_eq!(suite.file(s).await.state, FileState::Ingesting);
    assert!(suite.active_versions().await.is_empty());
    assert_eq!(suite.file(f).await.retired_at, None);

    // b's succeed.
    assert_eq!(b.split_registered_files(1000, 10).await.unwrap(), (1, 3));
    assert_eq!(b.reap_expired_leases(5).await.unwrap(), (1, 0));
    assert_eq!(suite.ranges(r).await, counts(1, 0, 0, 0));
    let settled = b.settle_files(MAX_REJECT_RATIO).await.unwrap();
    assert_eq!(settled, Settled { activated: vec![(adv("acme"), s)], ..Default::default() });
    assert!(b.begin_retirement(Duration::ZERO).await.unwrap().iter().any(|(id, _)| *id == f));
    b.finish_retirement(&[f]).await.unwrap();
    assert!(suite.file(f).await.retired_at.is_some());
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
    leader.split_registered_files(1000, 10).await.unwrap();
    assert!(claim("wrong", bulk("lake-b")).await.is_none(), "a file of lake-a claimed from lake-b");
    assert_eq!(suite.ranges(a).await, counts(2, 0, 0, 0));
    let g = claim("right", bulk("lake-a")).await.unwrap();
    assert_eq!((g.lease().file_id, g.lease().bucket.as_str()), (a, "lake-a"));

    // Express lane (files <= 1500 bytes or priority >= 10): small files only, until the large
    // one is made urgent; the bulk lane takes any.
    let express = ClaimPolicy { lane: Lane::express(1500, 10), ..bulk("lanes") };
    let large = suite.register_object("lanes", &object("acme", 5000, Utc::now())).await;
    let small = suite.register_object("lanes", &object("beta", 1000, Utc::now())).await;
    leader.split_registered_files(1000, 10).await.unwrap();
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
    leader.split_registered_files(1000, 10).await.unwrap();
    let g0 = claim("c", capped.clone()).await.unwrap();
    let _g1 = claim("c", capped.clone()).await.unwrap();
    assert!(claim("c", capped.clone()).await.is_none(), "a third lease of a capped file");
    assert_eq!(suite.ranges(big).await, counts(3, 2, 0, 0));
    assert!(claim("c", bulk("capped")).await.is_some(), "an uncapped slot may take it");
    assert!(g0.complete(&report(1, 0)).await.unwrap());
    assert!(claim("c", capped.clone()).await.is_none(), "still two leases");

    // Paused files are not claimed; leases in flight keep going; resumed, they are.
    let paused = suite.register_object("paused", &object("acme", 3000, Utc::now())).await;
    leader.split_registered_files(1000, 10).await.unwrap();
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
    leader.split_registered_files(1000, 10).await.unwrap();
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

    let four = suite.register("acme", 4000).await;
    let done = suite.register("acme", 500).await;
    leader.split_registered_files(1000, 10).await.unwrap();
    let registered = suite.register("beta", 500).await;

    // file_detail counts a file's ranges by state: done, failed, leased, queued.
    assert!(suite.claim("w", LONG).await.unwrap().complete(&report(7, 0)).await.unwrap());
    let g = suite.claim("w", LONG).await.unwrap();
    assert_eq!(g.give_back(after_error("boom", 1)).await.unwrap(), Some(RangeState::Failed));
    let _leased = suite.claim("w", LONG).await.unwrap();
    let d = suite.detail(four).await;
    assert_eq!(d.ranges, counts(1, 1, 1, 1));
    assert_eq!((d.file.ranges_total, d.file.ranges_done, d.file.rows_ingested), (4, 1, 7));
    assert_eq!(d.last_errors.iter().map(|e| (e.range_index, e.attempts)).collect::<Vec<_>>(), [(1, 1)]);
    assert_eq!(suite.ranges(registered).await, counts(0, 0, 0, 0));

    // `four` fails (its range 1 did) and `done` is ingested and active.
    cat.set_paused("ops", four, true).await.unwrap();
    assert_eq!(suite.complete_all(3).await, 1);
    let settled = leader.settle_files(MAX_REJECT_RATIO).await.unwrap();
    assert_eq!(settled.activated, [(adv("acme"), done)]);
    assert_eq!(settled.failed.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [four]);

    // list_files filters by state and advertiser, newest first.
    let list = |state: Option<FileState>, advertiser: Option<&str>, limit: i64| {
        let filter = FileFilter { state, advertiser_id: advertiser.map(adv), limit };
        async move { cat.list_files(&filter).await.unwrap().iter().map(|f| f.file_id).collect::<Vec<_>>() }
    };
    assert_eq!(list(None, None, 0).await, [registered, done, four]);
    assert_eq!(list(None, None, 2).await, [registered, done]);
    assert_eq!(list(None, Some("acme"), 0).await, [done, four]);
    assert_eq!(list(Some(FileState::Ingested), None, 0).await, [done]);
    assert_eq!(list(Some(FileState::Failed), Some("acme"), 0).await, [four]);
    assert_eq!(list(Some(FileState::Registered), None, 0).await, [registered]);
    assert!(list(Some(FileState::Failed), Some("beta"), 0).await.is_empty());
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
    assert!(matches!(cat.set_weight("ops", &adv("beta"), 0.0).await, Err(CatalogError::Invalid(_))));
    assert!(matches!(cat.set_weight("ops", &adv("beta"), f64::NAN).await, Err(CatalogError::Invalid(_))));
    let unknown = FileId(i64::MAX);
    assert_not_found(cat.set_priority("ops", unknown, 1).await, "set_priority");
    assert_not_found(cat.set_paused("ops", unknown, true).await, "set_paused");
    assert_not_found(cat.cancel_file("ops", unknown).await, "cancel_file");
    assert_not_found(cat.retry_file("ops", unknown).await, "retry_file");
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
