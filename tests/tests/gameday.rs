//! Game day: real processes, real servers, and each scenario ends with an exact data check.
//! Postgres restarts and the CQL node stops during ingestion; the S3 server stops mid-range and
//! is slowed by a latency-injecting proxy; every role is killed with SIGKILL once.
//! (Alone in its test binary: it stops shared servers, and cargo runs test binaries one after
//! another. Its tests run one at a time for the same reason.)

use memberlake::catalog::FileState;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use memberlake::ids::EmailHash;
use memberlake_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;

const FINISH: Duration = Duration::from_secs(240);

/// Game-day scenarios share the stack's servers: one at a time.
static SERIAL: Mutex<()> = Mutex::const_new(());

async fn assert_exact(world: &TestWorld, advertiser: &str, key: &str, members: &[String]) {
    let f = world.wait_finished(key, FINISH).await;
    assert_eq!(f.state, FileState::Ingested, "{f:?}");
    assert!(f.active);
    assert_eq!((f.rows_ingested, f.rows_rejected), (members.len() as i64, 0), "{f:?}");
    let hashes: Vec<EmailHash> = members.iter().map(|e| md5_email(e)).collect();
    assert_eq!(
        stored_members(&world.store, advertiser, f.file_id, &hashes).await,
        members.len(),
        "every member stored"
    );
    assert_eq!(world.count_rows().await, members.len() as u64, "no extra rows");
}

async fn wait_ranges_done(world: &TestWorld, n: i64) {
    wait_for(Duration::from_secs(60), "ingestion under way", || async {
        (sql_i64(&world.catalog, "SELECT count(*) FROM ranges WHERE state = 'done'").await >= n).then_some(())
    })
    .await;
}

/// Ingests a list while `server` (a stack.sh name) is stopped for `down` mid-ingestion; the
/// result must be exact. The outage is proven real (the server refuses connections) and
/// mid-ingestion (the file unfinished) — not inferred from a log line, which retries inside
/// the clients can hide.
async fn ingest_through_outage(world: TestWorld, range_size: &str, rows: usize, server: &str, down: Duration) {
    let _p = world.start_pipeline(range_size, 2).await;
    let members = emails(0, rows);
    let key = world.upload("acme", "list.csv", list(&members)).await;
    wait_ranges_done(&world, 2).await;
    // The outage falls mid-ingestion and is real, or the scenario proves nothing.
    let unfinished = sql_i64(&world.catalog, "SELECT count(*) FROM files WHERE finished_at IS NULL").await;
    assert_eq!(unfinished, 1, "the file is still being ingested when {server} stops");
    stack_sh(&["stop", server]);
    let addr = server_addr(server);
    assert!(tokio::net::TcpStream::connect(&addr).await.is_err(), "{server} at {addr} still accepts connections");
    tokio::time::sleep(down).await;
    stack_sh(&["start", server]);
    assert_exact(&world, "acme", &key, &members).await;
    let failed = sql_i64(&world.catalog, "SELECT count(*) FROM ranges WHERE state = 'failed'").await;
    assert_eq!(failed, 0, "the outage cost no range its file");
}

/// host:port of a stack server, from the environment the tests run in.
fn server_addr(server: &str) -> String {
    match server {
        "postgres" => {
            let url = url::Url::parse(&env("MEMBERLAKE_DATABASE_URL")).unwrap();
            format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432))
        }
        "cql" => env("MEMBERLAKE_SCYLLA_NODES").split(',').next().unwrap().to_owned(),
        "s3" => env("AWS_ENDPOINT_URL").trim_start_matches("http://").trim_end_matches('/').to_owned(),
        other => panic!("unknown server {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarts_during_ingestion() {
    let _serial = SERIAL.lock().await;
    ingest_through_outage(TestWorld::new().await, "32KiB", 60_000, "postgres", Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cql_node_stops_during_ingestion() {
    let _serial = SERIAL.lock().await;
    ingest_through_outage(TestWorld::new().await, "32KiB", 60_000, "cql", Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_server_stops_mid_range() {
    let _serial = SERIAL.lock().await;
    ingest_through_outage(TestWorld::new_s3().await, "256KiB", 80_000, "s3", Duration::from_secs(2)).await;
}

/// A TCP proxy that delays every chunk it forwards from the server by `delay`.
async fn slow_proxy(target: String, delay: Duration, stop: Arc<AtomicBool>) -> u16 {
    let port = free_port();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let Ok((mut client, _)) = listener.accept().await else { continue };
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else { return };
                let (mut cr, mut cw) = client.split();
                let (mut sr, mut sw) = server.split();
                let upstream = tokio::io::copy(&mut cr, &mut sw);
                let downstream = async {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = sr.read(&mut buf).await?;
                        if n == 0 {
                            break;
                        }
                        tokio::time::sleep(delay).await;
                        cw.write_all(&buf[..n]).await?;
                    }
                    cw.shutdown().await
                };
                let _ = tokio::join!(upstream, downstream);
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_s3_still_ingests_exactly() {
    let _serial = SERIAL.lock().await;
    let world = TestWorld::new_s3().await;
    let endpoint = env("AWS_ENDPOINT_URL");
    let target = endpoint.trim_start_matches("http://").to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let port = slow_proxy(target, Duration::from_millis(30), stop.clone()).await;
    let slow_endpoint = format!("http://127.0.0.1:{port}");
    let _meta =
        world.spawn("meta-service", "meta-a", &[("MEMBERLAKE_ADMIN_ADDR", &format!("127.0.0.1:{}", free_port()))]);
    let _splitter = world.spawn("splitter", "splitter-a", &[("MEMBERLAKE_RANGE_SIZE", "128KiB")]);
    let worker = world.spawn("compute-worker", "worker-slow-s3", &[("AWS_ENDPOINT_URL", &slow_endpoint)]);
    let members = emails(0, 30_000);
    let key = world.upload("acme", "list.csv", list(&members)).await;
    assert_exact(&world, "acme", &key, &members).await;
    // The worker's metrics show where its time went: reading, through the slow proxy.
    let (_, m) = worker.get("/metrics").await.unwrap();
    assert!(metric_value(&m, "memberlake_worker_read_seconds_sum") >= 1.0, "{m}");
    stop.store(true, Ordering::Relaxed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_killed_once() {
    let _serial = SERIAL.lock().await;
    let world = TestWorld::new().await;
    let admin =
        |n: &str| world.spawn("meta-service", n, &[("MEMBERLAKE_ADMIN_ADDR", &format!("127.0.0.1:{}", free_port()))]);
    let mut metas = [admin("meta-a"), admin("meta-b")];
    let mut splitters = [
        world.spawn("splitter", "splitter-a", &[("MEMBERLAKE_RANGE_SIZE", "32KiB")]),
        world.spawn("splitter", "splitter-b", &[("MEMBERLAKE_RANGE_SIZE", "32KiB")]),
    ];
    let mut workers = [
        world.spawn("compute-worker", "worker-a", &[("MEMBERLAKE_WRITE_CONCURRENCY", "8")]),
        world.spawn("compute-worker", "worker-b", &[("MEMBERLAKE_WRITE_CONCURRENCY", "8")]),
    ];
    let (mut matcher, url) = world.start_matcher(&[]).await;
    let members = emails(0, 50_000);
    let key = world.upload("acme", "list.csv", list(&members)).await;
    wait_ranges_done(&world, 3).await;

    // kill -9 one of each, mid-ingestion.
    metas[0].kill9().await;
    let (leader, _) = world.catalog.leader("splitter").await.unwrap().map(|l| (l.holder, l.term)).expect("a leader");
    let idx = splitters.iter().position(|s| s.name == leader).unwrap();
    splitters[idx].kill9().await;
    workers[0].kill9().await;
    matcher.kill9().await;
    // A new upload after the kills: only the survivors can register, split and ingest it.
    let second = emails(100_000, 10_000);
    let key2 = world.upload("globex", "list.csv", list(&second)).await;

    let f1 = world.wait_finished(&key, FINISH).await;
    let f2 = world.wait_finished(&key2, FINISH).await;
    for (f, n) in [(&f1, 50_000), (&f2, 10_000)] {
        assert_eq!((f.state.as_str(), f.rows_ingested, f.rows_rejected, f.active), ("ingested", n, 0, true), "{f:?}");
    }
    let h1: Vec<EmailHash> = members.iter().map(|e| md5_email(e)).collect();
    let h2: Vec<EmailHash> = second.iter().map(|e| md5_email(e)).collect();
    assert_eq!(stored_members(&world.store, "acme", f1.file_id, &h1).await, 50_000);
    assert_eq!(stored_members(&world.store, "globex", f2.file_id, &h2).await, 10_000);
    assert_eq!(world.count_rows().await, 60_000);

    // A new matcher answers exactly.
    let (_m2, url2) = world.start_matcher(&[]).await;
    assert_ne!(url, url2);
    let client = reqwest::Client::new();
    for h in h1.iter().step_by(500).chain(h2.iter().step_by(500)) {
        let acme = is_member(&client, &url2, "acme", *h).await;
        let globex = is_member(&client, &url2, "globex", *h).await;
        assert!(acme ^ globex, "each hash is in exactly one list");
    }
    assert!(!is_member(&client, &url2, "acme", md5_email("nobody@nowhere.example")).await);
}
