//! Game day on a three-node CQL cluster (replication factor 3, LOCAL_QUORUM): one node is
//! killed with SIGKILL while a list is ingested and the matcher serves at a fixed rate; then two
//! nodes are down at once. Exact checks at the end of each step:
//! - one node down: ingestion completes exactly, **zero 503s and zero wrong answers**;
//! - the killed node restarted and repaired holds every row on its own (read at CONSISTENCY ONE
//!   with the two other nodes stopped);
//! - two nodes down: 503 with Retry-After, never a false "not a member"; answers again when one
//!   node returns.
//!
//! The matcher's p50/p99 before, during and after the node loss are printed (BENCHMARKS.md
//! quotes a run). Needs the three-node stack (`deploy/local/stack.sh up --cql-nodes 3`, its
//! `env`); `deploy/local/test.sh` runs it in its cluster pass. Alone in its test binary: it
//! stops the cluster's nodes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memberlake::catalog::FileState;
use memberlake::ids::EmailHash;
use memberlake_tests::*;

const FINISH: Duration = Duration::from_secs(300);
/// Matcher requests per second during the whole scenario (open loop: a slow answer does not
/// slow the next request down).
const RATE: u64 = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Before = 0,
    OneNodeDown = 1,
    After = 2,
    TwoNodesDown = 3,
    Recovered = 4,
}

impl Phase {
    fn from_u8(v: u8) -> Self {
        [Phase::Before, Phase::OneNodeDown, Phase::After, Phase::TwoNodesDown, Phase::Recovered][v as usize]
    }
}

#[derive(Debug)]
struct Sample {
    phase: Phase,
    status: u16,
    latency: Duration,
    /// A 200 whose answer is not the expected one, or a 503 without Retry-After, or anything
    /// else than 200/503.
    wrong: bool,
    /// A refusal's error code and message (for the report).
    error: Option<String>,
}

/// A fixed-rate load on `/v1/match`: half members of the list (cycled), half fresh random
/// hashes (never cached: each asks the store).
struct Load {
    phase: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Sample>>,
}

impl Load {
    fn start(url: String, advertiser: &'static str, members: Vec<EmailHash>) -> Self {
        let phase = Arc::new(AtomicU8::new(Phase::Before as u8));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (phase.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut inflight = tokio::task::JoinSet::new();
            let mut samples = Vec::new();
            let mut i = 0usize;
            while !s.load(Ordering::Relaxed) {
                tick.tick().await;
                while let Some(done) = inflight.try_join_next() {
                    samples.push(done.unwrap());
                }
                i += 1;
                let (hash, want) = if i.is_multiple_of(2) {
                    (members[(i / 2) % members.len()], true)
                } else {
                    (EmailHash::md5(rand::random()), false)
                };
                let phase = Phase::from_u8(p.load(Ordering::Relaxed));
                let (client, url) = (client.clone(), url.clone());
                inflight.spawn(async move {
                    let started = Instant::now();
                    let response =
                        client.get(format!("{url}/v1/match?advertiser_id={advertiser}&email_hash={hash}")).send().await;
                    let (status, wrong, error) = match response {
                        Ok(r) if r.status() == 200 => {
                            let body: serde_json::Value = r.json().await.unwrap_or_default();
                            (200, body["member"].as_bool() != Some(want), None)
                        }
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let retry_after = r.headers().contains_key("retry-after");
                            let body: serde_json::Value = r.json().await.unwrap_or_default();
                            let error = format!("{status} {}: {}", body["error"]["code"], body["error"]["message"]);
                            (status, status != 503 || !retry_after, Some(error))
                        }
                        Err(e) => (0, true, Some(e.to_string())),
                    };
                    Sample { phase, status, latency: started.elapsed(), wrong, error }
                });
            }
            while let Some(done) = inflight.join_next().await {
                samples.push(done.unwrap());
            }
            samples
        });
        Self { phase, stop, task }
    }

    fn enter(&self, phase: Phase) {
        println!("-- phase {phase:?}");
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    async fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

#[derive(Debug, Default)]
struct PhaseReport {
    requests: usize,
    ok: usize,
    unavailable: usize,
    wrong: usize,
    latencies_ms: Vec<f64>,
}

impl PhaseReport {
    fn quantile(&self, q: f64) -> f64 {
        if self.latencies_ms.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_ms.len() - 1) as f64 * q).round() as usize;
        self.latencies_ms[i]
    }
}

fn report(samples: &[Sample]) -> BTreeMap<Phase, PhaseReport> {
    let mut phases: BTreeMap<Phase, PhaseReport> = BTreeMap::new();
    for s in samples {
        let r = phases.entry(s.phase).or_default();
        r.requests += 1;
        r.wrong += usize::from(s.wrong);
        match s.status {
            200 => {
                r.ok += 1;
                r.latencies_ms.push(s.latency.as_secs_f64() * 1e3);
            }
            503 => r.unavailable += 1,
            _ => {}
        }
    }
    let mut errors: BTreeMap<(Phase, String), usize> = BTreeMap::new();
    for s in samples {
        if let Some(e) = &s.error {
            // The message without the hash or timings that make each one unique.
            let kind: String = e.chars().take(120).collect();
            *errors.entry((s.phase, kind)).or_default() += 1;
        }
    }
    for ((phase, error), n) in errors.iter().take(20) {
        println!("{phase:?}: {n} × {error}");
    }
    println!("| phase | requests | 200 | 503 | wrong | p50 ms | p99 ms |\n|---|---|---|---|---|---|---|");
    for (phase, r) in &mut phases {
        r.latencies_ms.sort_by(f64::total_cmp);
        println!(
            "| {phase:?} | {} | {} | {} | {} | {:.1} | {:.1} |",
            r.requests,
            r.ok,
            r.unavailable,
            r.wrong,
            r.quantile(0.5),
            r.quantile(0.99)
        );
    }
    phases
}

/// The cluster's nodes (host:port), from the stack's environment: three, or the test fails.
fn nodes() -> Vec<String> {
    let nodes: Vec<String> = env("MEMBERLAKE_SCYLLA_NODES").split(',').map(str::to_owned).collect();
    assert_eq!(
        nodes.len(),
        3,
        "this game day needs the three-node stack (deploy/local/stack.sh up --cql-nodes 3), got {nodes:?}"
    );
    nodes
}

/// Rows of `keyspace.membership_changes` that node `node` (host:port) holds by itself: read at
/// CONSISTENCY ONE while it is the only node up, so no other replica can answer.
fn rows_on_node(node: &str, keyspace: &str) -> u64 {
    let (host, port) = node.rsplit_once(':').unwrap();
    let out = std::process::Command::new(env("MEMBERLAKE_CQLSH"))
        .args([host, port, "--request-timeout=60", "-e"])
        .arg(format!("CONSISTENCY ONE; SELECT count(*) FROM {keyspace}.membership_changes;"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "cqlsh at {node}: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    text.lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .next()
        .unwrap_or_else(|| panic!("no count in cqlsh's output: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the three-node stack (stack.sh up --cql-nodes 3): deploy/local/test.sh runs it"]
async fn a_node_killed_under_load_costs_no_answer_and_two_down_never_answer_wrong() {
    let nodes = nodes();
    let world = TestWorld::new().await;
    // Ingestion with 4 writes in flight: three nodes, the services and the load generator share
    // two cores here, and at full speed ingestion at replication factor 3 leaves the nodes no
    // room for reads (p99 over 1 s before any node is lost). This test is about losing a node,
    // not about capacity.
    let _meta =
        world.spawn("meta-service", "meta-a", &[("MEMBERLAKE_ADMIN_ADDR", &format!("127.0.0.1:{}", free_port()))]);
    let _splitter = world.spawn("splitter", "splitter-a", &[("MEMBERLAKE_RANGE_SIZE", "64KiB")]);
    let _worker = world.spawn("compute-worker", "worker-a", &[("MEMBERLAKE_WRITE_CONCURRENCY", "4")]);

    // List A, ingested with all three nodes up: the one the matcher is asked about throughout.
    let a = emails(0, 5_000);
    let key_a = world.upload("acme", "a.csv", list(&a)).await;
    let fa = world.wait_finished(&key_a, FINISH).await;
    assert_eq!((fa.state, fa.active, fa.rows_ingested), (FileState::Ingested, true, 5_000), "{fa:?}");
    let a_hashes = hashes(&a);
    // A short cache TTL keeps the store in the answers; random non-members always reach it.
    let (_matcher, url) = world.start_matcher(&[("MEMBERLAKE_CACHE_TTL", "1s")]).await;
    assert_exact_answers(&world, &url, "acme", fa.file_id, &a_hashes[..500], &hashes(&emails(900_000, 500))).await;

    let load = Load::start(url.clone(), "acme", a_hashes.clone());
    tokio::time::sleep(Duration::from_secs(5)).await;

    // One node killed mid-ingestion of list B.
    load.enter(Phase::OneNodeDown);
    let b = emails(100_000, 60_000);
    let key_b = world.upload("globex", "b.csv", list(&b)).await;
    wait_for(Duration::from_secs(120), "ingestion of list B under way", || async {
        (sql_i64(&world.catalog, "SELECT count(*) FROM ranges WHERE state = 'done' AND stage = 'ingest'").await >= 2)
            .then_some(())
    })
    .await;
    stack_sh(&["stop-node", "3", "--kill"]);
    assert!(tokio::net::TcpStream::connect(&nodes[2]).await.is_err(), "node 3 still accepts connections");
    let fb = world.wait_finished(&key_b, FINISH).await;
    assert_eq!((fb.state, fb.active, fb.rows_ingested, fb.rows_rejected), (FileState::Ingested, true, 60_000, 0));
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Back, and repaired.
    stack_sh(&["start-node", "3"]);
    stack_sh(&["repair-node", "3"]);
    load.enter(Phase::After);
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Two nodes down: no quorum. 503s, never a wrong answer.
    load.enter(Phase::TwoNodesDown);
    stack_sh(&["stop-node", "1"]);
    stack_sh(&["stop-node", "2"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Meanwhile, the repaired node alone holds every row: list A's and list B's.
    assert_eq!(rows_on_node(&nodes[2], &world.keyspace), 65_000, "rows on the restarted, repaired node");

    // One node back: quorum again.
    stack_sh(&["start-node", "1"]);
    load.enter(Phase::Recovered);
    wait_for(Duration::from_secs(60), "the matcher answers again", || async {
        let r =
            reqwest::get(format!("{url}/v1/match?advertiser_id=acme&email_hash={}", EmailHash::md5(rand::random())))
                .await
                .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stack_sh(&["start-node", "2"]);
    let samples = load.finish().await;
    let phases = report(&samples);

    let total_wrong: usize = phases.values().map(|r| r.wrong).sum();
    assert_eq!(total_wrong, 0, "no wrong answer in any phase");
    for phase in [Phase::Before, Phase::OneNodeDown, Phase::After] {
        let r = &phases[&phase];
        assert!(r.requests > 100, "{phase:?}: {r:?}");
        assert_eq!((r.unavailable, r.ok), (0, r.requests), "{phase:?}: every request answered with one node down");
    }
    assert!(phases[&Phase::TwoNodesDown].unavailable > 0, "no quorum: 503s, {:?}", phases[&Phase::TwoNodesDown]);
    assert!(phases[&Phase::Recovered].ok > 0);

    // The data, exactly, at LOCAL_QUORUM with every node back.
    let b_hashes = hashes(&b);
    assert_eq!(stored_members(&world.store, "globex", fb.file_id, &b_hashes).await, 60_000);
    assert_eq!(stored_members(&world.store, "acme", fa.file_id, &a_hashes).await, 5_000);
    assert_eq!(world.count_rows().await, 65_000, "no extra rows");
}
