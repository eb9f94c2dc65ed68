//! The alert rules and the dashboard, proven with real tools against running services: Debian's
//! Prometheus (2.42, with `promtool`) scrapes a meta-service, two splitters, a matcher and a
//! worker of a fresh world; the test provokes what the alerts are for and reads the alerts'
//! states from Prometheus' HTTP API.
//!
//! - `promtool check rules` accepts the shipped rules (`deploy/prometheus/alerts.yml`).
//! - The rules Prometheus runs here are a *test copy* of the shipped ones with the waits lowered
//!   (each `for:` to seconds, the queue-age threshold from 600 s to 3 s), made by exact
//!   substitutions that fail if the shipped rule changes shape ([`lowered_rules`]); the
//!   expressions are otherwise the shipped ones. `promtool test rules` (deploy/local/test.sh)
//!   checks the shipped thresholds themselves on synthetic series.
//! - Before anything is provoked, every rule evaluates healthy and inactive.
//! - A stuck file (registered and split, no worker running) fires MemberlakeQueueStuck for the
//!   express lane and MemberlakeSlaAtRisk (the splitter's SLA set to 30 s).
//! - A matcher outage (its only path to the store, a TCP proxy, cut: every lookup a 503) fires
//!   MemberlakeMatcherErrors and MemberlakeStoreErrors{request="read"}.
//! - The stuck file's object deleted and a worker started: the file fails
//!   (MemberlakeFileFailed fires) and the queue empties (MemberlakeQueueStuck resolves).
//! - Both splitters stopped: MemberlakeSplitterLeaderAbsent fires.
//! - Every metric each service exports has `# HELP` text; `memberlake_build_info` is there; the
//!   pipeline gauges come from the leader only.
//! - The dashboard (`deploy/grafana/memberlake.json`) parses, names only catalogued metrics, and
//!   each panel's queries evaluate without error on this Prometheus.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memberlake::telemetry::catalogue::{self, Kind};
use memberlake_tests::*;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

/// Generous: Prometheus scrapes and evaluates every second; a busy machine may lag.
const ALERT_TIMEOUT: Duration = Duration::from_secs(120);

fn repo_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("{name} is not installed: `apt-get install prometheus` (Debian's package; deploy/local/test.sh does)")
    })
}

/// `promtool <args>`; panics with its output unless it succeeds. Returns its stdout.
fn promtool(args: &[&str]) -> String {
    let out = std::process::Command::new(tool("promtool")).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// The shipped rules with their waits lowered for a test that lasts a minute, by exact
/// substitutions within each alert's block (each must match exactly once: a changed rule fails
/// here instead of silently keeping its production wait).
fn lowered_rules(shipped: &str) -> String {
    let changes: &[(&str, &[(&str, &str)])] = &[
        ("MemberlakeSlaAtRisk", &[("for: 10m", "for: 2s")]),
        (
            "MemberlakeQueueStuck",
            &[
                ("(memberlake_queue_oldest_age_seconds) > 600", "(memberlake_queue_oldest_age_seconds) > 3"),
                ("for: 5m", "for: 2s"),
            ],
        ),
        ("MemberlakeMatcherErrors", &[("for: 5m", "for: 2s")]),
        ("MemberlakeStoreErrors", &[("for: 5m", "for: 2s")]),
        ("MemberlakeSplitterLeaderAbsent", &[("for: 1m", "for: 2s")]),
    ];
    let marker = "      - alert: ";
    let mut blocks: Vec<String> = Vec::new();
    for (i, part) in shipped.split(marker).enumerate() {
        blocks.push(if i == 0 { part.to_owned() } else { format!("{marker}{part}") });
    }
    for (alert, substitutions) in changes {
        let block = blocks
            .iter_mut()
            .find(|b| b.starts_with(&format!("{marker}{alert}\n")))
            .unwrap_or_else(|| panic!("alert {alert} is not in the shipped rules"));
        for (from, to) in *substitutions {
            assert_eq!(block.matches(from).count(), 1, "{alert}: expected `{from}` once in its rule");
            *block = block.replace(from, to);
        }
    }
    blocks.concat()
}

/// A TCP proxy to the CQL node that can be cut: the matcher's only way to the store. Cut, it
/// closes its listener (new connections are refused) and every connection it carried.
struct CutProxy {
    addr: String,
    cut: tokio::sync::watch::Sender<bool>,
}

impl CutProxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (cut, cut_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let mut stop = cut_rx.clone();
            loop {
                let (mut client, _) = tokio::select! {
                    _ = stop.wait_for(|cut| *cut) => return, // drops the listener
                    accepted = listener.accept() => match accepted {
                        Ok(c) => c,
                        Err(_) => continue,
                    },
                };
                let target = target.clone();
                let mut stop = cut_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = stop.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Self { addr, cut }
    }

    fn cut(&self) {
        self.cut.send_replace(true);
    }
}

/// A Prometheus server of this test: its own config, data directory and port.
struct Prometheus {
    _child: Child,
    url: String,
    log: PathBuf,
    client: reqwest::Client,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (job, address) every second and evaluating `rules`
    /// every second; waits until it is ready.
    async fn start(dir: &Path, rules: &Path, targets: &[(&str, &str)]) -> Self {
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let mut config =
            String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n");
        config += &format!("rule_files:\n  - {}\nscrape_configs:\n", rules.display());
        for (job, addr) in targets {
            config += &format!("  - job_name: {job}\n    static_configs:\n      - targets: ['{addr}']\n");
        }
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config).unwrap();
        promtool(&["check", "config", config_file.to_str().unwrap()]);
        let port = free_port();
        let log = dir.join("prometheus.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=1h")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let prometheus =
            Self { _child: child, url: format!("http://127.0.0.1:{port}"), log, client: reqwest::Client::new() };
        wait_for(Duration::from_secs(60), "Prometheus ready", || async {
            let r = prometheus.client.get(format!("{}/-/ready", prometheus.url)).send().await.ok()?;
            (r.status() == 200).then_some(())
        })
        .await;
        prometheus
    }

    async fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let url = url::Url::parse_with_params(&format!("{}{path}", self.url), params).unwrap();
        let body: Value = self.client.get(url).send().await.unwrap().json().await.unwrap();
        assert_eq!(body["status"], "success", "{path} {params:?}: {body}\nlog: {}", self.log_text());
        body["data"].clone()
    }

    /// The instant vector `expr` evaluates to now.
    async fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.api("/api/v1/query", &[("query", expr)]).await;
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// The value of the single sample `expr` evaluates to, if any.
    async fn value(&self, expr: &str) -> Option<f64> {
        let result = self.query(expr).await;
        result.first()?["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `expr` evaluates to `want`: a counter that just appeared on a target is in
    /// the next scrape, not necessarily in the one an alert fired from.
    async fn wait_value(&self, expr: &str, want: f64) {
        wait_for(ALERT_TIMEOUT, &format!("{expr} = {want}"), || async {
            (self.value(expr).await == Some(want)).then_some(())
        })
        .await;
    }

    /// Every alerting rule Prometheus runs.
    async fn rules(&self) -> Vec<Value> {
        let data = self.api("/api/v1/rules", &[("type", "alert")]).await;
        data["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap().clone()).collect()
    }

    /// The active alerts named `name` (pending or firing).
    async fn alerts(&self, name: &str) -> Vec<Value> {
        let data = self.api("/api/v1/alerts", &[]).await;
        data["alerts"].as_array().unwrap().iter().filter(|a| a["labels"]["alertname"] == name).cloned().collect()
    }

    /// Waits until alert `name` fires (every label of `labels` matching); returns it. (A rule
    /// with a `for:` passes through pending first; whether this poll saw it is printed.)
    async fn wait_firing(&self, name: &str, labels: &[(&str, &str)]) -> Value {
        let matches = |a: &Value| labels.iter().all(|(k, v)| a["labels"][*k] == *v);
        let seen_pending = std::cell::Cell::new(false);
        let alert = wait_for(ALERT_TIMEOUT, &format!("alert {name} {labels:?} firing"), || async {
            let alerts = self.alerts(name).await;
            let mine = alerts.into_iter().find(|a| matches(a))?;
            seen_pending.set(seen_pending.get() || mine["state"] == "pending");
            (mine["state"] == "firing").then_some(mine)
        })
        .await;
        eprintln!("{name} firing (seen pending first: {}): {}", seen_pending.get(), alert["labels"]);
        alert
    }

    /// Waits until no alert named `name` is pending or firing.
    async fn wait_resolved(&self, name: &str) {
        wait_for(ALERT_TIMEOUT, &format!("alert {name} resolved"), || async {
            self.alerts(name).await.is_empty().then_some(())
        })
        .await;
    }

    /// Waits until every alerting rule has been evaluated after `after` (so a check of their
    /// states sees data scraped by then).
    async fn wait_evaluated_after(&self, after: chrono::DateTime<chrono::Utc>) -> Vec<Value> {
        wait_for(ALERT_TIMEOUT, "every rule evaluated again", || async {
            let rules = self.rules().await;
            let fresh = rules.iter().all(|r| {
                r["lastEvaluation"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .is_some_and(|t| t > after)
            });
            fresh.then_some(rules)
        })
        .await
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Every metric in a `/metrics` text has its `# HELP` line, and the build is announced.
fn assert_described(service: &str, text: &str) {
    let typed: Vec<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    assert!(!typed.is_empty(), "{service} exports no metric:\n{text}");
    for name in &typed {
        assert!(text.contains(&format!("# HELP {name} ")), "{service}: {name} has no # HELP line:\n{text}");
        assert!(catalogue::doc(name).is_some(), "{service}: {name} is not in memberlake::telemetry::catalogue");
    }
    let build =
        text.lines().find(|l| l.starts_with("memberlake_build_info{") && l.contains(&format!("service=\"{service}\"")));
    let build = build.unwrap_or_else(|| panic!("{service}: no memberlake_build_info:\n{text}"));
    assert!(build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))) && build.ends_with(" 1"), "{build}");
}

/// The memberlake metric names an expression uses (a histogram's `_bucket`/`_sum`/`_count`
/// series by the histogram's name); panics on one the catalogue does not know.
fn assert_catalogued(expr: &str, context: &str) {
    let mut rest = expr;
    let mut found = 0;
    while let Some(i) = rest.find("memberlake_") {
        let name: String =
            rest[i..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit()).collect();
        rest = &rest[i + name.len()..];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| catalogue::doc(b).is_some_and(|d| d.kind == Kind::Histogram)))
            .unwrap_or(&name);
        assert!(
            catalogue::doc(base).is_some(),
            "{context}: `{name}` is not a memberlake metric (telemetry::catalogue)"
        );
        found += 1;
    }
    assert!(found > 0, "{context}: names no memberlake metric: {expr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_fire_on_a_stuck_file_and_a_matcher_outage() {
    let started = Instant::now();
    // ---- the rules, as shipped and as lowered for this test, pass promtool
    let shipped_path = repo_file("deploy/prometheus/alerts.yml");
    let shipped = std::fs::read_to_string(&shipped_path).unwrap();
    let alerts_shipped = shipped.matches("\n      - alert: ").count();
    let checked = promtool(&["check", "rules", shipped_path.to_str().unwrap()]);
    assert!(checked.contains(&format!("SUCCESS: {alerts_shipped} rules found")), "{checked}");

    let world = TestWorld::new().await;
    let dir = world.stack.scratch.join(unique("prometheus"));
    std::fs::create_dir_all(&dir).unwrap();
    let rules_path = dir.join("alerts.lowered.yml");
    std::fs::write(&rules_path, lowered_rules(&shipped)).unwrap();
    promtool(&["check", "rules", rules_path.to_str().unwrap()]);

    // ---- the services: the matcher reaches the store through a proxy the test can cut
    let members = hashes(&emails(0, 200));
    world.seed_list("acme", &members).await;
    let cql = world.stack.scylla_nodes.split(',').next().unwrap().to_owned();
    let proxy = CutProxy::start(cql).await;
    let admin_addr = format!("127.0.0.1:{}", free_port());
    let meta = world.spawn("meta-service", "meta-a", &[("MEMBERLAKE_ADMIN_ADDR", &admin_addr)]);
    // A 30 s SLA: a file with nothing done is at risk from 3 s (SLA/10) after registration on.
    let splitter_env = [("MEMBERLAKE_SLA", "30s"), ("MEMBERLAKE_HEALTH_INTERVAL", "500ms")];
    let mut splitter_a = world.spawn("splitter", "splitter-a", &splitter_env);
    let (matcher, matcher_url) = world
        .start_matcher(&[
            ("MEMBERLAKE_SCYLLA_NODES", &proxy.addr),
            ("MEMBERLAKE_SCYLLA_TIMEOUT", "500ms"),
            ("MEMBERLAKE_CACHE_TTL", "1s"),
        ])
        .await;
    let worker_addr = format!("127.0.0.1:{}", free_port()); // started later
    wait_for(Duration::from_secs(30), "splitter-a leads", || async {
        let (_, m) = splitter_a.get("/metrics").await.ok()?;
        (metric_value(&m, "memberlake_splitter_is_leader") == 1.0).then_some(())
    })
    .await;
    // The standby exports no pipeline gauge.
    let mut splitter_b = world.spawn("splitter", "splitter-b", &splitter_env);
    let standby = wait_for(Duration::from_secs(30), "splitter-b serves its metrics", || async {
        let (_, m) = splitter_b.get("/metrics").await.ok()?;
        m.contains("memberlake_splitter_is_leader 0").then_some(m)
    })
    .await;
    assert!(!standby.contains(catalogue::QUEUE_UNITS) && !standby.contains("memberlake_files{"), "{standby}");

    let ops = |s: &Service| s.metrics_addr.clone().unwrap();
    let targets = [
        ("meta-service", ops(&meta)),
        ("splitter-a", ops(&splitter_a)),
        ("splitter-b", ops(&splitter_b)),
        ("matcher-api", ops(&matcher)),
        ("compute-worker", worker_addr.clone()),
    ];
    let targets: Vec<(&str, &str)> = targets.iter().map(|(j, a)| (*j, a.as_str())).collect();
    let prometheus = Prometheus::start(&dir, &rules_path, &targets).await;

    // ---- healthy: answers flow, every rule evaluates without error and is inactive
    let client = reqwest::Client::new();
    for h in members.iter().take(20) {
        assert!(is_member(&client, &matcher_url, "acme", *h).await);
    }
    wait_for(ALERT_TIMEOUT, "Prometheus to see the matcher's answers and the leader's gauges", || async {
        let answers = prometheus.value(r#"sum(memberlake_http_requests_total{route="/v1/match",status="200"})"#).await;
        let lanes = prometheus.query("memberlake_queue_units").await.len();
        (answers >= Some(20.0) && lanes == 2).then_some(())
    })
    .await;
    let rules = prometheus.wait_evaluated_after(chrono::Utc::now()).await;
    assert_eq!(rules.len(), alerts_shipped, "{rules:?}");
    for rule in &rules {
        assert_eq!(rule["health"], "ok", "{rule}");
        assert_eq!(rule["state"], "inactive", "nothing is wrong yet: {rule}");
    }

    // ---- a stuck file: registered and split, but no worker runs
    let key = world.upload("globex", "stuck.csv", list(&emails(1_000, 100))).await;
    let queued = prometheus.wait_firing("MemberlakeQueueStuck", &[("lane", "express"), ("severity", "page")]).await;
    assert!(queued["value"].as_str().unwrap().parse::<f64>().unwrap() > 3.0, "{queued}");
    assert_eq!(prometheus.value(r#"max(memberlake_queue_units{lane="express"})"#).await, Some(1.0));
    assert_eq!(prometheus.value(r#"max(memberlake_files{state="ingesting"})"#).await, Some(1.0));
    prometheus.wait_firing("MemberlakeSlaAtRisk", &[("severity", "page")]).await;
    assert_eq!(prometheus.value("max(memberlake_files_sla_at_risk)").await, Some(1.0));

    // ---- a matcher outage: the store unreachable, every lookup a 503
    proxy.cut();
    wait_for(Duration::from_secs(10), "the proxy to refuse connections", || async {
        TcpStream::connect(&proxy.addr).await.is_err().then_some(())
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (stop, url, client) = (stop.clone(), matcher_url.clone(), client.clone());
        async move {
            let (mut unavailable, mut other) = (0u32, Vec::new());
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let h = md5_email(&format!("probe.{i}@outage.example")); // never cached
                let r = client.get(format!("{url}/v1/match?advertiser_id=acme&email_hash={h}")).send().await.unwrap();
                match r.status().as_u16() {
                    503 => unavailable += 1,
                    s => other.push(s),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (unavailable, other)
        }
    });
    prometheus.wait_firing("MemberlakeMatcherErrors", &[("severity", "page")]).await;
    prometheus.wait_firing("MemberlakeStoreErrors", &[("request", "read")]).await;
    stop.store(true, Ordering::Relaxed);
    let (unavailable, other) = load.await.unwrap();
    assert!(unavailable >= 10, "{unavailable} 503s");
    // The first requests after the cut may still find a connection being torn down; the rest
    // are 503s, never a 200 "not a member" for a hash the store could not be asked about.
    assert!(other.iter().all(|s| *s == 503 || *s == 200) && other.len() <= 3, "statuses besides 503: {other:?}");

    // ---- the stuck file's object disappears; a worker takes its range and fails the file
    world.lake.delete(&key).await.unwrap();
    let worker = world.spawn("compute-worker", "worker-a", &[("MEMBERLAKE_METRICS_ADDR", &worker_addr)]);
    prometheus.wait_firing("MemberlakeFileFailed", &[("severity", "ticket")]).await;
    prometheus.wait_resolved("MemberlakeQueueStuck").await;
    prometheus.wait_value(r#"max(memberlake_queue_units{lane="express"})"#, 0.0).await;
    // The alert fired from the leader's gauge; the worker's counter (a target just started)
    // may be one scrape behind it.
    prometheus.wait_value(r#"sum(memberlake_files_failed_total{job="compute-worker"})"#, 1.0).await;

    // ---- every service's metrics are described; the leader's gauges are there
    let (_, worker_metrics) = worker.get("/metrics").await.unwrap();
    assert!(worker_metrics.contains("memberlake_worker_ranges_failed_total{kind=\"permanent\"} 1"), "{worker_metrics}");
    for (service, name) in
        [(&meta, "meta-service"), (&splitter_a, "splitter"), (&matcher, "matcher-api"), (&worker, "compute-worker")]
    {
        let (_, text) = service.get("/metrics").await.unwrap();
        assert_described(name, &text);
    }
    let (_, leader_metrics) = splitter_a.get("/metrics").await.unwrap();
    for lane in ["express", "bulk"] {
        for gauge in [catalogue::QUEUE_UNITS, catalogue::QUEUE_OLDEST_AGE] {
            assert!(
                leader_metrics.contains(&format!("{gauge}{{lane=\"{lane}\"}}")),
                "{gauge} {lane}: {leader_metrics}"
            );
        }
    }

    // ---- the dashboard: parses, names catalogued metrics, every query evaluates
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_file("deploy/grafana/memberlake.json")).unwrap()).unwrap();
    let mut panels: Vec<Value> = dashboard["panels"].as_array().unwrap().clone();
    let nested: Vec<Value> = panels.iter().flat_map(|p| p["panels"].as_array().cloned().unwrap_or_default()).collect();
    panels.extend(nested);
    // The panels of what this test provoked must show it; the others evaluate (no error) but
    // may be empty here (no activation, no store write in this world).
    let must_show = [
        "Queued work units per lane",
        "Oldest queued unit per lane",
        "Files whose SLA is at risk",
        "Files per state",
        "Splitter leaders",
        "Units not completed, by kind",
        "Matcher requests by status",
        "Matcher 5xx ratio",
        "Store errors",
        "Builds running",
    ];
    let mut queries = 0;
    let mut shown = Vec::new();
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().unwrap();
        let targets = panel["targets"].as_array().unwrap_or_else(|| panic!("panel {title} has no targets"));
        assert!(!targets.is_empty(), "panel {title} has no queries");
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_else(|| panic!("panel {title}: a target without expr"));
            assert_catalogued(expr, &format!("panel {title}"));
            let expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "15s").replace("$__range", "1h");
            assert!(!expr.contains('$'), "panel {title}: a variable this test does not know: {expr}");
            queries += 1;
            // A rate needs two scrapes of a counter that only just appeared: a panel that must
            // show what this test provoked gets a few scrapes to do so.
            let mut has_data = !prometheus.query(&expr).await.is_empty();
            let deadline = Instant::now() + Duration::from_secs(20);
            while !has_data && must_show.contains(&title) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(250)).await;
                has_data = !prometheus.query(&expr).await.is_empty();
            }
            if has_data {
                shown.push(title);
            }
        }
    }
    for title in must_show {
        assert!(shown.contains(&title), "dashboard panel {title:?} shows nothing (or is gone); with data: {shown:?}");
    }
    eprintln!("dashboard: {queries} queries evaluated; panels with data: {shown:?}");
    for line in shipped.lines().filter(|l| l.contains("memberlake_") && !l.trim_start().starts_with('#')) {
        assert_catalogued(line, "alerts.yml");
    }

    // ---- no splitter: the leader is absent
    assert!(splitter_a.terminate().await.success());
    wait_for(Duration::from_secs(30), "splitter-b takes over", || async {
        let (_, m) = splitter_b.get("/metrics").await.ok()?;
        (metric_value(&m, "memberlake_splitter_is_leader") == 1.0 && m.contains(catalogue::QUEUE_UNITS)).then_some(())
    })
    .await;
    assert!(prometheus.alerts("MemberlakeSplitterLeaderAbsent").await.is_empty(), "a standby took over");
    assert!(splitter_b.terminate().await.success());
    prometheus.wait_firing("MemberlakeSplitterLeaderAbsent", &[("severity", "page")]).await;

    drop(prometheus);
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("alerts test: {:.0} s", started.elapsed().as_secs_f64());
}
