//! Game day: the CQL node stops while the matcher serves. Every answer is either right or a
//! 503 with Retry-After — never a false "not a member" — and the matcher recovers by itself.
//! (Alone in its own test binary: cargo runs test binaries one after another, so stopping the
//! shared CQL node does not disturb other tests.)

use std::time::Duration;

use memberlake_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cql_node_stopped_gives_503s_then_recovers() {
    let world = TestWorld::new().await;
    let members: Vec<_> = emails(0, 2_000).iter().map(|e| md5_email(e)).collect();
    world.seed_list("acme", &members).await;
    let (_m, url) =
        world.start_matcher(&[("MEMBERLAKE_SCYLLA_TIMEOUT", "500ms"), ("MEMBERLAKE_CACHE_TTL", "1s")]).await;
    let c = reqwest::Client::new();
    assert!(is_member(&c, &url, "acme", members[0]).await);

    stack_sh(&["stop", "cql"]);
    let mut unavailable = 0;
    let mut served = 0;
    let probe = |i: usize| {
        let c = c.clone();
        let url = url.clone();
        let h = members[i % members.len()];
        async move { c.get(format!("{url}/v1/match?advertiser_id=acme&email_hash={h}")).send().await.unwrap() }
    };
    for i in 0..40 {
        let r = probe(i + 1).await;
        match r.status().as_u16() {
            503 => {
                assert_eq!(r.headers()["retry-after"], "1");
                let body: serde_json::Value = r.json().await.unwrap();
                assert_eq!(body["error"]["code"], "unavailable");
                unavailable += 1;
            }
            200 => {
                let body: serde_json::Value = r.json().await.unwrap();
                assert_eq!(body["member"], true, "a member must never be answered false");
                served += 1;
            }
            s => panic!("unexpected status {s}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(unavailable > 30, "store down: {unavailable} 503s, {served} served");
    let (status, _) = _m.get("/readyz").await.unwrap();
    assert_eq!(status, 503, "/readyz reflects the store");

    stack_sh(&["start", "cql"]);
    wait_for(Duration::from_secs(60), "matcher ready again", || async {
        _m.get("/readyz").await.ok().filter(|(s, _)| *s == 200)
    })
    .await;
    for h in members.iter().step_by(40) {
        let ok = wait_for(Duration::from_secs(20), "answers again", || async {
            let r = c.get(format!("{url}/v1/match?advertiser_id=acme&email_hash={h}")).send().await.ok()?;
            (r.status() == 200).then_some(r)
        })
        .await;
        let body: serde_json::Value = ok.json().await.unwrap();
        assert_eq!(body["member"], true);
    }
    assert!(!is_member(&c, &url, "acme", md5_email("nobody@nowhere.example")).await);
}
