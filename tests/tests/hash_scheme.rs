//! A SHA-256 deployment end to end (issue 20): raw and pre-hashed rows ingest as SHA-256 of the
//! normalized email, a pre-hashed row of MD5's width is rejected with its reason, the matcher's
//! grammar and OpenAPI document take 64 hex digits, an erasure hashes with SHA-256, and a
//! process of the other scheme refuses to start against the store (and `memberlake migrate`
//! refuses to record another scheme).

use std::time::Duration;

use memberlake::catalog::{FileState, PriorityKnobs};
use memberlake::ids::{EmailHash, HashScheme};
use memberlake_tests::*;
use serde_json::{json, Value};

const FINISH: Duration = Duration::from_secs(120);

fn sha256_email(email: &str) -> EmailHash {
    HashScheme::Sha256.hash(email.trim().to_lowercase().as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sha256_deployment_ingests_answers_and_refuses_the_other_scheme() {
    let world = TestWorld::new_sha256().await;
    let admin = Admin::start(&world, Some("ops:ops-secret")).await;
    let _splitter = world.spawn("splitter", "splitter-a", &[("MEMBERLAKE_RANGE_SIZE", "16KiB")]);
    let _worker = world.spawn("compute-worker", "worker-0", &[]);
    let (_matcher, url) = world.start_matcher(&[]).await;
    let c = reqwest::Client::new();

    // Raw emails in several shapes, a row pre-hashed with SHA-256 (upper case), an MD5-width
    // row (rejected: it cannot be a SHA-256), and a junk row.
    let raw = emails(0, 2000);
    let prehashed = sha256_email("someone.prehashed@example.com");
    let mut list = String::from("email\n");
    for (i, e) in raw.iter().enumerate() {
        list += &match i % 3 {
            0 => format!("{e}\n"),
            1 => format!("  \"{}\"  \n", e.to_uppercase()),
            _ => format!("{e}\r\n"),
        };
    }
    list += &format!("{}\n", prehashed.to_hex().to_uppercase());
    list += &format!("{}\n", md5_email("md5.width@example.com").to_hex());
    list += "not-an-email\n";
    let key = world.upload("acme", "sha.csv", list.into_bytes()).await;
    let file = world.wait_finished(&key, FINISH).await;
    assert_eq!(file.state, FileState::Ingested, "{file:?}");
    assert_eq!((file.version.members, file.rows_rejected), (Some(2001), 2), "{file:?}");
    let knobs = PriorityKnobs { per_level: 1.0, per_log_weight: 0.0, aging_per_second: 0.0, per_size_doubling: 0.0 };
    let detail = world.catalog.file_detail(file.file_id, &knobs).await.unwrap().unwrap();
    let mut by_reason: Vec<(String, i64)> = detail.rejected_by_reason.into_iter().map(|r| (r.reason, r.rows)).collect();
    by_reason.sort();
    assert_eq!(by_reason, [("missing_at".to_owned(), 1), ("wrong_hash_length".to_owned(), 1)]);

    // The store holds 32-byte keys: SHA-256 of each normalized email, and the pre-hashed row.
    let mut members: Vec<EmailHash> = raw.iter().map(|e| sha256_email(e)).collect();
    members.push(prehashed);
    assert!(members.iter().all(|h| h.as_bytes().len() == 32));
    assert_eq!(stored_members(&world.store, "acme", file.file_id, &members).await, members.len());
    wait_for(Duration::from_secs(10), "the matcher to follow the activation", || async {
        is_member(&c, &url, "acme", members[0]).await.then_some(())
    })
    .await;
    for h in members.iter().step_by(101).chain([&prehashed]) {
        assert!(is_member(&c, &url, "acme", *h).await);
    }
    assert!(!is_member(&c, &url, "acme", sha256_email("nobody@example.com")).await);
    let r = c
        .post(format!("{url}/v1/suppress"))
        .json(&json!({"email_hash": members[1].to_hex(), "advertiser_ids": ["acme", "globex"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["members"], json!(["acme"]));

    // An MD5-width hash is a 400 saying what this deployment takes; the document says it too.
    let md5 = md5_email(&raw[0]);
    let r = c.get(format!("{url}/v1/match?advertiser_id=acme&email_hash={md5}")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(body.to_string().contains("64 hexadecimal digits (sha256"), "{body}");
    let doc: Value = c.get(format!("{url}/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    let schema = &doc["components"]["schemas"]["EmailHash"];
    assert_eq!((schema["pattern"].as_str(), schema["maxLength"].as_u64()), (Some("^[0-9A-Fa-f]{64}$"), Some(64)));

    // An erasure by email hashes with SHA-256 (the API, and the CLI locally).
    let (status, view) =
        admin.raw(reqwest::Method::POST, "/admin/v1/erasures", Some(json!({"email": raw[3].to_uppercase()}))).await;
    assert_eq!(status, 202, "{view}");
    assert_eq!(view["email_hash"], sha256_email(&raw[3]).to_hex());
    let (ok, out, err) = admin.cli("ops-secret", &["--hash-scheme", "sha256", "erase", &raw[4]]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains(&sha256_email(&raw[4]).to_hex()), "{out}");
    wait_for(Duration::from_secs(10), "the erased members to stop matching", || async {
        (!is_member(&c, &url, "acme", sha256_email(&raw[3])).await
            && !is_member(&c, &url, "acme", sha256_email(&raw[4])).await)
            .then_some(())
    })
    .await;

    // The other scheme is refused: a matcher and a worker with MD5 do not start, and migrate
    // does not record MD5 over SHA-256.
    for binary in ["matcher-api", "compute-worker"] {
        let mut wrong = world.spawn(binary, &format!("{binary}-md5"), &[("MEMBERLAKE_HASH", "md5")]);
        let status = wrong.wait_exit(Duration::from_secs(30)).await;
        assert!(!status.success(), "{binary} started against a store of the other scheme");
        let log = wrong.log_text();
        assert!(log.contains("the store holds sha256 email hashes") && log.contains("MEMBERLAKE_HASH=sha256"), "{log}");
    }
    let mut env = world.service_env();
    env.insert("MEMBERLAKE_HASH".into(), "md5".into());
    let out = std::process::Command::new(binary("memberlake")).arg("migrate").envs(&env).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the store holds sha256 email hashes"), "{stderr}");
}
