//! matcher-api against the real stack: every status-code path, request coalescing, one store
//! read per /v1/suppress, activations becoming visible, tokens.

use std::time::{Duration, Instant};

use memberlake_tests::*;
use serde_json::{json, Value};

async fn metrics(client: &reqwest::Client, url: &str) -> String {
    client.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap()
}

async fn store_reads(client: &reqwest::Client, url: &str) -> f64 {
    metric_value(&metrics(client, url).await, "memberlake_matcher_store_reads_total")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_codes_and_error_bodies() {
    let world = TestWorld::new().await;
    let members: Vec<_> = emails(0, 50).iter().map(|e| md5_email(e)).collect();
    world.seed_list("acme", &members).await;
    let (_m, url) = world.start_matcher(&[]).await;
    let c = reqwest::Client::new();
    let h = members[0].to_hex();

    let get = |q: String| {
        let c = c.clone();
        let url = url.clone();
        async move {
            let r = c.get(format!("{url}/v1/match?{q}")).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let (s, body) = get(format!("advertiser_id=acme&email_hash={h}")).await;
    assert_eq!((s, body.clone()), (200, json!({"advertiser_id": "acme", "email_hash": h, "member": true})));
    let (s, body) = get(format!("advertiser_id=acme&email_hash={}", h.to_uppercase())).await;
    assert_eq!(
        (s, body["email_hash"].as_str().unwrap()),
        (200, h.as_str()),
        "upper-case hex accepted, lower-case returned"
    );
    // An advertiser without a list: nobody is a member.
    let (s, body) = get(format!("advertiser_id=nolist&email_hash={h}")).await;
    assert_eq!((s, body["member"].as_bool()), (200, Some(false)));

    for (query, needle) in [
        (format!("email_hash={h}"), "missing query parameter advertiser_id"),
        ("advertiser_id=acme".to_owned(), "missing query parameter email_hash"),
        ("advertiser_id=acme&email_hash=xyz".to_owned(), "32 hexadecimal digits"),
        (format!("advertiser_id=acme&email_hash={}", "g".repeat(32)), "32 hexadecimal digits"),
        (format!("advertiser_id=ac%2Fme&email_hash={h}"), "advertiser_id must match"),
        (format!("advertiser_id={}&email_hash={h}", "a".repeat(65)), "advertiser_id must match"),
        (format!("advertiser_id=acme&email_hash={h}&extra=1"), "unknown query parameter"),
    ] {
        let (s, body) = get(query.clone()).await;
        assert_eq!(s, 400, "{query}");
        assert_eq!(body["error"]["code"], "bad_request");
        assert!(body["error"]["message"].as_str().unwrap().contains(needle), "{query}: {body}");
    }

    let post = |body: String| {
        let c = c.clone();
        let url = url.clone();
        async move {
            let r = c
                .post(format!("{url}/v1/suppress"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            (status, serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)))
        }
    };
    let (s, body) = post(json!({"email_hash": h, "advertiser_ids": ["globex", "acme", "acme"]}).to_string()).await;
    assert_eq!((s, body), (200, json!({"email_hash": h, "members": ["acme"]})));
    let (s, body) = post(json!({"email_hash": h, "advertiser_ids": []}).to_string()).await;
    assert_eq!((s, body), (200, json!({"email_hash": h, "members": []})));
    let too_many: Vec<String> = (0..1001).map(|i| format!("adv{i}")).collect();
    for (payload, needle) in [
        (json!({"email_hash": h, "advertiser_ids": too_many}).to_string(), "at most 1000"),
        (json!({"email_hash": "nope", "advertiser_ids": ["acme"]}).to_string(), "32 hexadecimal digits"),
        (json!({"email_hash": h, "advertiser_ids": ["ok", "not ok"]}).to_string(), "advertiser_ids[1]"),
        (json!({"email_hash": h}).to_string(), "advertiser_ids"),
        (json!({"email_hash": h, "advertiser_ids": ["acme"], "x": 1}).to_string(), "unknown field"),
        ("{not json".to_owned(), "JSON"),
    ] {
        let (s, body) = post(payload.clone()).await;
        assert_eq!(s, 400, "{payload}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(needle), "{payload}: {body}");
    }
    let r = c.post(format!("{url}/v1/suppress")).header("content-type", "text/plain").body("{}").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let huge = "x".repeat(200 * 1024);
    let r = c
        .post(format!("{url}/v1/suppress"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers().get("connection").map(|v| v.to_str().unwrap()), Some("close"), "not reusable after a 413");

    let doc: Value = c.get(format!("{url}/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["paths"]["/v1/match"].is_object() && doc["paths"]["/v1/suppress"].is_object());
    let m = metrics(&c, &url).await;
    assert!(m.contains("memberlake_http_requests_total{route=\"/v1/match\",status=\"400\"}"), "{m}");
    assert!(m.contains("memberlake_http_request_duration_seconds_bucket"), "latency histogram");
    assert!(m.contains("memberlake_store_read_seconds"), "store latency");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_required_when_configured() {
    let world = TestWorld::new().await;
    let (_m, url) = world.start_matcher(&[("MEMBERLAKE_MATCHER_TOKENS", "alpha-token,bravo-token")]).await;
    let c = reqwest::Client::new();
    let q = format!("{url}/v1/match?advertiser_id=acme&email_hash={}", md5_email("a@b.c"));
    for auth in [None, Some("Bearer wrong"), Some("Bearer alpha-toke"), Some("alpha-token"), Some("Basic YTpi")] {
        let mut r = c.get(&q);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
    }
    for token in ["alpha-token", "bravo-token"] {
        let r = c.get(&q).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    // Probes stay open for the orchestrator.
    assert_eq!(c.get(format!("{url}/healthz")).send().await.unwrap().status(), 200);
    let log = std::fs::read_to_string(&_m.log).unwrap();
    assert!(!log.contains("alpha-token") && !log.contains("bravo-token"), "tokens never logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_for_one_key_cause_one_store_read() {
    let world = TestWorld::new().await;
    let members: Vec<_> = emails(0, 10).iter().map(|e| md5_email(e)).collect();
    world.seed_list("acme", &members).await;
    let advertisers: Vec<String> = (0..3).map(|i| format!("adv{i}")).collect();
    for a in &advertisers {
        world.seed_list(a, &members[..5]).await;
    }
    let (_m, url) = world.start_matcher(&[]).await;
    let c = reqwest::Client::new();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let before = store_reads(&c, &url).await;
    let target = members[7];
    let answers = futures::future::join_all((0..64).map(|_| is_member(&c, &url, "acme", target))).await;
    assert!(answers.iter().all(|a| *a));
    let after = store_reads(&c, &url).await;
    assert_eq!(after - before, 1.0, "64 concurrent identical lookups, one store read");

    // A negative answer is cached too.
    let stranger = md5_email("stranger@nowhere.example");
    assert!(!is_member(&c, &url, "acme", stranger).await);
    let before = store_reads(&c, &url).await;
    for _ in 0..10 {
        assert!(!is_member(&c, &url, "acme", stranger).await);
    }
    assert_eq!(store_reads(&c, &url).await - before, 0.0, "negative entries are cached");

    // /v1/suppress: one store read for 1,000 advertisers.
    let mut ids: Vec<String> = (0..997).map(|i| format!("nolist{i}")).collect();
    ids.extend(advertisers.iter().cloned());
    let before = store_reads(&c, &url).await;
    let body: Value = c
        .post(format!("{url}/v1/suppress"))
        .json(&json!({"email_hash": members[2].to_hex(), "advertiser_ids": ids}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["members"], json!(advertisers));
    assert_eq!(store_reads(&c, &url).await - before, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activation_is_visible_within_two_seconds() {
    let world = TestWorld::new().await;
    let v1: Vec<_> = emails(0, 100).iter().map(|e| md5_email(e)).collect();
    let v2: Vec<_> = emails(50, 100).iter().map(|e| md5_email(e)).collect();
    world.seed_list("acme", &v1).await;
    // A long polling interval: the activation must arrive through LISTEN/NOTIFY.
    let (_m, url) = world.start_matcher(&[("MEMBERLAKE_VERSIONS_REFRESH", "30s")]).await;
    let c = reqwest::Client::new();
    // Warm the cache with v1 answers.
    assert!(is_member(&c, &url, "acme", v1[0]).await);
    assert!(!is_member(&c, &url, "acme", v2[99]).await);

    world.seed_list("acme", &v2).await;
    let activated = Instant::now();
    wait_for(Duration::from_secs(2), "v2 visible", || async {
        let gone = !is_member(&c, &url, "acme", v1[0]).await;
        let new = is_member(&c, &url, "acme", v2[99]).await;
        (gone && new).then_some(())
    })
    .await;
    let delay = activated.elapsed();
    assert!(delay < Duration::from_secs(2), "visible after {delay:?}");
    for h in &v1[..50] {
        assert!(!is_member(&c, &url, "acme", *h).await);
    }
    for h in &v2 {
        assert!(is_member(&c, &url, "acme", *h).await);
    }
}
