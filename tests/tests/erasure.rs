//! Erasure end to end (issue 20): a person on three advertisers' lists is erased by email
//! through the admin API; every matcher answer turns "not a member" at once, the erasure
//! completes with no store row and no work object (manifest, diff, run) holding the hash, the
//! audit log names the hash and never the email, and a re-upload of an old file containing the
//! person does not bring them back (counted as erased). The CLI erases a second person by hash.

use std::time::Duration;

use memberlake::catalog::FileState;
use memberlake::filter::{FilterBinding, MemberFilter};
use memberlake::ids::EmailHash;
use memberlake::work::WorkLocation;
use memberlake_tests::*;
use serde_json::json;

const FINISH: Duration = Duration::from_secs(120);

/// As an advertiser would list the person: case and spaces the normalization removes.
const PERSON: &str = "  Erased.Person@Example.COM ";

fn list_with(members: &[String], extra: &str) -> Vec<u8> {
    let mut bytes = list(members);
    bytes.extend_from_slice(format!("{extra}\n").as_bytes());
    bytes
}

/// Every work object (runs, manifest buckets, diffs; filters holding its key exactly) of the
/// world that holds `hash`.
async fn work_objects_holding(world: &TestWorld, hash: EmailHash) -> (usize, Vec<String>) {
    let work = WorkLocation::open(Some(&world.work_url), &world.lake).unwrap();
    let keys = work.list("versions/").await.unwrap();
    let mut holding = Vec::new();
    for key in &keys {
        let bytes = work.get(key).await.unwrap();
        let holds = if key.ends_with(".fuse") {
            // A bucket's filter: an exact one (small buckets) holds its members' leading bytes.
            let filter = MemberFilter::decode(&bytes, 16, FilterBinding::of_key(key)).unwrap();
            !filter.is_approximate() && filter.contains(&hash)
        } else {
            memberlake::manifest::decode_run(&bytes).unwrap().1.contains(&hash)
        };
        if holds {
            holding.push(key.clone());
        }
    }
    (keys.len(), holding)
}

const ADVERTISERS: [&str; 3] = ["acme", "globex", "initech"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_person_leaves_every_list_and_an_old_file_does_not_bring_them_back() {
    let world = TestWorld::new().await;
    let admin = Admin::start(&world, Some("ops:ops-secret")).await;
    let splitter = world.spawn(
        "splitter",
        "splitter-a",
        &[("MEMBERLAKE_RANGE_SIZE", "32KiB"), ("MEMBERLAKE_ERASURE_INTERVAL", "500ms")],
    );
    let worker = world.spawn("compute-worker", "worker-0", &[]);
    let (matcher, url) = world.start_matcher(&[]).await;
    let c = reqwest::Client::new();
    let person = md5_email("erased.person@example.com");
    let others = emails(0, 3000);

    // acme: two versions that both hold the person (v1's manifest is retained for rollback);
    // globex and initech: one each.
    let old_file = list_with(&others, PERSON);
    let key = world.upload("acme", "v1.csv", old_file.clone()).await;
    assert_eq!(world.wait_finished(&key, FINISH).await.state, FileState::Ingested);
    let mut acme_v2 = others.clone();
    acme_v2.extend(emails(50_000, 100));
    let key = world.upload("acme", "v2.csv", list_with(&acme_v2, PERSON)).await;
    assert_eq!(world.wait_finished(&key, FINISH).await.state, FileState::Ingested);
    for adv in ["globex", "initech"] {
        let key = world.upload(adv, "list.csv", list_with(&others[..1000], PERSON)).await;
        assert_eq!(world.wait_finished(&key, FINISH).await.state, FileState::Ingested);
    }
    for adv in ["acme", "globex", "initech"] {
        wait_for(Duration::from_secs(10), "the matcher to follow the activations", || async {
            is_member(&c, &url, adv, person).await.then_some(())
        })
        .await;
    }
    let (_, holding) = work_objects_holding(&world, person).await;
    assert!(holding.len() >= 4, "manifests of acme v1, v2, globex, initech: {holding:?}");

    // ---- the erasure, by email, through the admin API; a repeat is the same erasure
    let (status, body) = admin.raw(reqwest::Method::POST, "/admin/v1/erasures", Some(json!({"email": PERSON}))).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["email_hash"], person.to_hex(), "hashed as ingestion hashes a line");
    let (status, again) =
        admin.raw(reqwest::Method::POST, "/admin/v1/erasures", Some(json!({"email_hash": person.to_hex()}))).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!((&again["email_hash"], &again["requested_at"]), (&body["email_hash"], &body["requested_at"]));

    // Every matcher answer turns at once (the notification), before the leader's passes.
    wait_for(Duration::from_secs(5), "the matcher to stop answering for the erased person", || async {
        let mut none = true;
        for adv in ["acme", "globex", "initech"] {
            none &= !is_member(&c, &url, adv, person).await;
        }
        none.then_some(())
    })
    .await;
    assert!(suppressed(&c, &url, person, &ADVERTISERS).await.is_empty());
    for h in hashes(&others[..1000]).iter().step_by(97) {
        assert_eq!(suppressed(&c, &url, *h, &ADVERTISERS).await, ["acme", "globex", "initech"], "everyone else stays");
    }

    // ---- it completes: no store row, no work object holds the hash
    let path = format!("/admin/v1/erasures/{}", person.to_hex());
    let done = wait_for(Duration::from_secs(60), "the erasure to complete", || async {
        let (status, view) = admin.raw(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "{view}");
        (view["state"] == "complete").then_some(view)
    })
    .await;
    assert!(done["objects_rewritten"].as_i64().unwrap() >= 4, "{done}");
    assert!(world.store.read_changes(&person).await.unwrap().is_empty(), "the partition is gone");
    let (objects, holding) = work_objects_holding(&world, person).await;
    assert!(holding.is_empty(), "work objects still holding the erased hash: {holding:?}");
    assert!(objects > 0);
    let (status, _) = admin.raw(reqwest::Method::GET, &format!("/admin/v1/erasures/{}", "0".repeat(32)), None).await;
    assert_eq!(status, 404);

    // Audited by hash, never by email.
    let actions = world.catalog.operator_actions(20).await.unwrap();
    let erase = actions.iter().find(|a| a.action == "erase").expect("an audited erasure");
    assert_eq!(erase.target, format!("email_hash:{}", person.to_hex()));
    assert_eq!(erase.actor, "ops");
    assert_eq!(actions.iter().filter(|a| a.action == "erase").count(), 1, "a repeat is not a second erasure");

    // ---- an old file uploaded again does not bring the person back
    let key = world.upload("acme", "v1-again.csv", old_file).await;
    let again = world.wait_finished(&key, FINISH).await;
    assert_eq!(again.state, FileState::Ingested, "{again:?}");
    assert!(again.active);
    assert_eq!(again.version.erased, 1, "the file's report counts the erased member");
    assert_eq!(again.version.members, Some(3000));
    assert!(world.store.read_changes(&person).await.unwrap().is_empty(), "no row, not even an absent one");
    wait_for(Duration::from_secs(10), "the matcher to follow the re-upload", || async {
        (!is_member(&c, &url, "acme", hashes(&emails(50_000, 1))[0]).await).then_some(())
    })
    .await;
    assert!(!is_member(&c, &url, "acme", person).await);
    assert!(is_member(&c, &url, "acme", md5_email(&others[2999])).await);

    // ---- a second person, by hash, through the CLI, waited for; a matcher started afterwards
    // knows both erasures from its first load
    let second = md5_email(&others[10]);
    let (ok, out, err) = admin.cli("ops-secret", &["erase", &second.to_hex(), "--wait", "--timeout", "60s"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains(&second.to_hex()) && out.contains("complete"), "{out}");
    let (ok, out, err) = admin.cli("ops-secret", &["erase", &others[10], "--wait"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("already"), "the same person by email: the same erasure: {out}");
    let (_late, late_url) = world.start_matcher(&[]).await;
    for h in [person, second] {
        assert!(suppressed(&c, &late_url, h, &ADVERTISERS).await.is_empty());
    }
    assert!(world.store.read_changes(&second).await.unwrap().is_empty());

    let (_, m) = splitter.get("/metrics").await.unwrap();
    assert_eq!(metric_value(&m, "memberlake_erasures_completed_total"), 2.0, "{m}");
    assert_eq!(metric_value(&m, "memberlake_erasures_pending"), 0.0, "{m}");
    let (_, m) = worker.get("/metrics").await.unwrap();
    assert_eq!(metric_value(&m, "memberlake_worker_hashes_erased_total"), 1.0, "{m}");
    let (_, m) = matcher.get("/metrics").await.unwrap();
    assert_eq!(metric_value(&m, "memberlake_matcher_erased_hashes"), 2.0, "{m}");
    let logs = [&admin.meta, &splitter, &worker, &matcher].map(|s| s.log.clone());
    assert_logs_free_of(&logs, &[PERSON.trim().to_owned(), "erased.person@example.com".to_owned(), others[10].clone()]);
}
