//! Faults around the stages of a change-proportional list version (`docs/versions.md`), with
//! real processes: the splitter leader killed between stages and mid-merge, a newer upload and
//! an operator's cancel while a version is mid-diff, a worker killed inside a merge unit of a
//! second version. Every test ends with an exact check: every member present and every
//! non-member absent at the active version (in the store and through the matcher), and the
//! exact rows left in the store, by version.
//!
//! The pipeline is stopped at a stage boundary by row locks the test holds in Postgres (the
//! splitter's lease row, or a version's queued merge units), never by timing: each stage is
//! observed in the catalog before the fault is injected.

use std::collections::HashMap;
use std::time::Duration;

use memberlake::catalog::{FileRecord, FileState, LeaderInfo};
use memberlake::ids::{EmailHash, FileId};
use memberlake_tests::*;

const FINISH: Duration = Duration::from_secs(240);

/// Hashes per bucket: with the lists below (~170 KB) a version has 64 buckets.
const BUCKET_TARGET: &str = "256";

/// A deliberately slow merge: one claim loop, single-row writes, one in flight.
const SLOW_WRITES: [(&str, &str); 3] =
    [("MEMBERLAKE_WORKER_LANES", "bulk"), ("MEMBERLAKE_WRITE_BATCH_ROWS", "1"), ("MEMBERLAKE_WRITE_CONCURRENCY", "1")];

/// v1: 6,000 members.
fn v1_members() -> Vec<String> {
    emails(0, 6_000)
}

/// v2: v1 without its first 1,500 members, plus 1,500 new ones (3,000 changed rows).
fn v2_members() -> Vec<String> {
    emails(1_500, 4_500).into_iter().chain(emails(100_000, 1_500)).collect()
}

/// Rows by (advertiser, since_version, present), as `TestWorld::count_rows_by_version` counts.
fn rows(expected: &[(FileId, bool, u64)]) -> HashMap<(String, i64, bool), u64> {
    expected.iter().map(|(v, present, n)| (("acme".to_owned(), v.0, *present), *n)).collect()
}

fn rows_of(counts: &HashMap<(String, i64, bool), u64>, version: FileId) -> u64 {
    counts.iter().filter(|((_, since, _), _)| *since == version.0).map(|(_, n)| n).sum()
}

struct Services {
    _meta: Service,
    splitters: Vec<Service>,
    _matcher: Service,
    url: String,
}

/// meta-service, `splitters` splitters (64 KiB ranges, 64 buckets a version, plus `extra`) and a
/// matcher; no worker yet.
async fn start(world: &TestWorld, splitters: usize, extra: &[(&str, &str)]) -> Services {
    let meta =
        world.spawn("meta-service", "meta-a", &[("MEMBERLAKE_ADMIN_ADDR", &format!("127.0.0.1:{}", free_port()))]);
    let mut env = vec![("MEMBERLAKE_RANGE_SIZE", "64KiB"), ("MEMBERLAKE_BUCKET_TARGET", BUCKET_TARGET)];
    env.extend_from_slice(extra);
    let names = ["splitter-a", "splitter-b", "splitter-c"];
    let splitters = names[..splitters].iter().map(|name| world.spawn("splitter", name, &env)).collect();
    let (matcher, url) = world.start_matcher(&[]).await;
    Services { _meta: meta, splitters, _matcher: matcher, url }
}

/// Ingests and activates v1 with a worker of its own, which then exits: no worker runs when
/// the next version is uploaded.
async fn activate_v1(world: &TestWorld, members: &[String]) -> FileRecord {
    let mut worker = world.spawn("compute-worker", "worker-v1", &[]);
    let key = world.upload("acme", "v1.csv", list(members)).await;
    let v1 = world.wait_finished(&key, FINISH).await;
    assert_eq!(v1.state, FileState::Ingested, "{v1:?}");
    assert!(v1.active);
    assert!(worker.terminate().await.success(), "worker-v1 exits cleanly");
    v1
}

/// kill -9 of the current splitter leader (one of `splitters`); returns who it was.
async fn kill_leader(world: &TestWorld, splitters: &mut [Service], leader: Option<LeaderInfo>) -> LeaderInfo {
    let leader = match leader {
        Some(l) => l,
        None => {
            wait_for(Duration::from_secs(60), "a splitter leader", || async {
                world.catalog.leader("splitter").await.unwrap()
            })
            .await
        }
    };
    let s = splitters.iter_mut().find(|s| s.name == leader.holder).expect("the leader is one of this test's splitters");
    assert!(s.child.is_some(), "the leader {} is alive", leader.holder);
    s.kill9().await;
    leader
}

async fn wait_retired(world: &TestWorld, file: FileId, what: &str) -> FileRecord {
    wait_for(FINISH, what, || async { Some(world.file(file).await).filter(|f| f.retired_at.is_some()) }).await
}

async fn wait_state(world: &TestWorld, file: FileId, state: FileState) -> FileRecord {
    wait_for(FINISH, &format!("file {file} {state}"), || async {
        Some(world.file(file).await).filter(|f| f.state == state)
    })
    .await
}

/// Releases `gate` once something waits for it (the leader's revocation of the held units),
/// so that the revocation follows at once, with no merge progress in between.
async fn release_when_waited_on(world: &TestWorld, gate: RowLocks, what: &str) {
    wait_for(FINISH, what, || async { (!gate.waiters(&world.catalog).await.is_empty()).then_some(()) }).await;
    gate.release().await;
}

/// An operator's cancel of `file` on a connection of its own, started at once; returns when
/// that cancel waits for `locks` (its revocation of the held units), having released them.
async fn cancel_through(world: &TestWorld, file: FileId, locks: RowLocks) -> FileRecord {
    let operator = memberlake::catalog::Catalog::connect(&world.database_url, 1).await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(operator.pool()).await.unwrap();
    let cancel = tokio::spawn(async move { operator.cancel_file("ops", file).await });
    wait_for(FINISH, "the cancel to wait for the held units", || async {
        locks.waiters(&world.catalog).await.contains(&pid).then_some(())
    })
    .await;
    locks.release().await;
    let cancelled =
        cancel.await.unwrap().unwrap_or_else(|e| panic!("the operator's cancel of file {file} failed: {e}"));
    assert_eq!(cancelled.state, FileState::Cancelled, "{cancelled:?}");
    cancelled
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_splitter_leader_killed_between_stages_and_mid_merge_is_replaced() {
    let world = TestWorld::new().await;
    let mut services = start(&world, 3, &[]).await;
    let (v1_members, v2_members) = (v1_members(), v2_members());
    let v1 = activate_v1(&world, &v1_members).await;
    let key2 = world.upload("acme", "v2.csv", list(&v2_members)).await;

    // Between stages: v2's ingest units are done, its merge stage not started; the leader dies.
    let (v2, hold, leader) = world.ingested_not_merging(&key2).await;
    let first = kill_leader(&world, &mut services.splitters, Some(leader)).await;
    hold.release().await;

    // A standby takes over and starts the merge stage; half the buckets merge, and the new
    // leader dies while v2 is mid-diff.
    let (_worker, gate, merging) = world.mid_diff(v2.file_id, 32, "worker-merge", &[]).await;
    let second = kill_leader(&world, &mut services.splitters, None).await;
    assert_ne!(second.holder, first.holder);
    assert!(second.term > first.term, "{first:?} then {second:?}");
    assert_eq!(merging.version.base_version, Some(v1.file_id));
    gate.release().await;

    // The last standby takes over: the rest merges and v2 activates.
    let v2 = world.wait_finished(&key2, FINISH).await;
    assert_eq!(v2.state, FileState::Ingested, "{v2:?}");
    assert!(v2.active);
    let third = world.catalog.leader("splitter").await.unwrap().expect("a leader");
    assert!(third.holder != first.holder && third.holder != second.holder, "{third:?}");
    assert!(third.term > second.term);
    assert_eq!(v2.version.base_version, Some(v1.file_id));
    assert_eq!((v2.version.members, v2.version.added, v2.version.removed), (Some(6_000), 1_500, 1_500));
    assert_eq!(v2.version.rows_written, 3_000, "{v2:?}");

    // v1 is retired from what changed: the 1,500 removed members' rows.
    let v1 = wait_retired(&world, v1.file_id, "v1 retired").await;
    assert_eq!(v1.version.superseded_by, Some(v2.file_id));
    assert_eq!(v1.version.rows_deleted, 1_500);
    assert_eq!(world.count_rows_by_version().await, rows(&[(v1.file_id, true, 4_500), (v2.file_id, true, 1_500)]));
    let removed = hashes(&v1_members[..1_500]);
    assert_exact_answers(&world, &services.url, "acme", v2.file_id, &hashes(&v2_members), &removed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_upload_mid_diff_wins_and_the_superseded_version_is_undone() {
    let world = TestWorld::new().await;
    let services = start(&world, 1, &[]).await;
    let (v1_members, v2_members) = (v1_members(), v2_members());
    let v1 = activate_v1(&world, &v1_members).await;
    let key2 = world.upload("acme", "v2.csv", list(&v2_members)).await;
    let (v2, hold, _) = world.ingested_not_merging(&key2).await;
    hold.release().await;

    // v2 mid-diff: 16 of its 64 buckets merged, their rows (and only theirs) in the store.
    let (_worker, gate, v2) = world.mid_diff(v2.file_id, 16, "worker-slow", &SLOW_WRITES).await;
    let written = v2.version.rows_written as u64;
    assert!(written > 0, "{v2:?}");
    assert_eq!(rows_of(&world.count_rows_by_version().await, v2.file_id), written);

    // v3 arrives (v1 without its first 500, plus 500 new). The leader supersedes v2: its
    // revocation of v2's units waits for the held ones, so nothing merges in between.
    let v3_members: Vec<String> = emails(500, 5_500).into_iter().chain(emails(200_000, 500)).collect();
    let key3 = world.upload("acme", "v3.csv", list(&v3_members)).await;
    wait_for(FINISH, "v3 registered", || async { world.file_by_key(&key3).await }).await;
    release_when_waited_on(&world, gate, "the leader to supersede v2").await;
    let cancelled = wait_state(&world, v2.file_id, FileState::Cancelled).await;
    assert!(cancelled.failure_reason.as_deref().unwrap_or("").contains("superseded"), "{cancelled:?}");
    assert!(cancelled.version.buckets_done < 1 << cancelled.version.bucket_bits.unwrap(), "mid-diff: {cancelled:?}");

    // v3 wins, diffed against v1 (v2 never activated), once v2's rows are undone.
    let v3 = world.wait_finished(&key3, FINISH).await;
    assert_eq!(v3.state, FileState::Ingested, "{v3:?}");
    assert!(v3.active);
    assert_eq!(v3.version.base_version, Some(v1.file_id));
    assert_eq!((v3.version.members, v3.version.added, v3.version.removed), (Some(6_000), 500, 500));
    assert_eq!(v3.version.rows_written, 1_000);
    let v2 = wait_retired(&world, v2.file_id, "v2 undone").await;
    assert_eq!(v2.version.activated_at, None);
    assert!(v2.retired_at <= v3.version.activated_at, "v3 activated before v2 was undone: {v2:?} {v3:?}");
    assert!(v2.version.rows_deleted as u64 >= written, "{v2:?}");

    // No row of v2 left; v1 retired from what v3 changed.
    let v1 = wait_retired(&world, v1.file_id, "v1 retired").await;
    assert_eq!(v1.version.superseded_by, Some(v3.file_id));
    assert_eq!(v1.version.rows_deleted, 500);
    let counts = world.count_rows_by_version().await;
    assert_eq!(rows_of(&counts, v2.file_id), 0, "rows of the superseded v2 left behind");
    assert_eq!(counts, rows(&[(v1.file_id, true, 5_500), (v3.file_id, true, 500)]));
    let others: Vec<EmailHash> =
        hashes(&v1_members[..500]).into_iter().chain(hashes(&emails(100_000, 1_500))).collect();
    assert_exact_answers(&world, &services.url, "acme", v3.file_id, &hashes(&v3_members), &others).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_cancelled_mid_diff_is_undone_and_the_active_one_answers_exactly() {
    let world = TestWorld::new().await;
    let services = start(&world, 1, &[]).await;
    let (v1_members, v2_members) = (v1_members(), v2_members());
    let v1 = activate_v1(&world, &v1_members).await;
    let key2 = world.upload("acme", "v2.csv", list(&v2_members)).await;
    let (v2, hold, _) = world.ingested_not_merging(&key2).await;
    hold.release().await;
    let (_worker, gate, v2) = world.mid_diff(v2.file_id, 16, "worker-slow", &SLOW_WRITES).await;
    let written = v2.version.rows_written as u64;
    assert!(written > 0, "{v2:?}");

    // The operator cancels v2; the revocation of its units waits for the held ones.
    let cancelled = cancel_through(&world, v2.file_id, gate).await;
    assert!(cancelled.version.buckets_done < 1 << cancelled.version.bucket_bits.unwrap(), "mid-diff: {cancelled:?}");

    // v1 answers exactly, with v2's rows still in the store and once they are undone.
    let added = hashes(&emails(100_000, 1_500));
    assert_exact_answers(&world, &services.url, "acme", v1.file_id, &hashes(&v1_members), &added).await;
    let v2 = wait_retired(&world, v2.file_id, "v2 undone").await;
    assert!(v2.version.rows_deleted as u64 >= written, "{v2:?}");
    assert_eq!(v2.version.activated_at, None);
    assert!(world.file(v1.file_id).await.active);
    assert_eq!(world.count_rows_by_version().await, rows(&[(v1.file_id, true, 6_000)]), "no row of v2 left");
    assert_exact_answers(&world, &services.url, "acme", v1.file_id, &hashes(&v1_members), &added).await;
    let actions = world.catalog.operator_actions(10).await.unwrap();
    assert!(actions.iter().any(|a| a.action == "cancel" && a.actor == "ops"), "audited: {actions:?}");
}

/// Merge-unit completions (`complete_bucket.sql`) waiting for `locks`.
async fn completions_waiting(world: &TestWorld, locks: &RowLocks) -> usize {
    let waiters = locks.waiters(&world.catalog).await;
    let completing: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE pid = ANY($1) AND query LIKE '%buckets_done = f.buckets_done + 1%'",
    )
    .bind(&waiters)
    .fetch_all(world.catalog.pool())
    .await
    .unwrap();
    completing.len()
}

/// A merge unit's state, as text.
async fn unit_state(world: &TestWorld, file: FileId, bucket: i32) -> String {
    sqlx::query_scalar("SELECT state::text FROM ranges WHERE file_id = $1 AND stage = 'merge' AND range_index = $2")
        .bind(file)
        .bind(bucket)
        .fetch_one(world.catalog.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_unit_writing_when_its_version_is_cancelled_stops_and_its_rows_are_undone() {
    let world = TestWorld::new().await;
    // 16 buckets of ~190 changed rows: a unit writes for a while.
    let services = start(&world, 1, &[("MEMBERLAKE_BUCKET_TARGET", "1024")]).await;
    let (v1_members, v2_members) = (v1_members(), v2_members());
    let v1 = activate_v1(&world, &v1_members).await;
    let key2 = world.upload("acme", "v2.csv", list(&v2_members)).await;
    let (v2, hold, _) = world.ingested_not_merging(&key2).await;
    hold.release().await;
    wait_state(&world, v2.file_id, FileState::Merging).await;

    // Once a bucket is merged, the test holds the unit the slow worker is writing (it cannot be
    // recorded done) until some of its rows are in the store, and freezes the worker (SIGSTOP)
    // before it has asked to record the unit done — if it already had, the next unit is taken.
    // The operator then cancels v2: the revocation waits for the held unit, so the unit is in
    // flight when the cancel decides; the worker resumes at once.
    let mut worker = world.spawn("compute-worker", "worker-revoked", &SLOW_WRITES);
    let (unit_lock, unit) = loop {
        let (unit_lock, unit) = wait_for(FINISH, "worker-revoked inside a merge unit, past the first", || async {
            if world.file(v2.file_id).await.version.buckets_done < 1 {
                return None;
            }
            world.hold_leased_merge_unit(v2.file_id, "worker-revoked").await
        })
        .await;
        wait_for(FINISH, "rows of the held unit in the store", || async {
            let recorded = world.file(v2.file_id).await.version.rows_written as u64;
            (rows_of(&world.count_rows_by_version().await, v2.file_id) > recorded).then_some(())
        })
        .await;
        signal(worker.pid(), "STOP");
        if completions_waiting(&world, &unit_lock).await == 0 {
            break (unit_lock, unit);
        }
        signal(worker.pid(), "CONT");
        unit_lock.release().await;
    };
    let cancelled = cancel_through(&world, v2.file_id, unit_lock).await;
    signal(worker.pid(), "CONT");
    assert!(cancelled.version.buckets_done < 1 << cancelled.version.bucket_bits.unwrap(), "mid-diff: {cancelled:?}");
    assert_eq!(unit_state(&world, v2.file_id, unit).await, "failed", "unit {unit} revoked in flight");

    // The worker stops writing v2 and lives on; v2's rows (the in-flight unit's too) are
    // undone; v1 answers exactly throughout.
    let added = hashes(&emails(100_000, 1_500));
    assert_exact_answers(&world, &services.url, "acme", v1.file_id, &hashes(&v1_members), &added).await;
    let v2 = wait_retired(&world, v2.file_id, "v2 undone").await;
    assert_eq!(v2.version.activated_at, None);
    assert_eq!(world.count_rows_by_version().await, rows(&[(v1.file_id, true, 6_000)]), "no row of v2 left");
    assert!(worker.child.as_mut().unwrap().try_wait().unwrap().is_none(), "worker-revoked is still running");
    assert_exact_answers(&world, &services.url, "acme", v1.file_id, &hashes(&v1_members), &added).await;
}

/// FAILS (found by this test): a merge unit's completion (`complete_bucket.sql`: its `ranges`
/// row, then its file's row) and a cancel (`Catalog::cancel_file`: the `files` row, then the
/// file's `ranges` rows in `revoke_file.sql`) lock the same two rows in opposite orders, so
/// Postgres aborts one of them as a deadlock — here the operator's cancel ("deadlock detected").
/// The leader's supersede (`supersede_stale.sql` then `revoke_file.sql`) and an ingest unit's
/// completion (`complete.sql`) take the same orders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_racing_a_merge_units_completion_succeeds() {
    let world = TestWorld::new().await;
    let services = start(&world, 1, &[("MEMBERLAKE_BUCKET_TARGET", "1024")]).await;
    let (v1_members, v2_members) = (v1_members(), v2_members());
    let v1 = activate_v1(&world, &v1_members).await;
    let key2 = world.upload("acme", "v2.csv", list(&v2_members)).await;
    let (v2, hold, _) = world.ingested_not_merging(&key2).await;
    hold.release().await;
    wait_state(&world, v2.file_id, FileState::Merging).await;

    // The test holds the unit the worker is writing until the worker has written all its rows
    // and asks to record it done (its completion waits for the lock); then the operator cancels
    // v2, and the cancel's revocation waits for the same unit, after the completion.
    let _worker = world.spawn("compute-worker", "worker-racing", &SLOW_WRITES);
    let (unit_lock, unit) = wait_for(FINISH, "worker-racing inside a merge unit", || async {
        world.hold_leased_merge_unit(v2.file_id, "worker-racing").await
    })
    .await;
    wait_for(FINISH, "the unit's completion to wait for the lock", || async {
        (completions_waiting(&world, &unit_lock).await > 0).then_some(())
    })
    .await;
    let cancelled = cancel_through(&world, v2.file_id, unit_lock).await;
    let state = unit_state(&world, v2.file_id, unit).await;
    eprintln!("the unit completing at the cancel ended {state}; {cancelled:?}");
    assert!(state == "failed" || state == "done", "unit {unit} {state}");

    let v2 = wait_retired(&world, v2.file_id, "v2 undone").await;
    assert_eq!(v2.version.activated_at, None);
    assert_eq!(world.count_rows_by_version().await, rows(&[(v1.file_id, true, 6_000)]), "no row of v2 left");
    let added = hashes(&emails(100_000, 1_500));
    assert_exact_answers(&world, &services.url, "acme", v1.file_id, &hashes(&v1_members), &added).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_inside_a_merge_unit_of_a_second_version_applies_nothing_twice() {
    let world = TestWorld::new().await;
    // 16 buckets of ~190 changed rows, so that a unit writes for a while; a retirement grace
    // long enough to count v2's rows before v1's retirement is queued (checked, not assumed).
    let services = start(&world, 1, &[("MEMBERLAKE_BUCKET_TARGET", "1024"), ("MEMBERLAKE_RETIRE_GRACE", "15s")]).await;
    let (v1_members, v2_members) = (v1_members(), v2_members());
    let v1 = activate_v1(&world, &v1_members).await;
    let key2 = world.upload("acme", "v2.csv", list(&v2_members)).await;
    let (v2, hold, _) = world.ingested_not_merging(&key2).await;
    hold.release().await;
    wait_state(&world, v2.file_id, FileState::Merging).await;

    // The slow worker takes a merge unit; the test holds that unit's row, so it cannot be
    // recorded done, and kills the worker once some of the unit's rows reached the store.
    let mut doomed = world.spawn("compute-worker", "worker-killed", &SLOW_WRITES);
    let (unit_lock, unit) = wait_for(FINISH, "worker-killed to hold a merge unit", || async {
        world.hold_leased_merge_unit(v2.file_id, "worker-killed").await
    })
    .await;
    let (recorded, in_store) = wait_for(FINISH, "rows of the held unit in the store", || async {
        let recorded = world.file(v2.file_id).await.version.rows_written as u64;
        let in_store = rows_of(&world.count_rows_by_version().await, v2.file_id);
        (in_store > recorded).then_some((recorded, in_store))
    })
    .await;
    doomed.kill9().await;
    assert_eq!(unit_state(&world, v2.file_id, unit).await, "leased", "the killed unit is not recorded done");
    // Its statements still queued behind the lock (heartbeat, completion) die with it, as if it
    // had been killed before sending them.
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE $1 = ANY(pg_blocking_pids(pid)) AND query LIKE '%lease_token = $3%'",
    )
    .bind(unit_lock.pid)
    .execute(world.catalog.pool())
    .await
    .unwrap();
    unit_lock.release().await;
    let unit_row = "SELECT attempts::bigint FROM ranges WHERE file_id = $1 AND stage = 'merge' AND range_index = $2";
    eprintln!("killed inside merge unit {unit}: {} of its rows written", in_store - recorded);

    // A second worker redoes the unit (after its lease expires) and the rest.
    let _healthy = world.spawn("compute-worker", "worker-healthy", &[]);
    let v2 = world.wait_finished(&key2, FINISH).await;
    assert_eq!(v2.state, FileState::Ingested, "{v2:?}");
    assert!(v2.active);
    let attempts: i64 =
        sqlx::query_scalar(unit_row).bind(v2.file_id).bind(unit).fetch_one(world.catalog.pool()).await.unwrap();
    assert!(attempts >= 2, "the killed unit was redone: {attempts} attempts");
    assert_eq!((v2.version.members, v2.version.added, v2.version.removed), (Some(6_000), 1_500, 1_500));
    assert_eq!(v2.version.rows_written, 3_000, "each changed row recorded once: {v2:?}");

    // Exactly one row per change before v1 retires (the leader held: no retirement queued while
    // counting), exactly one per member after.
    let (hold, _) = world.hold_leadership().await;
    let queued =
        sql_i64(&world.catalog, &format!("SELECT cleanup_total::bigint FROM files WHERE file_id = {}", v1.file_id))
            .await;
    assert_eq!(queued, 0, "v1's retirement is not queued yet");
    assert_eq!(
        world.count_rows_by_version().await,
        rows(&[(v1.file_id, true, 6_000), (v2.file_id, true, 1_500), (v2.file_id, false, 1_500)])
    );
    hold.release().await;
    let removed = hashes(&v1_members[..1_500]);
    assert_exact_answers(&world, &services.url, "acme", v2.file_id, &hashes(&v2_members), &removed).await;
    let v1 = wait_retired(&world, v1.file_id, "v1 retired").await;
    assert_eq!(v1.version.rows_deleted, 1_500);
    assert_eq!(world.count_rows_by_version().await, rows(&[(v1.file_id, true, 4_500), (v2.file_id, true, 1_500)]));
    assert_exact_answers(&world, &services.url, "acme", v2.file_id, &hashes(&v2_members), &removed).await;
}
