//! Priorities, lanes and the operator surface (admin API, CLI, status page) on the real stack.

use memberlake::catalog::FileState;
use memberlake::ids::FileId;
use std::time::{Duration, Instant};

use memberlake_admin::{routes, FileResponse, FilesResponse, LimitQuery};
use memberlake_tests::*;
use serde_json::{json, Value};

const FINISH: Duration = Duration::from_secs(120);

fn list_of(from: usize, n: usize) -> Vec<u8> {
    emails(from, n).iter().flat_map(|e| format!("{e}\n").into_bytes()).collect()
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
    // When the small file's last range was hashed, most of the large file's ranges were still
    // to come. (Ranges are counted when hashed: a version's merge follows its last range, one
    // leader tick later, and the large file's ranges keep flowing meanwhile.)
    let large_done_before = sql_i64(
        &world.catalog,
        &format!(
            "SELECT count(*) FROM ranges WHERE file_id = {large_id} AND stage = 'ingest' AND finished_at <= \
             (SELECT max(finished_at) FROM ranges WHERE file_id = {} AND stage = 'ingest')",
            small_file.file_id
        ),
    )
    .await;
    assert!(
        (large_done_before as i32) < total / 2,
        "small file's ranges done while the large one was at {large_done_before}/{total} ranges"
    );
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
    let v = admin.client.set_priority(b_id, 5).await.unwrap();
    assert_eq!(v.file.priority, 5);

    let _worker = world.spawn("compute-worker", "worker-0", &[("MEMBERLAKE_WORKER_LANES", "bulk")]);
    world.wait_finished(&a, FINISH).await;
    world.wait_finished(&b, FINISH).await;
    // Lease tokens are drawn from one sequence: their order is the order ranges were taken.
    // (Each file's merge units come after its ranges, once the leader has seen them all done.)
    let last_b = sql_i64(
        &world.catalog,
        &format!("SELECT max(lease_token) FROM ranges WHERE file_id = {b_id} AND stage = 'ingest'"),
    )
    .await;
    let first_a = sql_i64(
        &world.catalog,
        &format!("SELECT min(lease_token) FROM ranges WHERE file_id = {a_id} AND stage = 'ingest'"),
    )
    .await;
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
    let v = admin.client.pause(p_id).await.unwrap();
    assert!(v.file.paused);
    let v = admin.client.cancel(c_id).await.unwrap();
    assert_eq!(v.file.state, FileState::Cancelled);

    let _worker = world.spawn("compute-worker", "worker-0", &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let taken = sql_i64(
        &world.catalog,
        &format!("SELECT count(*) FROM ranges WHERE file_id IN ({p_id}, {c_id}) AND lease_token IS NOT NULL"),
    )
    .await;
    assert_eq!(taken, 0, "paused and cancelled files take no leases");

    admin.client.resume(p_id).await.unwrap();
    let f = world.wait_finished(&paused, FINISH).await;
    assert_eq!((f.state.as_str(), f.rows_ingested, f.active), ("ingested", 3_000, true));
    let c = world.file(c_id).await;
    assert_eq!(c.state, FileState::Cancelled);
    assert!(!c.active);
    let err = admin.client.resume(c_id).await.unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");
    let err = admin.client.pause(FileId(999_999)).await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
    let (s, v) = admin.raw(reqwest::Method::POST, "/admin/v1/files/abc/pause", None).await;
    assert_eq!(s, 400, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aging_lets_a_low_priority_file_run_while_others_keep_arriving() {
    let world = TestWorld::new().await;
    let admin = Admin::start(&world, None).await;
    let _splitter = world.spawn("splitter", "splitter-a", &[("MEMBERLAKE_RANGE_SIZE", "16KiB")]);
    let low = world.upload("lowco", "low.csv", list_of(0, 1_000)).await;
    let low_id = file_id_of(&world, &low, FileState::Ingesting).await;
    admin.client.set_priority(low_id, -2).await.unwrap();
    // A backlog of normal-priority files arrives first, and keeps arriving — each of another
    // advertiser (a newer upload of the same advertiser would supersede the one in flight).
    let mut uploaded = 0;
    let world = &world;
    let upload_high = |i: usize| async move {
        world.upload(&format!("highco{i}"), "high.csv", list_of(1_000_000 + i * 6_000, 6_000)).await
    };
    for _ in 0..3 {
        upload_high(uploaded).await;
        uploaded += 1;
    }
    wait_for(Duration::from_secs(30), "the backlog split", || async {
        let n = sql_i64(
            &world.catalog,
            "SELECT count(*) FROM files WHERE advertiser_id LIKE 'highco%' AND state = 'ingesting'",
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
        &format!("SELECT count(*) FROM ranges r JOIN files f USING (file_id) WHERE f.advertiser_id LIKE 'highco%' AND r.lease_token < {first_low}"),
    )
    .await;
    assert!(high_before > 0, "the low-priority file waited behind higher-priority work");
    assert_eq!(low_done.state, FileState::Ingested);
    let pending = sql_i64(
        &world.catalog,
        "SELECT count(*) FROM files WHERE advertiser_id LIKE 'highco%' AND state IN ('registered', 'ingesting', 'merging')",
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

    // Bad requests say why (sent raw: the typed client cannot send them).
    let priority = format!("/admin/v1/files/{id}/priority");
    for (method, path, body, says) in [
        (reqwest::Method::POST, priority.as_str(), Some(json!({"priority": "high"})), "priority"),
        (reqwest::Method::POST, &priority, Some(json!({"priority": 1, "urgent": true})), "unknown field `urgent`"),
        (reqwest::Method::POST, &priority, Some(json!({"priority": 2_000_000})), "priority must be between"),
        (reqwest::Method::PUT, "/admin/v1/advertisers/acme/weight", Some(json!({"weight": -1})), "weight must be"),
        (reqwest::Method::GET, "/admin/v1/files?state=bogus", None, "unknown variant `bogus`"),
        (reqwest::Method::GET, "/admin/v1/files?stat=failed", None, "unknown field `stat`"),
        (reqwest::Method::GET, "/admin/v1/actions?limit=0", None, "limit must be 1..=1000"),
    ] {
        let (s, v) = admin.raw(method.clone(), path, body).await;
        assert_eq!(s, 400, "{method} {path}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{method} {path}: {message:?} should say {says:?}");
    }

    admin.client.set_priority(id, 3).await.unwrap();
    admin.client.pause(id).await.unwrap();
    admin.client.resume(id).await.unwrap();
    let acme = memberlake::ids::AdvertiserId::parse("acme").unwrap();
    let w = admin.client.set_weight(&acme, 2.5).await.unwrap();
    assert_eq!((w.advertiser_id, w.weight), (acme, 2.5));
    admin.client.cancel(id).await.unwrap();

    // The CLI speaks the same API with the other operator's token.
    let cli = |args: &[&str]| admin.cli("second-secret", args);
    let (ok, out, err) = cli(&["files", "--json"]);
    assert!(ok, "{err}");
    let listed: FilesResponse = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.files[0].file_id, id);
    let (ok, out, err) = cli(&["file", &id.to_string()]);
    assert!(ok && out.contains("cancelled"), "{out}{err}");
    let (ok, _, err) = cli(&["weight", "globex", "3"]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&["retry", &id.to_string()]);
    assert!(!ok && err.contains("409"), "retrying a cancelled file is refused: {err}");

    let log = admin.client.actions(&LimitQuery::default()).await.unwrap().actions;
    let actions: Vec<(String, String, String)> =
        log.iter().rev().map(|a| (a.actor.clone(), a.action.clone(), a.target.clone())).collect();
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
    assert_eq!(log[0].details["weight"].as_f64(), Some(3.0), "{}", log[0].details);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_versions_are_approved_or_rejected_by_operators_and_a_rollback_is_refused_what_it_cannot_do() {
    let world = TestWorld::new().await;
    let admin = Admin::start(&world, Some("ops:op-secret,other:second-secret")).await;
    let _splitter = world.spawn("splitter", "splitter-a", &[("MEMBERLAKE_RANGE_SIZE", "16KiB")]);
    let _worker = world.spawn("compute-worker", "worker-0", &[]);
    // A first version of three lists; then two of them emptied, which the shrink guard holds.
    let mut first = Vec::new();
    for (i, advertiser) in ["acme", "globex", "initech"].into_iter().enumerate() {
        first.push(world.upload(advertiser, "v1.csv", list_of(i * 1_000, 200)).await);
    }
    let mut v1 = Vec::new();
    for key in &first {
        let f = world.wait_finished(key, FINISH).await;
        assert_eq!((f.state, f.active), (FileState::Ingested, true), "{f:?}");
        v1.push(f.file_id);
    }
    let acme_v2 = world.upload("acme", "v2.csv", Vec::new()).await;
    let globex_v2 = world.upload("globex", "v2.csv", Vec::new()).await;
    let approved = file_id_of(&world, &acme_v2, FileState::Held).await;
    let rejected = file_id_of(&world, &globex_v2, FileState::Held).await;

    // The status page puts them first, with why and the commands that decide them.
    let page = reqwest::Client::new()
        .get(format!("{}/status", admin.url))
        .bearer_auth("op-secret")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for id in [approved, rejected] {
        assert!(page.contains(&format!("data-held-file-id=\"{id}\"")), "{id} held: {page}");
        assert!(page.contains(&format!("<code>memberlake approve {id}</code>")), "{page}");
    }
    assert!(page.contains("shrinks the active list from 200 to 0 members"), "{page}");

    // Only a held version can be approved or rejected: anything else is a 409 and stays as it was.
    for err in [admin.client.approve(v1[0]).await.unwrap_err(), admin.client.reject(v1[0]).await.unwrap_err()] {
        assert_eq!(err.status(), Some(409), "{err}");
        assert!(err.to_string().contains("only held versions"), "{err}");
    }
    assert!(world.file(v1[0]).await.active);
    assert_eq!(admin.client.approve(FileId(999_999)).await.unwrap_err().status(), Some(404));

    // One operator approves over the API (the version goes back to merging, its hold marked)...
    let r = admin.client.approve(approved).await.unwrap();
    assert_eq!(r.file.version.held_reason.as_deref(), Some("approved"), "{:?}", r.file);
    assert_ne!(r.file.state, FileState::Held);
    // ...the other reads the held version's report and rejects it with the CLI.
    let cli = |args: &[&str]| admin.cli("second-secret", args);
    let (ok, out, err) = cli(&["file", &rejected.to_string()]);
    assert!(ok, "{err}");
    for line in
        ["  members          0\n", "  removed          200\n", "  unchanged        0\n", "  held reason      shrinks"]
    {
        assert!(out.contains(line), "{line:?} in {out}");
    }
    assert!(out.contains(&format!("  base version     {}\n", v1[1])), "{out}");
    assert!(out.contains(&format!("`memberlake reject {rejected}`")), "{out}");
    let (ok, out, err) = cli(&["reject", &rejected.to_string(), "--json"]);
    assert!(ok, "{err}");
    let r: FileResponse = serde_json::from_str(&out).unwrap();
    assert_eq!((r.file.state, r.file.failure_reason.as_deref()), (FileState::Cancelled, Some("rejected by other")));
    // Decided, neither is held any more.
    let (ok, _, err) = cli(&["approve", &rejected.to_string()]);
    assert!(!ok && err.contains("409"), "{err}");
    let err = admin.client.reject(approved).await.unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");
    // The approved version activates; the rejected one never does.
    let acme = world.wait_finished(&acme_v2, FINISH).await;
    assert_eq!((acme.state, acme.active), (FileState::Ingested, true), "{acme:?}");
    assert!(world.file(v1[1]).await.active, "globex keeps its first version");
    assert!(!world.file(rejected).await.active);

    // Rollback: a body it cannot read is a 400; an advertiser whose active version is its first
    // has nothing to roll back to: 409, whether asked with no body, `{}` or the CLI. Nothing is
    // created.
    let files = world.files().await.len();
    let rollback = routes::ROLLBACK.path("initech");
    for (body, says) in [
        (json!({"to": v1[2].0, "from": 1}), "unknown field `from`"),
        (json!({"to": "first"}), "invalid type"),
        (json!({"to": 0}), "file id must be a positive integer"),
    ] {
        let (s, v) = admin.raw(reqwest::Method::POST, &rollback, Some(body.clone())).await;
        assert_eq!(s, 400, "{body}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{body}: {message:?} should say {says:?}");
    }
    for body in [None, Some(json!({}))] {
        let (s, v) = admin.raw(reqwest::Method::POST, &rollback, body).await;
        assert_eq!((s, &v["error"]["code"]), (409, &json!("conflict")), "{v}");
    }
    let initech = memberlake::ids::AdvertiserId::parse("initech").unwrap();
    assert_eq!(admin.client.rollback(&initech, None).await.unwrap_err().status(), Some(409));
    let (ok, _, err) = cli(&["rollback", "initech"]);
    assert!(!ok && err.contains("409"), "{err}");
    assert_eq!(world.files().await.len(), files, "a refused rollback creates no version");

    // The audit log has each decision with its actor, and nothing of what was refused.
    let log = admin.client.actions(&LimitQuery::default()).await.unwrap().actions;
    let actions: Vec<(&str, &str, String)> =
        log.iter().rev().map(|a| (a.actor.as_str(), a.action.as_str(), a.target.clone())).collect();
    assert_eq!(
        actions,
        [("ops", "approve", format!("file:{approved}")), ("other", "reject", format!("file:{rejected}"))]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_shows_a_file_in_flight_in_a_real_browser() {
    let world = TestWorld::new().await;
    let admin = Admin::start(&world, Some("ops:page-secret")).await;
    let _splitter = world.spawn("splitter", "splitter-a", &[("MEMBERLAKE_RANGE_SIZE", "16KiB")]);
    let key = world.upload("acme", "inflight.csv", list_of(0, 3_000)).await;
    let id = file_id_of(&world, &key, FileState::Ingesting).await;
    // Paused, it stays in flight while the page is looked at.
    admin.client.pause(id).await.unwrap();
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
    let o = admin.client.overview().await.unwrap();
    assert!(o.queued_bulk + o.queued_express > 0);
    assert!(o.files_in_flight.iter().any(|f| f.file_id == id && f.paused));
    assert!(o.recent_failures.iter().any(|f| f.object_key.ends_with(&failed)), "{:?}", o.recent_failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_every_admin_route_without_a_token() {
    let world = TestWorld::new().await;
    let admin = Admin::start(&world, Some("ops:doc-secret")).await;
    let r = reqwest::get(format!("{}{}", admin.url, routes::OPENAPI.template)).await.unwrap();
    assert_eq!(r.status(), 200, "the document needs no token");
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["info"]["title"], "memberlake admin API");
    for route in routes::ALL {
        let op = &doc["paths"][route.template][route.method.as_str().to_ascii_lowercase()];
        assert!(op.is_object(), "{route} is missing from the document");
    }
    // The typed client reads the same document.
    let typed = serde_json::to_value(admin.client.openapi().await.unwrap()).unwrap();
    assert_eq!(typed, doc);
    // The routes it describes are guarded.
    let r = reqwest::get(format!("{}{}", admin.url, routes::FILES.template)).await.unwrap();
    assert_eq!(r.status(), 401);
}

/// A list past its advertiser's lifespan matches nobody (`/v1/match` and `/v1/suppress` answer
/// "not a member"), is shown as expired by the admin API, the CLI and the status page, and is
/// counted by the splitter leader's gauge; a longer lifespan or a fresh upload brings it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_past_its_lifespan_matches_nobody_until_refreshed() {
    let world = TestWorld::new().await;
    let members: Vec<_> = emails(0, 20).iter().map(|e| md5_email(e)).collect();
    world.seed_list("acme", &members).await;
    world.seed_list("globex", &members).await;
    let admin = Admin::start(&world, Some("ops:ops-secret")).await;
    let (_matcher, url) = world.start_matcher(&[("MEMBERLAKE_VERSIONS_REFRESH", "200ms")]).await;
    let splitter = world.spawn("splitter", "splitter-lifespan", &[("MEMBERLAKE_HEALTH_INTERVAL", "200ms")]);
    let c = reqwest::Client::new();
    assert!(is_member(&c, &url, "acme", members[0]).await);

    // An hour: the fresh list keeps matching.
    let acme = memberlake_admin::AdvertiserId::parse("acme").unwrap();
    let set = admin.client.set_lifespan(&acme, Some(3600)).await.unwrap();
    assert_eq!((set.lifespan_secs, set.expired), (Some(3600), false));
    let expires = set.expires_at.expect("acme has an active list");
    assert!(expires > chrono::Utc::now() + chrono::Duration::minutes(59), "{expires}");
    // The list was uploaded two hours ago (the test moves its upload time back): it expired.
    sqlx::query("UPDATE files SET last_modified = now() - interval '2 hours' WHERE advertiser_id = 'acme'")
        .execute(world.catalog.pool())
        .await
        .unwrap();
    wait_for(Duration::from_secs(30), "acme's expired list to stop matching", || async {
        (!is_member(&c, &url, "acme", members[0]).await).then_some(())
    })
    .await;
    for h in &members {
        assert!(!is_member(&c, &url, "acme", *h).await, "an expired list matches nobody");
        assert!(is_member(&c, &url, "globex", *h).await, "another advertiser's list is untouched");
    }
    assert_eq!(suppressed(&c, &url, members[0], &["acme", "globex"]).await, ["globex"]);

    // Seen as expired by operators: the API, the CLI, the status page, the leader's gauge.
    let all = admin.client.lifespans().await.unwrap().lifespans;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!((all[0].advertiser_id.as_str(), all[0].expired), ("acme", true));
    let (ok, out, err) = admin.cli("ops-secret", &["lifespan"]);
    assert!(ok, "{err}");
    let line = out.lines().find(|l| l.starts_with("acme")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("1h") && line.ends_with("expired"), "{out}");
    let page = reqwest::get(format!("{}/?token=ops-secret", admin.url)).await.unwrap().text().await.unwrap();
    assert!(page.contains("<tr class=fail><td>acme</td>"), "{page}");
    wait_for(Duration::from_secs(30), "the leader's expired-lists gauge", || async {
        let (_, text) = splitter.get("/metrics").await.ok()?;
        (metric_value(&text, "memberlake_lists_expired") == 1.0).then_some(())
    })
    .await;

    // A longer lifespan (through the CLI) brings the list back; so does a fresh upload.
    let (ok, _, err) = admin.cli("ops-secret", &["lifespan", "acme", "30d"]);
    assert!(ok, "{err}");
    wait_for(Duration::from_secs(30), "acme's list matching again", || async {
        is_member(&c, &url, "acme", members[0]).await.then_some(())
    })
    .await;
    admin.client.set_lifespan(&acme, Some(3600)).await.unwrap();
    wait_for(Duration::from_secs(30), "acme expired again", || async {
        (!is_member(&c, &url, "acme", members[0]).await).then_some(())
    })
    .await;
    world.seed_list("acme", &members[..5]).await;
    wait_for(Duration::from_secs(30), "the fresh upload matching", || async {
        is_member(&c, &url, "acme", members[0]).await.then_some(())
    })
    .await;
    assert!(!is_member(&c, &url, "acme", members[10]).await, "the fresh list's members only");
    // Unlimited, and bad values refused with a 400 that says what is accepted.
    assert_eq!(admin.client.set_lifespan(&acme, None).await.unwrap().lifespan_secs, None);
    assert!(admin.client.lifespans().await.unwrap().lifespans.is_empty());
    let (status, body) =
        admin.raw(reqwest::Method::PUT, "/admin/v1/advertisers/acme/lifespan", Some(json!({"lifespan_secs": 0}))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("lifespan_secs must be"), "{body}");
    let (status, _) = admin.raw(reqwest::Method::PUT, "/admin/v1/advertisers/acme/lifespan", Some(json!({}))).await;
    assert_eq!(status, 400, "unlimited must be asked for");
    let actions = admin.client.actions(&LimitQuery { limit: Some(10) }).await.unwrap().actions;
    assert!(actions.iter().filter(|a| a.action == "lifespan").count() >= 4, "audited: {actions:?}");
}
