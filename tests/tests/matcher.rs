//! matcher-api against the real stack: every status-code path, request coalescing, one store
//! read per /v1/suppress, activations becoming visible, tokens; the API surface's protection
//! (concurrency limit with load shedding, timeout, request ids, per-caller rate limits) and the
//! operations port.

use std::time::{Duration, Instant};

use memberlake_tests::*;
use serde_json::{json, Value};

/// The service's `/metrics`, from its operations port.
async fn metrics(service: &Service) -> String {
    let (status, text) = service.get("/metrics").await.unwrap();
    assert_eq!(status, 200, "{text}");
    text
}

async fn store_reads(matcher: &Service) -> f64 {
    metric_value(&metrics(matcher).await, "memberlake_matcher_store_reads_total")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_codes_and_error_bodies() {
    let world = TestWorld::new().await;
    let members: Vec<_> = emails(0, 50).iter().map(|e| md5_email(e)).collect();
    world.seed_list("acme", &members).await;
    let (matcher, url) = world.start_matcher(&[]).await;
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
    let m = metrics(&matcher).await;
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
    let (matcher, url) = world.start_matcher(&[]).await;
    let c = reqwest::Client::new();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let before = store_reads(&matcher).await;
    let target = members[7];
    let answers = futures::future::join_all((0..64).map(|_| is_member(&c, &url, "acme", target))).await;
    assert!(answers.iter().all(|a| *a));
    let after = store_reads(&matcher).await;
    assert_eq!(after - before, 1.0, "64 concurrent identical lookups, one store read");

    // A negative answer is cached too.
    let stranger = md5_email("stranger@nowhere.example");
    assert!(!is_member(&c, &url, "acme", stranger).await);
    let before = store_reads(&matcher).await;
    for _ in 0..10 {
        assert!(!is_member(&c, &url, "acme", stranger).await);
    }
    assert_eq!(store_reads(&matcher).await - before, 0.0, "negative entries are cached");

    // /v1/suppress: one store read for 1,000 advertisers.
    let mut ids: Vec<String> = (0..997).map(|i| format!("nolist{i}")).collect();
    ids.extend(advertisers.iter().cloned());
    let before = store_reads(&matcher).await;
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
    assert_eq!(store_reads(&matcher).await - before, 1.0);
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

// ---- The API surface's protection (memberlake::http::surface) on a real matcher. No test
// depends on timing: a request is held inside the matcher by holding back its body (its handler
// waits for it), and budgets are a few requests per hour.

/// A `POST /v1/suppress` over its own connection, its body held back. Sent with
/// `Expect: 100-continue`: the server answers `100 Continue` when the handler first reads the
/// body, which says the request is inside the service, past every limit, holding its slot.
struct HeldRequest {
    stream: tokio::net::TcpStream,
    body: Vec<u8>,
    /// Bytes read and not yet parsed.
    read: Vec<u8>,
}

/// A raw HTTP/1.1 response: status, headers (lower-case names) and the JSON body, if any.
struct RawResponse {
    status: u16,
    headers: std::collections::HashMap<String, String>,
    body: Value,
}

impl HeldRequest {
    async fn open(url: &str, request_id: &str, body: &Value) -> Self {
        use tokio::io::AsyncWriteExt;
        let addr = url.trim_start_matches("http://");
        let body = body.to_string().into_bytes();
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /v1/suppress HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nexpect: 100-continue\r\nx-request-id: {request_id}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        Self { stream, body, read: Vec::new() }
    }

    /// Waits until the handler is reading the body (`100 Continue`).
    async fn admitted(&mut self) {
        let interim = self.next_response().await;
        assert_eq!(interim.status, 100, "the held request was answered instead: {}", interim.body);
    }

    /// Sends the body and reads the answer.
    async fn finish(mut self) -> RawResponse {
        use tokio::io::AsyncWriteExt;
        let body = std::mem::take(&mut self.body);
        self.stream.write_all(&body).await.unwrap();
        self.response().await
    }

    /// The final answer (one given before the body was sent, e.g. a timeout's).
    async fn response(mut self) -> RawResponse {
        loop {
            let response = self.next_response().await;
            if response.status != 100 {
                return response;
            }
        }
    }

    /// The next response on the connection, interim ones included; up to 60 s.
    async fn next_response(&mut self) -> RawResponse {
        use tokio::io::AsyncReadExt;
        let read = async {
            let mut chunk = [0u8; 4096];
            loop {
                if let Some(response) = self.parse() {
                    return response;
                }
                let n = self.stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed before a whole response: {:?}", String::from_utf8_lossy(&self.read));
                self.read.extend_from_slice(&chunk[..n]);
            }
        };
        tokio::time::timeout(Duration::from_secs(60), read).await.expect("an answer within 60 s")
    }

    /// A whole response at the start of what was read, removed from it.
    fn parse(&mut self) -> Option<RawResponse> {
        let end = self.read.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8(self.read[..end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let status: u16 = lines.next()?.split(' ').nth(1)?.parse().unwrap();
        let headers: std::collections::HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers.get("content-length").map_or(0, |l| l.parse().unwrap());
        let whole = end + 4 + length;
        if self.read.len() < whole {
            return None;
        }
        let body = serde_json::from_slice(&self.read[end + 4..whole]).unwrap_or(Value::Null);
        self.read.drain(..whole);
        Some(RawResponse { status, headers, body })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_concurrency_limit_is_a_503_at_once_never_a_queue() {
    let world = TestWorld::new().await;
    let members: Vec<_> = emails(0, 10).iter().map(|e| md5_email(e)).collect();
    world.seed_list("acme", &members).await;
    // One request at a time, and no timeout to free the slot before the test does.
    let limits = [("MEMBERLAKE_MATCHER_MAX_CONCURRENCY", "1"), ("MEMBERLAKE_MATCHER_REQUEST_TIMEOUT", "10m")];
    let (matcher, url) = world.start_matcher(&limits).await;
    // A client that would wait in a queue gives up after 30 s and fails the test.
    let c = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let probe = format!("{url}/v1/match?advertiser_id=acme&email_hash={}", members[1]);

    let mut held =
        HeldRequest::open(&url, "held-1", &json!({"email_hash": members[0], "advertiser_ids": ["acme"]})).await;
    held.admitted().await;
    let refused = c.get(&probe).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert!(refused.headers().contains_key("x-request-id"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    // Many at once: all refused while the slot is held, none waiting for it.
    let statuses =
        futures::future::join_all((0..16).map(|_| async { c.get(&probe).send().await.unwrap().status() })).await;
    assert!(statuses.iter().all(|s| *s == 503), "{statuses:?}");

    let answer = held.finish().await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["members"], json!(["acme"]));
    assert_eq!(answer.headers["x-request-id"], "held-1");
    assert!(is_member(&c, &url, "acme", members[1]).await, "the slot is free again");
    assert_eq!(metric_value(&metrics(&matcher).await, "memberlake_http_shed_total"), 17.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_times_out_with_the_json_error_and_its_id_in_the_log() {
    let world = TestWorld::new().await;
    let (matcher, url) = world.start_matcher(&[("MEMBERLAKE_MATCHER_REQUEST_TIMEOUT", "1s")]).await;
    // The body is never sent: only the timeout can answer.
    let held =
        HeldRequest::open(&url, "slow-request-7", &json!({"email_hash": md5_email("a@b.c"), "advertiser_ids": ["a"]}))
            .await;
    let answer = held.response().await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.body["error"]["code"], "timeout");
    assert!(answer.body["error"]["message"].as_str().unwrap().contains("1s"), "{}", answer.body);
    assert_eq!(answer.headers["retry-after"], "1");
    assert_eq!(answer.headers["x-request-id"], "slow-request-7");
    let line = wait_for(Duration::from_secs(10), "the timeout in the matcher's log", || async {
        matcher.log_text().lines().find(|l| l.contains("timed out")).map(str::to_owned)
    })
    .await;
    assert!(line.contains("request_id=slow-request-7") && line.contains("route=/v1/suppress"), "{line}");
    assert_eq!(metric_value(&metrics(&matcher).await, "memberlake_http_timeouts_total"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_echoed_or_made() {
    let world = TestWorld::new().await;
    let (_matcher, url) = world.start_matcher(&[]).await;
    let c = reqwest::Client::new();
    let q = format!("{url}/v1/match?advertiser_id=acme&email_hash={}", md5_email("a@b.c"));
    let r = c.get(&q).header("x-request-id", "caller-chosen-42").send().await.unwrap();
    assert_eq!((r.status().as_u16(), &r.headers()["x-request-id"]), (200, &"caller-chosen-42".parse().unwrap()));
    // Errors carry one too, and an unusable id is replaced rather than logged.
    let r = c.get(format!("{url}/v1/match?advertiser_id=acme")).header("x-request-id", "a b<c>").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let made = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(made.len(), 36, "a UUID: {made}");
    let r = c.get(&q).send().await.unwrap();
    assert_ne!(r.headers()["x-request-id"].to_str().unwrap(), made, "a fresh id per request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_token_has_its_own_rate_limit() {
    let world = TestWorld::new().await;
    let tokens = ("MEMBERLAKE_MATCHER_TOKENS", "alpha:alpha-secret,bravo:bravo-secret");
    // Two requests per caller per hour: the test cannot outrun a refill.
    let (matcher, url) = world.start_matcher(&[tokens, ("MEMBERLAKE_MATCHER_RATE_LIMIT", "2/1h")]).await;
    let c = reqwest::Client::new();
    let q = format!("{url}/v1/match?advertiser_id=acme&email_hash={}", md5_email("a@b.c"));
    let ask = |token: &'static str| {
        let c = c.clone();
        let q = q.clone();
        async move { c.get(&q).bearer_auth(token).send().await.unwrap() }
    };
    for _ in 0..2 {
        assert_eq!(ask("alpha-secret").await.status(), 200);
    }
    let refused = ask("alpha-secret").await;
    assert_eq!(refused.status(), 429);
    let wait: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1_000..=1_800).contains(&wait), "alpha may ask again in half an hour: {wait} s");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Bravo's budget is untouched by alpha's.
    for _ in 0..2 {
        assert_eq!(ask("bravo-secret").await.status(), 200);
    }
    assert_eq!(ask("bravo-secret").await.status(), 429);
    assert_eq!(ask("alpha-secret").await.status(), 429);
    let m = metrics(&matcher).await;
    assert!(m.contains(r#"memberlake_http_rate_limited_total{caller="alpha"} 2"#), "{m}");
    assert!(m.contains(r#"memberlake_http_rate_limited_total{caller="bravo"} 1"#), "{m}");
    let log = matcher.log_text();
    assert!(!log.contains("alpha-secret") && !log.contains("bravo-secret"), "tokens never logged");
}

/// `Some` once `service` counts `n` replicas of its surface.
async fn replicas_seen(service: &Service, n: f64) -> Option<()> {
    let (_, text) = service.get("/metrics").await.ok()?;
    (metric_value(&text, "memberlake_http_replicas") == n).then_some(())
}

/// A caller's budget is the service's, not each replica's: two replicas admit half of it each;
/// when one leaves (SIGTERM) the other admits all of it, and a replica killed without leaving
/// stops counting after three silent heartbeats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_budget_is_shared_by_the_replicas() {
    let world = TestWorld::new().await;
    let env = [
        ("MEMBERLAKE_MATCHER_TOKENS", "alpha:alpha-secret"),
        // Six requests an hour for alpha across the service: no refill during the test.
        ("MEMBERLAKE_MATCHER_RATE_LIMIT", "6/1h"),
        ("MEMBERLAKE_REPLICA_HEARTBEAT", "300ms"),
    ];
    let (a, url_a) = world.start_matcher(&env).await;
    let (mut b, url_b) = world.start_matcher(&env).await;
    for replica in [&a, &b] {
        wait_for(Duration::from_secs(30), "both replicas counted", || replicas_seen(replica, 2.0)).await;
    }
    let c = reqwest::Client::new();
    let admitted = |url: String, asks: usize| {
        let c = c.clone();
        async move {
            let q = format!("{url}/v1/match?advertiser_id=acme&email_hash={}", md5_email("a@b.c"));
            let mut ok = 0;
            for _ in 0..asks {
                match c.get(&q).bearer_auth("alpha-secret").send().await.unwrap().status().as_u16() {
                    200 => ok += 1,
                    429 => {}
                    other => panic!("unexpected status {other}"),
                }
            }
            ok
        }
    };
    assert_eq!(admitted(url_a.clone(), 5).await, 3, "replica a admits its half of 6");
    assert_eq!(admitted(url_b.clone(), 5).await, 3, "replica b admits its half of 6");
    b.terminate().await;
    wait_for(Duration::from_secs(30), "b's leave seen by a", || replicas_seen(&a, 1.0)).await;
    assert_eq!(admitted(url_a.clone(), 8).await, 6, "alone, a admits the whole budget (afresh)");

    let (mut killed, _) = world.start_matcher(&env).await;
    wait_for(Duration::from_secs(30), "a third replica counted", || replicas_seen(&a, 2.0)).await;
    killed.kill9().await;
    wait_for(Duration::from_secs(30), "the killed replica forgotten", || replicas_seen(&a, 1.0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_and_metrics_are_on_the_operations_port_only() {
    let world = TestWorld::new().await;
    let (matcher, url) = world.start_matcher(&[]).await;
    let admin_addr = format!("127.0.0.1:{}", free_port());
    let meta = world.spawn("meta-service", "meta-ops", &[("MEMBERLAKE_ADMIN_ADDR", &admin_addr)]);
    wait_for(Duration::from_secs(30), "meta-service /readyz", || async {
        meta.get("/readyz").await.ok().filter(|(s, _)| *s == 200)
    })
    .await;
    let c = reqwest::Client::new();
    for (service, api) in [(&matcher, url.clone()), (&meta, format!("http://{admin_addr}"))] {
        for path in ["/readyz", "/metrics"] {
            let r = c.get(format!("{api}{path}")).send().await.unwrap();
            assert_eq!(r.status(), 404, "{} serves {path} on its API port", service.name);
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "not_found");
        }
        assert_eq!(c.get(format!("{api}/healthz")).send().await.unwrap().status(), 200, "liveness on both");
        let (status, _) = service.get("/healthz").await.unwrap();
        assert_eq!(status, 200);
        let (status, body) = service.get("/readyz").await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(metrics(service).await.contains("memberlake_http_requests_total"), "{}", service.name);
    }
}
