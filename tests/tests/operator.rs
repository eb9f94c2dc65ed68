//! Priorities, lanes and the operator surface (admin API, CLI, status page) on the real stack.

use memberlake::catalog::FileState;
use memberlake::ids::FileId;
use std::time::{Duration, Instant};

use memberlake_tests::*;
use serde_json::{json, Value};

const FINISH: Duration = Duration::from_secs(120);

fn list_of(from: usize, n: usize) -> Vec<u8> {
    emails(from, n).iter().flat_map(|e| format!("{e}\n").into_bytes()).collect()
}

struct Admin {
    _meta: Service,
    url: String,
    token: Option<String>,
    client: reqwest::Client,
}

impl Admin {
    async fn start(world: &TestWorld, tokens: Option<&str>) -> Self {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut env = vec![("MEMBERLAKE_ADMIN_ADDR", addr.as_str())];
        if let Some(t) = tokens {
            env.push(("MEMBERLAKE_ADMIN_TOKENS", t));
        }
        let mut meta = world.spawn("meta-service", "meta-a", &env);
        meta.metrics_addr = Some(addr.clone());
        wait_for(Duration::from_secs(20), "meta-service ready", || async {
            meta.get("/readyz").await.ok().filter(|(s, _)| *s == 200)
        })
        .await;
        let token = tokens.map(|t| t.split(',').next().unwrap().split_once(':').map_or(t, |(_, s)| s).to_owned());
        Self { _meta: meta, url: format!("http://{addr}"), token, client: reqwest::Client::new() }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self.client.request(method, format!("{}{path}", self.url));
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self.call(reqwest::Method::POST, path, body).await;
        assert_eq!(s, 200, "{path}: {v}");
        v
    }
}

async fn file_id_of(world: &TestWorld, key: &str, state: FileState) -> FileId {
    wait_for(Duration::from_secs(30), &format!("{key} {state}"), || async {
        world.files().await.into_iter().find(|f| f.object_key == key && f.state == state).map(|f| f.file_id)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_file_overtakes_a_large_one() {
    let world = TestWorld::new().await;
    let _admin = Admin::start(&world, None).await;
    let _splitter = world.spawn("splitter", "splitter-a", &[("MEMBERLAKE_RANGE_SIZE", "16KiB")]);
    // One worker with the default lanes (express + bulk).
    let _worker = world.spawn("compute-worker", "worker-0", &[("MEMBERLAKE_EXPRESS_MAX_FILE_SIZE", "64KiB")]);
    let large = world.upload("bigco", "huge.csv", list_of(0, 120_000)).await;
    let large_id = file_id_of(&world, &large, FileState::Ingesting).await;
    let total = world.file(large_id).await.ranges_total;
    assert!(total >= 200, "{total} ranges");
    wait_for(Duration::from_secs(30), "large file under way", || async {
        (world.file(large_id).await.ranges_done >= 3).then_some(())
    })
    .await;

    let small = world.upload("tinyco", "small.csv", list_of(500_000, 200)).await;
    let small_file = world.wait_finished(&small, FINISH).await;
    assert_eq!(small_file.state, FileState::Ingested);
    let big = world.file(large_id).await;
    assert!(
        big.ranges_done < big.ranges_total / 2,
        "small file done while the large one is at {}/{} ranges",
        big.ranges_done,
        big.ranges_total
    );
    let queued = sql_i64(
        &world.catalog,
        &format!("SELECT count(*) FROM ranges WHERE file_id = {large_id} AND state = 'queued'"),
    )
    .await;
    assert!(queued as i32 > total / 2, "most of the large file still queued ({queued})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_a_files_priority_makes_its_ranges_the_next_taken() {
    let world = TestWorld::new().await;
    let admin = Admin::start(&world, None).await;
    let _splitter = world.spawn("splitter", "splitter-a", &[("MEMBERLAKE_RANGE_SIZE", "16KiB")]);
    let a = world.upload("alpha", "a.csv", list_of(0, 8_000)).await;
    let b = world.upload("bravo", "b.csv", list_of(100_000, 8_000)).await;
    let a_id = file_id_of(&world, &a, FileState::Ingesting).await;
    let b_id = file_id_of(&world, &b, FileState::Ingesting).await;
    let v = admin.post(&format!("/admin/v1/files/{b_id}/priority"), Some(json!({"priority": 5}))).await;
    assert_eq!(v["file"]["priority"], 5);

    let _worker = world.spawn("compute-worker", "worker-0", &[("MEMBERLAKE_WORKER_LANES", "bulk")]);
    world.wait_finished(&a, FINISH).await;
    world.wait_finished(&b, FINISH).await;
    // Lease tokens are drawn from one sequence: their order is the order ranges were taken.
    let last_b = sql_i64(&world.catalog, &format!("SELECT max(lease_token) FROM ranges WHERE file_id = {b_id}")).await;
    let first_a = sql_i64(&world.catalog, &format!("SELECT min(lease_token) FROM ranges WHERE file_id = {a_id}")).await;
    assert!(last_b < first_a, "every range of the raised file was taken before any of the other");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_cancel() {
    let world = TestWorld::new().await;
    let admin = Admin::start(&world, None).await;
    let _splitter = world.spawn("splitter", "splitter-a", &[("MEMBERLAKE_RANGE_SIZE", "16KiB")]);
    let paused = world.upload("acme", "p.csv", list_of(0, 3_000)).await;
    let cancelled = world.upload("globex", "c.csv", list_of(50_000, 3_000)).await;
    let p_id = file_id_of(&world, &paused, FileState::Ingesting).await;
    let c_id = file_id_of(&world, &cancelled, FileState::Ingesting).await;
    let v = admin.post(&format!("/admin/v1/files/{p_id}/pause"), None).await;
    assert_eq!(v["file"]["paused"], true);
    let v = admin.post(&format!("/admin/v1/files/{c_id}/cancel"), None).await;
    assert_eq!(v["file"]["state"], "cancelled");

    let _worker = world.spawn("compute-worker", "worker-0", &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let taken = sql_i64(
        &world.catalog,
        &format!("SELECT count(*) FROM ranges WHERE file_id IN ({p_id}, {c_id}) AND lease_token IS NOT NULL"),
    )
    .await;
    assert_eq!(taken, 0, "paused and cancelled files take no leases");

    admin.post(&format!("/admin/v1/files/{p_id}/resume"), None).await;
    let f = world.wait_finished(&paused, FINISH).await;
    assert_eq!((f.state.as_str(), f.rows_ingested, f.active), ("ingested", 3_000, true));
    let c = world.file(c_id).await;
    assert_eq!(c.state, FileState::Cancelled);
    assert!(!c.active);
    let (s, v) = admin.call(reqwest::Method::POST, &format!("/admin/v1/files/{c_id}/resume"), None).await;
    assert_eq!(s, 409, "{v}");
    let (s, _) = admin.call(reqwest::Method::POST, "/admin/v1/files/999999/pause", None).await;
    assert_eq!(s, 404);
    let (s, v) = admin.call(reqwest::Method::POST, "/admin/v1/files/abc/pause", None).await;
    assert_eq!(s, 400, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aging_lets_a_low_priority_file_run_while_others_keep_arriving() {
    let world = TestWorld::new().await;
    let admin = Admin::start(&world, None).await;
    let _splitter = world.spawn("splitter", "splitter-a", &[("MEMBERLAKE_RANGE_SIZE", "16KiB")]);
    let low = world.upload("lowco", "low.csv", list_of(0, 1_000)).await;
    let low_id = file_id_of(&world, &low, FileState::Ingesting).await;
    admin.post(&format!("/admin/v1/files/{low_id}/priority"), Some(json!({"priority": -2}))).await;
    // A backlog of normal-priority files arrives first, and keeps arriving.
    let mut uploaded = 0;
    let world = &world;
    let upload_high = |i: usize| async move {
        world.upload("highco", &format!("high-{i}.csv"), list_of(1_000_000 + i * 6_000, 6_000)).await
    };
    for _ in 0..3 {
        upload_high(uploaded).await;
        uploaded += 1;
    }
    wait_for(Duration::from_secs(30), "the backlog split", || async {
        let n = sql_i64(
            &world.catalog,
            "SELECT count(*) FROM files WHERE advertiser_id = 'highco' AND state = 'ingesting'",
        )
        .await;
        (n == 3).then_some(())
    })
    .await;
    // 500 points per second of waiting: priority -2 (-2000 points) is outweighed after ~4 s.
    let mut worker = Some(world.spawn(
        "compute-worker",
        "worker-0",
        &[
            ("MEMBERLAKE_WORKER_LANES", "bulk"),
            ("MEMBERLAKE_PRIORITY_AGING_PER_SECOND", "500"),
            ("MEMBERLAKE_WRITE_CONCURRENCY", "8"),
        ],
    ));
    let started = Instant::now();
    let low_done = loop {
        assert!(started.elapsed() < Duration::from_secs(90), "low-priority file starved");
        upload_high(uploaded).await;
        uploaded += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let f = world.file(low_id).await;
        if f.finished_at.is_some() {
            worker.take();
            break f;
        }
    };
    let first_low =
        sql_i64(&world.catalog, &format!("SELECT min(lease_token) FROM ranges WHERE file_id = {low_id}")).await;
    let high_before = sql_i64(
        &world.catalog,
        &format!("SELECT count(*) FROM ranges r JOIN files f USING (file_id) WHERE f.advertiser_id = 'highco' AND r.lease_token < {first_low}"),
    )
    .await;
    assert!(high_before > 0, "the low-priority file waited behind higher-priority work");
    assert_eq!(low_done.state, FileState::Ingested);
    let pending = sql_i64(
        &world.catalog,
        "SELECT count(*) FROM files WHERE advertiser_id = 'highco' AND state IN ('registered', 'ingesting')",
    )
    .await;
    assert!(pending > 0, "higher-priority files were still waiting when the low one finished");
    assert!(uploaded > 5, "files kept arriving ({uploaded})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_actions_need_the_operator_token_and_are_audited() {
    let world = TestWorld::new().await;
    let admin = Admin::start(&world, Some("ops:op-secret,other:second-secret")).await;
    let _splitter = world.spawn("splitter", "splitter-a", &[("MEMBERLAKE_RANGE_SIZE", "16KiB")]);
    let key = world.upload("acme", "a.csv", list_of(0, 2_000)).await;
    let id = file_id_of(&world, &key, FileState::Ingesting).await;

    let raw = reqwest::Client::new();
    for (method, path, body) in [
        (reqwest::Method::GET, "/admin/v1/files".to_owned(), None),
        (reqwest::Method::POST, format!("/admin/v1/files/{id}/priority"), Some(json!({"priority": 3}))),
        (reqwest::Method::POST, format!("/admin/v1/files/{id}/pause"), None),
        (reqwest::Method::POST, format!("/admin/v1/files/{id}/cancel"), None),
        (reqwest::Method::PUT, "/admin/v1/advertisers/acme/weight".to_owned(), Some(json!({"weight": 2.0}))),
        (reqwest::Method::GET, "/".to_owned(), None),
    ] {
        for auth in [None, Some("matcher-token"), Some("op-secre")] {
            let mut r = raw.request(method.clone(), format!("{}{path}", admin.url));
            if let Some(a) = auth {
                r = r.bearer_auth(a);
            }
            if let Some(b) = &body {
                r = r.json(b);
            }
            assert_eq!(r.send().await.unwrap().status(), 401, "{method} {path} with {auth:?}");
        }
    }
    assert_eq!(
        sql_i64(&world.catalog, "SELECT count(*) FROM operator_actions").await,
        0,
        "refused actions changed nothing"
    );

    // Bad requests say why.
    let (s, v) = admin
        .call(reqwest::Method::POST, &format!("/admin/v1/files/{id}/priority"), Some(json!({"priority": "high"})))
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, v) =
        admin.call(reqwest::Method::PUT, "/admin/v1/advertisers/acme/weight", Some(json!({"weight": -1}))).await;
    assert_eq!(s, 400, "{v}");
    let (s, _) = admin.call(reqwest::Method::GET, "/admin/v1/files?state=bogus", None).await;
    assert_eq!(s, 400);

    admin.post(&format!("/admin/v1/files/{id}/priority"), Some(json!({"priority": 3}))).await;
    admin.post(&format!("/admin/v1/files/{id}/pause"), None).await;
    admin.post(&format!("/admin/v1/files/{id}/resume"), None).await;
    let (s, _) =
        admin.call(reqwest::Method::PUT, "/admin/v1/advertisers/acme/weight", Some(json!({"weight": 2.5}))).await;
    assert_eq!(s, 200);
    admin.post(&format!("/admin/v1/files/{id}/cancel"), None).await;

    // The CLI speaks the same API with the other operator's token.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(binary("memberlake"))
            .args(args)
            .env("MEMBERLAKE_ADMIN_ADDR", admin.url.trim_start_matches("http://"))
            .env("MEMBERLAKE_ADMIN_TOKEN", "second-secret")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = cli(&["files", "--json"]);
    assert!(ok, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["files"][0]["file_id"], id.0);
    let (ok, out, err) = cli(&["file", &id.to_string()]);
    assert!(ok && out.contains("cancelled"), "{out}{err}");
    let (ok, _, err) = cli(&["weight", "globex", "3"]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&["retry", &id.to_string()]);
    assert!(!ok && err.contains("409"), "retrying a cancelled file is refused: {err}");

    let (s, v) = admin.call(reqwest::Method::GET, "/admin/v1/actions", None).await;
    assert_eq!(s, 200);
    let actions: Vec<(String, String, String)> = v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|a| {
            (
                a["actor"].as_str().unwrap().to_owned(),
                a["action"].as_str().unwrap().to_owned(),
                a["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let target = format!("file:{id}");
    let expected: Vec<(String, String, String)> = [
        ("ops", "prioritize", target.as_str()),
        ("ops", "pause", target.as_str()),
        ("ops", "resume", target.as_str()),
        ("ops", "weight", "advertiser:acme"),
        ("ops", "cancel", target.as_str()),
        ("other", "weight", "advertiser:globex"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(actions, expected);
    assert!(v["actions"][0]["at"].as_str().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_shows_a_file_in_flight_in_a_real_browser() {
    let world = TestWorld::new().await;
    let admin = Admin::start(&world, Some("ops:page-secret")).await;
    let _splitter = world.spawn("splitter", "splitter-a", &[("MEMBERLAKE_RANGE_SIZE", "16KiB")]);
    let key = world.upload("acme", "inflight.csv", list_of(0, 3_000)).await;
    let id = file_id_of(&world, &key, FileState::Ingesting).await;
    // Paused, it stays in flight while the page is looked at.
    admin.post(&format!("/admin/v1/files/{id}/pause"), None).await;
    let failed = world.upload("broken", "gone.csv", list_of(9_000, 100)).await;
    let _ = file_id_of(&world, &failed, FileState::Ingesting).await;
    world.lake.delete(&failed).await.unwrap();
    let _worker = world.spawn("compute-worker", "worker-0", &[]);
    let f = world.wait_finished(&failed, FINISH).await;
    assert_eq!(f.state, FileState::Failed);

    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find(|b| std::process::Command::new("which").arg(b).output().map(|o| o.status.success()).unwrap_or(false))
        .expect("chromium is not installed: deploy/local/test.sh installs it (apt-get install chromium)");
    let url = format!("{}/status?token=page-secret", admin.url);
    let profile = world.stack.scratch.join(unique("chromium"));
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ];
    let dom = std::process::Command::new(chromium)
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("memberlake — ingestion status"), "{dom}");
    assert!(dom.contains(&format!("data-file-id=\"{id}\"")), "the paused file is shown in flight: {dom}");
    assert!(dom.contains("inflight.csv") && dom.contains("paused"));
    assert!(dom.contains("id=\"throughput\""), "throughput chart");
    assert!(dom.contains("not found"), "the failure and its reason");

    let shot = std::env::var("MEMBERLAKE_SCREENSHOT_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| world.stack.scratch.clone())
        .join("status-page.png");
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    let out = std::process::Command::new(chromium)
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1200,900")
        .arg(&url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real screenshot at {}", shot.display());
    println!("status page screenshot: {}", shot.display());
    let (s, v) = admin.call(reqwest::Method::GET, "/admin/v1/overview", None).await;
    assert_eq!(s, 200);
    assert!(v["queued_bulk"].as_i64().unwrap() + v["queued_express"].as_i64().unwrap() > 0);
}
