//! Change-proportional list versions end to end (`docs/versions.md`), with real processes: a
//! re-upload writes only what changed, retirement deletes only what changed, an identical
//! re-upload writes nothing, a list emptied to zero is held until approved, a store written by
//! an earlier release keeps answering. Every test ends with an exact check of the store's rows
//! and of the matcher's answers.

use std::collections::HashMap;
use std::time::Duration;

use memberlake::catalog::{FileRecord, FileState};
use memberlake::ids::EmailHash;
use memberlake_tests::*;

const FINISH: Duration = Duration::from_secs(120);

/// Every hash of `members` is a member, and every hash of `others` is not, as the matcher
/// answers (every 7th, to keep it quick) and as the store says at the file's version (all).
async fn assert_answers(world: &TestWorld, url: &str, file: &FileRecord, members: &[EmailHash], others: &[EmailHash]) {
    let client = reqwest::Client::new();
    let adv = file.advertiser_id.as_str();
    assert_eq!(stored_members(&world.store, adv, file.file_id, members).await, members.len(), "members in the store");
    assert_eq!(stored_members(&world.store, adv, file.file_id, others).await, 0, "non-members in the store");
    wait_for(Duration::from_secs(10), "the matcher to follow the activation", || async {
        let mut all = true;
        for h in members.iter().step_by(7) {
            all &= is_member(&client, url, adv, *h).await;
        }
        for h in others.iter().step_by(7) {
            all &= !is_member(&client, url, adv, *h).await;
        }
        all.then_some(())
    })
    .await;
}

async fn wait_retired(world: &TestWorld, file: &FileRecord) -> FileRecord {
    wait_for(Duration::from_secs(60), "the replaced version's rows retired", || async {
        Some(world.file(file.file_id).await).filter(|f| f.retired_at.is_some())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_upload_writes_and_retires_only_what_changed() {
    let world = TestWorld::new().await;
    let pipeline = world.start_pipeline("256KiB", 2).await;
    let url = &pipeline.matcher_url;
    let v1_members = emails(0, 20_000);
    let key1 = world.upload("acme", "list-v1.csv", list(&v1_members)).await;
    let v1 = world.wait_finished(&key1, FINISH).await;
    assert_eq!(v1.state, FileState::Ingested, "{v1:?}");
    assert!(v1.active);
    assert_eq!(v1.version.base_version, None, "a first version is written in full");
    assert_eq!((v1.version.members, v1.version.added, v1.version.removed), (Some(20_000), 20_000, 0));
    assert_eq!(v1.version.rows_written, 20_000);
    assert_eq!(world.count_rows().await, 20_000);

    // v2: 1 % removed (the first 200), 1 % added.
    let v2_members: Vec<String> = v1_members[200..].iter().cloned().chain(emails(100_000, 200)).collect();
    let key2 = world.upload("acme", "list-v2.csv", list(&v2_members)).await;
    let v2 = world.wait_finished(&key2, FINISH).await;
    assert_eq!(v2.state, FileState::Ingested, "{v2:?}");
    assert!(v2.active);
    assert_eq!(v2.version.base_version, Some(v1.file_id));
    assert_eq!((v2.version.members, v2.version.added, v2.version.removed), (Some(20_000), 200, 200));
    assert_eq!(v2.version.rows_written, 400, "only the change reaches the store");
    assert_eq!(world.count_rows().await, 20_400);
    let removed = hashes(&v1_members[..200]);
    assert_answers(&world, url, &v2, &hashes(&v2_members), &removed).await;

    // v1's retirement deletes the removed members' rows (v1's present one and v2's absent one,
    // one range delete each), nothing else.
    let v1 = wait_retired(&world, &v1).await;
    assert_eq!(v1.version.superseded_by, Some(v2.file_id));
    assert_eq!(v1.version.rows_deleted, 200);
    let rows = world.count_rows_by().await;
    assert_eq!(rows, HashMap::from([(("acme".to_owned(), true), 20_000)]), "one present row per member, no absent row");
    assert_answers(&world, url, &v2, &hashes(&v2_members), &removed).await;

    // An identical re-upload (same bytes, another name) writes nothing and is still recorded.
    let key3 = world.upload("acme", "list-v3.csv", list(&v2_members)).await;
    let v3 = world.wait_finished(&key3, FINISH).await;
    assert_eq!(v3.state, FileState::Ingested, "{v3:?}");
    assert!(v3.active);
    assert_eq!(
        (v3.version.members, v3.version.added, v3.version.removed, v3.version.rows_written),
        (Some(20_000), 0, 0, 0)
    );
    let v2 = wait_retired(&world, &v2).await;
    assert_eq!(v2.version.rows_deleted, 0);
    assert_eq!(world.count_rows().await, 20_000);
    assert_answers(&world, url, &v3, &hashes(&v2_members), &removed).await;
    assert_logs_free_of(&pipeline.logs(), &v1_members);
    // The leader's version metrics: three activations, 20,400 rows written (20,000 + 400 + 0).
    let (_, m) = pipeline.splitters[0].get("/metrics").await.unwrap();
    assert_eq!(metric_value(&m, "memberlake_versions_activated_total"), 3.0, "{m}");
    assert_eq!(metric_value(&m, "memberlake_version_rows_written_total"), 20_400.0, "{m}");
    assert_eq!(metric_value(&m, "memberlake_version_members_removed_total"), 200.0, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_emptied_to_zero_is_held_then_approved_and_answers_nobody() {
    let world = TestWorld::new().await;
    let pipeline = world.start_pipeline("256KiB", 1).await;
    let members = emails(0, 3_000);
    let v1 = world.wait_finished(&world.upload("acme", "v1.csv", list(&members)).await, FINISH).await;
    assert!(v1.active);

    // A shrink of more than half is held: v1 keeps answering.
    let key2 = world.upload("acme", "v2.csv", Vec::new()).await;
    let held = wait_for(FINISH, "v2 held", || async {
        world.files().await.into_iter().find(|f| f.object_key.ends_with(&key2) && f.state == FileState::Held)
    })
    .await;
    assert!(held.version.held_reason.as_deref().unwrap_or("").contains("shrinks"), "{held:?}");
    assert_eq!((held.version.members, held.version.removed), (Some(0), 3_000));
    assert_answers(&world, &pipeline.matcher_url, &v1, &hashes(&members), &[]).await;
    assert!(world.file(v1.file_id).await.active, "a held version does not activate");

    world.catalog.approve_file("ops", held.file_id).await.unwrap();
    let v2 = world.wait_finished(&key2, FINISH).await;
    assert_eq!(v2.state, FileState::Ingested, "{v2:?}");
    assert!(v2.active);
    assert_answers(&world, &pipeline.matcher_url, &v2, &[], &hashes(&members)).await;
    wait_retired(&world, &v1).await;
    assert_eq!(world.count_rows().await, 0, "nobody is a member: no row at all");
    let actions = world.catalog.operator_actions(10).await.unwrap();
    assert!(actions.iter().any(|a| a.action == "approve" && a.actor == "ops"), "audited: {actions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_version_rejected_leaves_the_active_one_and_no_row_behind() {
    let world = TestWorld::new().await;
    let pipeline = world.start_pipeline("256KiB", 1).await;
    let members = emails(0, 4_000);
    let v1 = world.wait_finished(&world.upload("acme", "v1.csv", list(&members)).await, FINISH).await;
    // v2 keeps a quarter and adds 500: held; rejected, its rows are undone.
    let v2_members: Vec<String> = members[..1_000].iter().cloned().chain(emails(50_000, 500)).collect();
    let key2 = world.upload("acme", "v2.csv", list(&v2_members)).await;
    let held = wait_for(FINISH, "v2 held", || async {
        world.files().await.into_iter().find(|f| f.object_key.ends_with(&key2) && f.state == FileState::Held)
    })
    .await;
    assert_eq!(held.version.rows_written, 3_500, "3,000 removed + 500 added, written but not active");
    world.catalog.reject_file("ops", held.file_id).await.unwrap();
    let undone = wait_retired(&world, &held).await;
    assert_eq!(undone.state, FileState::Cancelled);
    assert_eq!(undone.version.rows_deleted, 3_500);
    assert_eq!(world.count_rows().await, 4_000, "only v1's rows");
    assert_answers(&world, &pipeline.matcher_url, &v1, &hashes(&members), &hashes(&emails(50_000, 500))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_written_by_an_earlier_release_keeps_answering_and_is_replaced_in_full() {
    let world = TestWorld::new().await;
    // A legacy version: rows in `memberships`, as releases before change-proportional versions
    // wrote them.
    let members = emails(0, 2_000);
    let legacy = world.seed_list("acme", &hashes(&members)).await;
    let pipeline = world.start_pipeline("256KiB", 1).await;
    let legacy_file = world.file(memberlake::ids::FileId(legacy)).await;
    assert_eq!(legacy_file.version.store_format, "rows");
    let client = reqwest::Client::new();
    for h in hashes(&members).iter().step_by(50) {
        assert!(is_member(&client, &pipeline.matcher_url, "acme", *h).await, "the legacy version answers");
    }
    // The next upload is written in full as change rows; the legacy rows are retired by the
    // legacy pass.
    let v2_members: Vec<String> = members[500..].iter().cloned().chain(emails(9_000, 100)).collect();
    let v2 = world.wait_finished(&world.upload("acme", "v2.csv", list(&v2_members)).await, FINISH).await;
    assert!(v2.active, "{v2:?}");
    assert_eq!(v2.version.base_version, None);
    assert_eq!(v2.version.rows_written, 1_600);
    assert_answers(&world, &pipeline.matcher_url, &v2, &hashes(&v2_members), &hashes(&members[..500])).await;
    wait_retired(&world, &legacy_file).await;
    assert_eq!(world.count_legacy_rows().await, 0);
    assert_eq!(world.count_rows().await, 1_600);
}

async fn wait_state(world: &TestWorld, id: memberlake::ids::FileId, state: FileState) -> FileRecord {
    wait_for(FINISH, &format!("file {id} {state}"), || async {
        Some(world.file(id).await).filter(|f| f.state == state)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_restores_the_previous_version_at_the_cost_of_the_difference() {
    let world = TestWorld::new().await;
    let pipeline = world.start_pipeline("256KiB", 1).await;
    let url = &pipeline.matcher_url;
    let adv = memberlake::ids::AdvertiserId::parse("acme").unwrap();
    let members = emails(0, 20_000);
    let v1 = world.wait_finished(&world.upload("acme", "v1.csv", list(&members)).await, FINISH).await;
    let first = world.catalog.rollback("ops", &adv, None).await.unwrap_err();
    assert!(first.to_string().contains("no earlier one"), "a first version has nothing to roll back to: {first}");

    // A bad list: 3,000 members lost, 500 strangers — not enough to be held.
    let junk = emails(70_000, 500);
    let bad: Vec<String> = members[3_000..].iter().cloned().chain(junk.iter().cloned()).collect();
    let v2 = world.wait_finished(&world.upload("acme", "v2.csv", list(&bad)).await, FINISH).await;
    assert!(v2.active, "{v2:?}");
    assert_answers(&world, url, &v2, &hashes(&bad), &hashes(&members[..3_000])).await;

    let rollback = world.catalog.rollback("ops", &adv, None).await.unwrap();
    assert_eq!(rollback.version.rollback_of, Some(v1.file_id));
    assert_eq!(rollback.version.base_version, Some(v2.file_id));
    let again = world.catalog.rollback("ops", &adv, None).await.unwrap_err();
    assert!(again.to_string().contains("before a rollback"), "one version in flight at a time: {again}");

    let restored = wait_state(&world, rollback.file_id, FileState::Ingested).await;
    assert!(restored.active, "{restored:?}");
    assert_eq!(
        (restored.version.members, restored.version.added, restored.version.removed, restored.version.rows_written),
        (Some(20_000), 3_000, 500, 3_500),
        "a rollback writes the difference, nothing else"
    );
    assert_eq!(restored.ranges_total, 0, "nothing was ingested again");
    assert_answers(&world, url, &restored, &hashes(&members), &hashes(&junk)).await;

    // v2 retires from the rollback's diff: one present row per member is left, nothing else.
    wait_retired(&world, &v2).await;
    let rows = world.count_rows_by().await;
    assert_eq!(rows, HashMap::from([(("acme".to_owned(), true), 20_000)]));
    assert_answers(&world, url, &restored, &hashes(&members), &hashes(&junk)).await;
    let actions = world.catalog.operator_actions(10).await.unwrap();
    assert!(
        actions.iter().any(|a| a.action == "rollback" && a.target == "advertiser:acme" && a.actor == "ops"),
        "audited: {actions:?}"
    );

    // Rolling back again restores v2 (the version active before the rollback).
    let forward = world.catalog.rollback("ops", &adv, None).await.unwrap();
    assert_eq!(forward.version.rollback_of, Some(v2.file_id));
    let forward = wait_state(&world, forward.file_id, FileState::Ingested).await;
    assert_eq!((forward.version.added, forward.version.removed), (500, 3_000));
    assert_answers(&world, url, &forward, &hashes(&bad), &hashes(&members[..3_000])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_objects_go_when_nothing_reads_them_and_manifests_after_their_retention() {
    let world = TestWorld::new().await;
    let work = memberlake::work::WorkLocation::open(Some(&world.work_url), &world.lake).unwrap();
    let _meta =
        world.spawn("meta-service", "meta-a", &[("MEMBERLAKE_ADMIN_ADDR", &format!("127.0.0.1:{}", free_port()))]);
    let _splitter = world.spawn(
        "splitter",
        "splitter-a",
        &[("MEMBERLAKE_RANGE_SIZE", "64KiB"), ("MEMBERLAKE_MANIFEST_RETENTION", "3s")],
    );
    let _worker = world.spawn("compute-worker", "worker-0", &[]);
    let adv = memberlake::ids::AdvertiserId::parse("acme").unwrap();
    let members = emails(0, 5_000);
    let v1 = world.wait_finished(&world.upload("acme", "v1.csv", list(&members)).await, FINISH).await;
    let dir = |f: &FileRecord| memberlake::work::VersionDir::new(&adv, f.file_id.into());
    let objects = |prefix: String| {
        let work = work.clone();
        async move { work.list(&prefix).await.unwrap() }
    };
    // An active version's runs go (only its merge read them); its manifest stays.
    wait_for(FINISH, "v1's runs deleted", || async { objects(dir(&v1).runs_prefix()).await.is_empty().then_some(()) })
        .await;
    assert!(!objects(format!("{}/manifest", dir(&v1).prefix())).await.is_empty(), "the active manifest is kept");

    let v2_members: Vec<String> = members[100..].iter().cloned().chain(emails(40_000, 100)).collect();
    let v2 = world.wait_finished(&world.upload("acme", "v2.csv", list(&v2_members)).await, FINISH).await;
    assert!(v2.active);
    // v1's rows retire, then after the retention its manifest expires and every object goes.
    let expired = wait_for(FINISH, "v1's manifest expired", || async {
        Some(world.file(v1.file_id).await).filter(|f| f.version.manifest_expired_at.is_some())
    })
    .await;
    assert!(expired.retired_at.is_some_and(|r| expired.version.manifest_expired_at.unwrap() >= r));
    wait_for(FINISH, "v1's objects deleted", || async {
        objects(dir(&v1).prefix().to_owned()).await.is_empty().then_some(())
    })
    .await;
    let refused = world.catalog.rollback("ops", &adv, None).await.unwrap_err();
    assert!(refused.to_string().contains("retention"), "{refused}");
    // v2 is active: its manifest and diff stay, whatever the retention.
    assert!(!objects(format!("{}/manifest", dir(&v2).prefix())).await.is_empty());
    assert!(world.file(v2.file_id).await.version.manifest_expired_at.is_none());
    let stored = stored_members(&world.store, "acme", v2.file_id, &hashes(&v2_members)).await;
    assert_eq!(stored, v2_members.len());
}

/// `memberlake check` with the world's settings: exit code and stdout.
fn check(world: &TestWorld, list_path: &std::path::Path, extra: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(binary("memberlake"))
        .arg("check")
        .arg(list_path)
        .args(extra)
        .env_clear()
        .envs(world.service_env())
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("stack backtrace"), "{stderr}");
    (out.status.code().unwrap_or(-1), format!("{stdout}{stderr}"))
}

fn field(report: &str, name: &str) -> i64 {
    report
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(name).map(|v| v.split_whitespace().next().unwrap().parse().unwrap()))
        .unwrap_or_else(|| panic!("{name} in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_predicts_what_a_version_would_change_and_whether_it_would_be_held() {
    let world = TestWorld::new().await;
    let _pipeline = world.start_pipeline("64KiB", 1).await;
    let v1_members = emails(0, 20_000);
    let key1 = world.upload("acme", "list-v1.csv", list(&v1_members)).await;
    let v1 = world.wait_finished(&key1, FINISH).await;
    assert_eq!((v1.state, v1.active), (FileState::Ingested, true), "{v1:?}");

    // v2: the first 200 members gone, 300 new ones (one of them a person erased since), 10
    // duplicated lines and 5 rejected rows.
    let newcomers = emails(100_000, 300);
    let admin = Admin::start(&world, Some("ops:ops-secret")).await;
    let (status, body) =
        admin.raw(reqwest::Method::POST, "/admin/v1/erasures", Some(serde_json::json!({"email": newcomers[7]}))).await;
    assert_eq!(status, 202, "{body}");
    let mut v2: Vec<String> = v1_members[200..].iter().cloned().chain(newcomers.iter().cloned()).collect();
    v2.extend(v1_members[1_000..1_010].iter().cloned());
    v2.extend(["no-at-sign", "also.no.at", "x", "y", "z"].map(String::from));
    let dir = world.stack.scratch.join(unique("check"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("list-v2.csv");
    std::fs::write(&path, list(&v2)).unwrap();
    let (code, report) = check(&world, &path, &["--advertiser", "acme", "--range-size", "64KiB"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(field(&report, "valid"), 20_110, "{report}");
    assert_eq!(field(&report, "rejected"), 5, "{report}");
    assert_eq!(field(&report, "duplicates"), 10, "{report}");
    assert_eq!(field(&report, "erased"), 1, "the erased newcomer is dropped as a merge drops it: {report}");
    assert_eq!(field(&report, "members"), 20_099, "{report}");
    assert_eq!((field(&report, "added"), field(&report, "removed")), (299, 200), "{report}");
    assert_eq!(field(&report, "unchanged"), 19_800, "{report}");
    assert!(report.contains("range(s) of 64.0 KiB"), "{report}");
    assert!(report.contains("at bytes"), "rejects come with sample offsets: {report}");

    // What ingestion then does is what the dry run said.
    let key2 = world.upload("acme", "list-v2.csv", std::fs::read(&path).unwrap()).await;
    let f2 = world.wait_finished(&key2, FINISH).await;
    assert_eq!(f2.state, FileState::Ingested, "{f2:?}");
    assert_eq!((f2.version.members, f2.version.added, f2.version.removed), (Some(20_099), 299, 200));
    assert_eq!((f2.rows_ingested, f2.rows_rejected), (20_110, 5));

    // A list that shrinks the active one past the guard: the dry run says it would be held.
    let small = dir.join("small.csv");
    std::fs::write(&small, list(&v1_members[..5_000])).unwrap();
    let (code, report) = check(&world, &small, &["--advertiser", "acme"]);
    assert_eq!(code, 9, "{report}");
    assert!(report.contains("would be held") && report.contains("hint:"), "{report}");
    // Unreadable: a truncated gzip object would fail.
    let bad = dir.join("bad.csv.gz");
    std::fs::write(&bad, b"\x1f\x8b\x08\x00broken").unwrap();
    let (code, report) = check(&world, &bad, &[]);
    assert_eq!(code, 10, "{report}");
    // Nothing of the dry runs reached the catalog.
    assert_eq!(world.files().await.len(), 2);
}
