//! Game day: the CQL node stops while a second list version is mid-diff (its merge units
//! writing their rows), and starts again; the version completes exactly, no unit fails, and the
//! replaced version is retired from what changed (`docs/versions.md`).
//! (Alone in its own test binary: cargo runs test binaries one after another, so stopping the
//! shared CQL node does not disturb other tests. Whatever happens, the node is started again.)

use std::collections::HashMap;
use std::time::Duration;

use memberlake::catalog::FileState;
use memberlake_tests::*;

const FINISH: Duration = Duration::from_secs(300);

/// The stopped CQL node; started again on drop, also when the test fails.
struct CqlOutage {
    stopped: bool,
}

impl CqlOutage {
    fn begin() -> Self {
        // Marked stopped first: a stop that fails half-way still gets the node started again.
        let outage = Self { stopped: true };
        stack_sh(&["stop", "cql"]);
        outage
    }

    fn end(&mut self) {
        stack_sh(&["start", "cql"]);
        self.stopped = false;
    }
}

impl Drop for CqlOutage {
    fn drop(&mut self) {
        if self.stopped {
            self.stopped = false;
            // Not `stack_sh`: a panic while panicking would abort and hide the first failure.
            let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/stack.sh");
            match std::process::Command::new("bash").arg(script).args(["start", "cql"]).status() {
                Ok(s) if s.success() => {}
                other => eprintln!("could not start the CQL node again ({other:?}): run deploy/local/stack.sh up"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cql_node_stops_while_a_version_is_mid_diff() {
    let world = TestWorld::new().await;
    let _meta =
        world.spawn("meta-service", "meta-a", &[("MEMBERLAKE_ADMIN_ADDR", &format!("127.0.0.1:{}", free_port()))]);
    let _splitter = world.spawn(
        "splitter",
        "splitter-a",
        &[("MEMBERLAKE_RANGE_SIZE", "64KiB"), ("MEMBERLAKE_BUCKET_TARGET", "256")],
    );
    let (_matcher, url) = world.start_matcher(&[]).await;

    // v1: 6,000 members, ingested by a worker that then exits.
    let v1_members = emails(0, 6_000);
    let mut worker = world.spawn("compute-worker", "worker-v1", &[]);
    let v1 = world.wait_finished(&world.upload("acme", "v1.csv", list(&v1_members)).await, FINISH).await;
    assert!(v1.active, "{v1:?}");
    assert!(worker.terminate().await.success());

    // v2: 1,500 removed, 1,500 added; mid-diff (8 of its 64 buckets merged, the rest held) with a
    // slow worker: single-row writes, one in flight.
    let v2_members: Vec<String> = emails(1_500, 4_500).into_iter().chain(emails(100_000, 1_500)).collect();
    let key2 = world.upload("acme", "v2.csv", list(&v2_members)).await;
    let (v2, hold, _) = world.ingested_not_merging(&key2).await;
    hold.release().await;
    let slow = [
        ("MEMBERLAKE_WORKER_LANES", "bulk"),
        ("MEMBERLAKE_WRITE_BATCH_ROWS", "1"),
        ("MEMBERLAKE_WRITE_CONCURRENCY", "1"),
    ];
    let (worker, gate, v2) = world.mid_diff(v2.file_id, 8, "worker-slow", &slow).await;
    assert!(v2.version.rows_written > 0, "{v2:?}");

    // The node stops (proven: it refuses connections); then the held units are let go, so the
    // merge runs into the outage: the worker's store writes fail and are retried.
    let mut outage = CqlOutage::begin();
    let node = env("MEMBERLAKE_SCYLLA_NODES").split(',').next().unwrap().to_owned();
    assert!(tokio::net::TcpStream::connect(&node).await.is_err(), "the CQL node at {node} still accepts connections");
    gate.release().await;
    wait_for(Duration::from_secs(120), "the merge to retry store writes during the outage", || async {
        let (_, m) = worker.get("/metrics").await.ok()?;
        let store_retries =
            m.lines().filter(|l| l.starts_with("memberlake_retries_total{") && l.contains("store write"));
        store_retries.filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).any(|n| n > 0.0).then_some(())
    })
    .await;
    let during = world.file(v2.file_id).await;
    assert_eq!(during.state, FileState::Merging, "{during:?}");
    assert!(tokio::net::TcpStream::connect(&node).await.is_err(), "the outage lasted");
    outage.end();

    // v2 completes after the node returns: every unit once, nothing failed.
    wait_for(Duration::from_secs(120), "the store to answer again", || async { world.store.ping().await.ok() }).await;
    let v2 = world.wait_finished(&key2, FINISH).await;
    assert_eq!(v2.state, FileState::Ingested, "{v2:?}");
    assert!(v2.active);
    assert_eq!(v2.version.base_version, Some(v1.file_id));
    assert_eq!((v2.version.members, v2.version.added, v2.version.removed), (Some(6_000), 1_500, 1_500));
    assert_eq!(v2.version.rows_written, 3_000, "{v2:?}");
    assert_eq!(sql_i64(&world.catalog, "SELECT count(*) FROM ranges WHERE state = 'failed'").await, 0);

    // v1 retired from what changed; the store holds one present row per member of v2.
    let v1 = wait_for(FINISH, "v1 retired", || async {
        Some(world.file(v1.file_id).await).filter(|f| f.retired_at.is_some())
    })
    .await;
    assert_eq!(v1.version.rows_deleted, 1_500);
    let expected: HashMap<(String, i64, bool), u64> =
        [(("acme".to_owned(), v1.file_id.0, true), 4_500), (("acme".to_owned(), v2.file_id.0, true), 1_500)].into();
    assert_eq!(world.count_rows_by_version().await, expected);
    assert_exact_answers(&world, &url, "acme", v2.file_id, &hashes(&v2_members), &hashes(&v1_members[..1_500])).await;
}
