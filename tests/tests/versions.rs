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

fn list(members: &[String]) -> Vec<u8> {
    members.iter().flat_map(|e| format!("{e}\n").into_bytes()).collect()
}

fn hashes(members: &[String]) -> Vec<EmailHash> {
    members.iter().map(|e| md5_email(e)).collect()
}

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
