//! Membership filters end to end (issue 21): workers build each version's filter with its
//! manifest, the matcher loads the filter of exactly the active version, answers "not a member"
//! for a hash the filter rules out without reading the store, and never gives a false "no" —
//! across a new version, a rollback and an erasure; a version merged without filters, and one
//! over a matcher's memory budget, are answered from the store, visibly in the metrics.

use std::time::Duration;

use memberlake::catalog::FileState;
use memberlake::ids::{AdvertiserId, EmailHash};
use memberlake_tests::*;
use serde_json::json;

const FINISH: Duration = Duration::from_secs(120);

/// The sum of the series of `/metrics` text that begin with `series` (a name with labels).
fn series(text: &str, series: &str) -> f64 {
    text.lines().filter_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse::<f64>().ok()).sum()
}

async fn metrics(service: &Service) -> String {
    service.get("/metrics").await.unwrap().1
}

async fn store_reads(matcher: &Service) -> f64 {
    metric_value(&metrics(matcher).await, "memberlake_matcher_store_reads_total")
}

/// Filters `matcher` has attached to a version so far (the activation-lag histogram's count).
async fn attached(matcher: &Service) -> f64 {
    series(&metrics(matcher).await, "memberlake_matcher_filter_activation_lag_seconds_count")
}

/// Waits until `matcher` has attached `n` filters in all, and serves one version with its filter.
async fn filters_attached(matcher: &Service, n: f64) {
    wait_for(Duration::from_secs(20), &format!("{n} filters attached"), || async {
        let m = metrics(matcher).await;
        let attached = series(&m, "memberlake_matcher_filter_activation_lag_seconds_count");
        let loaded = series(&m, r#"memberlake_matcher_filter_versions{state="loaded"}"#);
        (attached == n && loaded == 1.0).then_some(())
    })
    .await;
}

/// The non-members of `others` ruled out by a filter: each one's "no" is an absent probe.
async fn ruled_out(c: &reqwest::Client, url: &str, matcher: &Service, adv: &str, others: &[EmailHash]) {
    let absent = r#"memberlake_matcher_filter_probes_total{result="absent"}"#;
    let before = series(&metrics(matcher).await, absent);
    answers(c, url, adv, &[], others).await;
    let ruled = series(&metrics(matcher).await, absent) - before;
    assert!(ruled >= others.len() as f64 - 2.0, "{ruled} of {} non-members ruled out by the filter", others.len());
}

fn strangers(n: usize) -> Vec<EmailHash> {
    (0..n).map(|i| md5_email(&format!("stranger.{i}@nowhere.example"))).collect()
}

/// Every hash of `members` is a member of `adv`, every hash of `others` is not.
async fn answers(c: &reqwest::Client, url: &str, adv: &str, members: &[EmailHash], others: &[EmailHash]) {
    for h in members {
        assert!(is_member(c, url, adv, *h).await, "{adv}: a member answered \"no\" ({h})");
    }
    for h in others {
        assert!(!is_member(c, url, adv, *h).await, "{adv}: a non-member answered \"yes\" ({h})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_members_are_answered_from_memory_and_members_never_ruled_out() {
    let world = TestWorld::new().await;
    let admin = Admin::start(&world, Some("ops:ops-secret")).await;
    let _splitter = world.spawn(
        "splitter",
        "splitter-a",
        &[("MEMBERLAKE_RANGE_SIZE", "64KiB"), ("MEMBERLAKE_ERASURE_INTERVAL", "500ms")],
    );
    let mut worker = world.spawn("compute-worker", "worker-0", &[("MEMBERLAKE_FILTER_BITS", "16")]);
    let (matcher, url) = world.start_matcher(&[]).await;
    let c = reqwest::Client::new();

    // ---- v1 of acme: its filter is loaded, and non-members no longer reach the store
    let members = emails(0, 6_000);
    let v1 = world.wait_finished(&world.upload("acme", "v1.csv", list(&members)).await, FINISH).await;
    assert_eq!(v1.state, FileState::Ingested);
    filters_attached(&matcher, 1.0).await;
    let m = metrics(&matcher).await;
    // 16-bit fingerprints: 2 bytes per slot, ~1.3 slots per member in buckets this small (3,000
    // members each; ~1.14 in full-size buckets).
    let bytes = metric_value(&m, "memberlake_matcher_filter_bytes");
    assert!((6_000.0 * 2.0..6_000.0 * 3.0).contains(&bytes), "{bytes} bytes for 6,000 members");
    let outsiders = strangers(3_000);
    let before = store_reads(&matcher).await;
    answers(&c, &url, "acme", &[], &outsiders).await;
    let reads = store_reads(&matcher).await - before;
    assert!(reads <= 3.0, "{reads} store reads for 3,000 non-members (16-bit filter: ~0.05 expected)");
    let m = metrics(&matcher).await;
    assert!(series(&m, r#"memberlake_matcher_filter_probes_total{result="absent"}"#) >= 2_997.0, "{m}");
    // Every member passes (and is read from the store, once: then cached).
    answers(&c, &url, "acme", &hashes(&members), &[]).await;
    // /v1/suppress probes each list: a stranger costs no read; a member one.
    let before = store_reads(&matcher).await;
    for h in &outsiders[..200] {
        assert!(suppressed(&c, &url, *h, &["acme", "globex"]).await.is_empty());
    }
    assert!(store_reads(&matcher).await - before <= 1.0, "globex has no list; acme's filter rules them out");
    assert_eq!(suppressed(&c, &url, md5_email(&members[5]), &["acme", "globex"]).await, ["acme"]);

    // ---- v2 (300 out, 300 in): served by its own filter; the added are members at once
    let added = emails(90_000, 300);
    let v2_list: Vec<String> = members[300..].iter().cloned().chain(added.iter().cloned()).collect();
    let v2 = world.wait_finished(&world.upload("acme", "v2.csv", list(&v2_list)).await, FINISH).await;
    assert!(v2.active, "{v2:?}");
    wait_for(Duration::from_secs(10), "the matcher to follow v2", || async {
        is_member(&c, &url, "acme", md5_email(&added[0])).await.then_some(())
    })
    .await;
    // v2's own filter: the removed are ruled out by it, the added pass it.
    filters_attached(&matcher, 2.0).await;
    answers(&c, &url, "acme", &hashes(&added), &[]).await;
    ruled_out(&c, &url, &matcher, "acme", &hashes(&members[..300])).await;
    answers(&c, &url, "acme", &hashes(&v2_list[..500]), &outsiders[..500]).await;

    // ---- a rollback to v1: its own filter (built by the rollback's merge), same answers as v1
    let (status, body) = admin.raw(reqwest::Method::POST, "/admin/v1/advertisers/acme/rollback", Some(json!({}))).await;
    assert_eq!(status, 200, "{body}");
    let rollback = memberlake::ids::FileId(body["file"]["file_id"].as_i64().expect("the rollback's file id"));
    wait_for(FINISH, "the rollback to activate", || async {
        Some(world.file(rollback).await).filter(|f| f.state == FileState::Ingested && f.active).map(|_| ())
    })
    .await;
    wait_for(Duration::from_secs(10), "the matcher to follow the rollback", || async {
        is_member(&c, &url, "acme", md5_email(&members[0])).await.then_some(())
    })
    .await;
    filters_attached(&matcher, 3.0).await;
    answers(&c, &url, "acme", &hashes(&members[..600]), &[]).await;
    ruled_out(&c, &url, &matcher, "acme", &hashes(&added)).await;
    assert_eq!(attached(&matcher).await, 3.0, "v1, v2, the rollback: each its own filter, once");

    // ---- an erasure: the erased member is nobody's, whatever a filter holds
    let person = md5_email(&members[10]);
    let (status, _) =
        admin.raw(reqwest::Method::POST, "/admin/v1/erasures", Some(json!({"email_hash": person.to_hex()}))).await;
    assert_eq!(status, 202);
    wait_for(Duration::from_secs(5), "the erasure to reach the matcher", || async {
        (!is_member(&c, &url, "acme", person).await).then_some(())
    })
    .await;
    assert!(suppressed(&c, &url, person, &["acme"]).await.is_empty());
    answers(&c, &url, "acme", &hashes(&members[11..400]), &[]).await;

    // ---- a version merged without filters is answered from the store
    worker.terminate().await;
    let _plain = world.spawn("compute-worker", "worker-1", &[("MEMBERLAKE_FILTER_BITS", "off")]);
    let globex = emails(200_000, 2_000);
    let g = world.wait_finished(&world.upload("globex", "g.csv", list(&globex)).await, FINISH).await;
    assert!(g.active, "{g:?}");
    wait_for(Duration::from_secs(20), "globex seen without a filter", || async {
        let m = metrics(&matcher).await;
        (series(&m, r#"memberlake_matcher_filter_versions{state="unavailable"}"#) == 1.0).then_some(())
    })
    .await;
    let before = store_reads(&matcher).await;
    answers(&c, &url, "globex", &hashes(&globex[..100]), &outsiders[..100]).await;
    assert!(store_reads(&matcher).await - before >= 100.0, "no filter: each new hash is a store read");

    // ---- a matcher whose budget holds no filter answers everything from the store, correctly
    let (small, small_url) = world.start_matcher(&[("MEMBERLAKE_MATCHER_FILTER_MEMORY", "1KiB")]).await;
    wait_for(Duration::from_secs(20), "acme and globex over the budget", || async {
        let m = metrics(&small).await;
        (series(&m, r#"memberlake_matcher_filter_versions{state="over_budget"}"#) == 2.0).then_some(())
    })
    .await;
    answers(&c, &small_url, "acme", &hashes(&members[400..500]), &outsiders[..100]).await;
    let m = metrics(&small).await;
    assert_eq!(metric_value(&m, "memberlake_matcher_filter_bytes"), 0.0, "{m}");
    assert_eq!(metric_value(&m, "memberlake_matcher_filter_probes_total"), 0.0, "{m}");

    // The filter objects are where the docs say, one per bucket of each version.
    let work = memberlake::work::WorkLocation::open(Some(&world.work_url), &world.lake).unwrap();
    let dir = memberlake::work::VersionDir::new(&AdvertiserId::parse("acme").unwrap(), v2.file_id.into());
    let filters = work.list(&format!("{}/filter", dir.prefix())).await.unwrap();
    let bits = world.file(v2.file_id).await.version.bucket_bits.unwrap();
    assert_eq!(filters.len(), 1 << bits, "{filters:?}");

    // ---- a filter object under another version's key is refused: acme's filters copied to
    // where globex's would be (a version that has none) would rule out globex's members; a
    // matcher finds them, refuses them (bound to acme's keys) and answers globex from the store
    let globex_dir = memberlake::work::VersionDir::new(&AdvertiserId::parse("globex").unwrap(), g.file_id.into());
    let globex_bits = world.file(g.file_id).await.version.bucket_bits.unwrap();
    for b in 0..1u32 << globex_bits {
        let bytes = work.get(&filters[b as usize % filters.len()]).await.unwrap();
        work.put(&globex_dir.filter(b), bytes).await.unwrap();
    }
    let (fresh, fresh_url) = world.start_matcher(&[]).await;
    wait_for(Duration::from_secs(20), "acme's filter loaded, globex's refused", || async {
        let m = metrics(&fresh).await;
        (series(&m, r#"memberlake_matcher_filter_versions{state="loaded"}"#) == 1.0
            && series(&m, r#"memberlake_matcher_filter_loads_total{result="error"}"#) >= 1.0)
            .then_some(())
    })
    .await;
    answers(&c, &fresh_url, "globex", &hashes(&globex[100..300]), &outsiders[..100]).await;
}
