//! Shared helpers for the integration tests: a fresh database, keyspace and lake per test, the
//! service binaries as real processes, and polling helpers.
//!
//! The tests need the local stack (`deploy/local/stack.sh up`) and its environment
//! (`eval "$(deploy/local/stack.sh env)"`); `deploy/local/test.sh` does both. Without it they
//! fail with a message saying so: a test that silently skips checks nothing.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use memberlake::catalog::{Catalog, FileRecord};
use memberlake::ids::{EmailHash, FileId};
use memberlake::lake::Lake;
use memberlake::store::MembershipStore;
use rand::Rng;
use tokio::process::{Child, Command};

/// The local stack's coordinates, from the environment.
#[derive(Debug, Clone)]
pub struct Stack {
    pub database_url: String,
    pub scylla_nodes: String,
    pub s3_lake_url: Option<String>,
    pub scratch: PathBuf,
    /// Every connection setting (credentials, TLS, datacenter) as the services read them: a
    /// secure or multi-node stack's `env` sets them, and the services inherit them.
    pub connection: memberlake::config::ConnectionSettings,
    /// The CQL replication map of the test keyspaces (`MEMBERLAKE_SCYLLA_REPLICATION`, as
    /// `memberlake migrate` reads it; default one replica).
    pub replication: String,
}

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with deploy/local/test.sh (or eval \"$(deploy/local/stack.sh env)\")")
    })
}

impl Stack {
    pub fn from_env() -> Self {
        let stack_dir =
            std::env::var("MEMBERLAKE_STACK_DIR").map(PathBuf::from).unwrap_or_else(|_| std::env::temp_dir());
        Self {
            database_url: env("MEMBERLAKE_DATABASE_URL"),
            scylla_nodes: env("MEMBERLAKE_SCYLLA_NODES"),
            s3_lake_url: std::env::var("MEMBERLAKE_TEST_S3_LAKE_URL").ok(),
            scratch: stack_dir.join("test-scratch"),
            connection: memberlake::config::ConnectionSettings::from_env()
                .unwrap_or_else(|e| panic!("the stack's connection settings: {e}")),
            replication: std::env::var("MEMBERLAKE_SCYLLA_REPLICATION")
                .unwrap_or_else(|_| "{'class': 'SimpleStrategy', 'replication_factor': 1}".into()),
        }
    }

    /// Control-plane settings for database `url` (a test's own) with `connections` in the pool.
    pub fn database_args(&self, url: &str, connections: u32) -> memberlake::config::DatabaseArgs {
        memberlake::config::DatabaseArgs {
            database_url: url.to_owned(),
            database_max_connections: connections,
            ..self.connection.database.clone()
        }
    }

    /// Store settings of the stack with request timeout `timeout`.
    pub fn store_args(&self, timeout: Duration) -> memberlake::config::StoreArgs {
        memberlake::config::StoreArgs { scylla_timeout: timeout, ..self.connection.store.clone() }
    }

    /// A connection to the stack's Postgres as its administrator role (creates test databases).
    pub async fn admin_pool(&self) -> sqlx::PgPool {
        let admin = Catalog::open(&self.database_args(&self.database_url, 1)).await;
        admin.expect("connect to the stack's Postgres").pool().clone()
    }

    /// The S3 lake root for tests; panics if the stack was started without S3.
    pub fn s3_lake_url(&self) -> &str {
        self.s3_lake_url.as_deref().expect("MEMBERLAKE_TEST_S3_LAKE_URL is not set: start the stack with S3")
    }
}

pub fn unique(prefix: &str) -> String {
    let n: u64 = rand::rng().random();
    format!("{prefix}_{:012x}", n & 0xffff_ffff_ffff)
}

/// A fresh, migrated Postgres database and keyspace, and a fresh lake, for one test.
pub struct TestWorld {
    pub stack: Stack,
    pub database_url: String,
    pub keyspace: String,
    pub lake_url: String,
    /// This world's own work location (runs, manifests, diffs): beside its lake, so that
    /// worlds never share one (their version numbers repeat).
    pub work_url: String,
    pub catalog: Catalog,
    pub store: Arc<MembershipStore>,
    pub lake: Lake,
    /// The deployment's hash scheme (its services get `MEMBERLAKE_HASH`; the store records it).
    pub hash: memberlake::ids::HashScheme,
}

impl TestWorld {
    /// A world with a `file://` lake.
    pub async fn new() -> Self {
        let stack = Stack::from_env();
        let dir = stack.scratch.join(unique("lake"));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("file://{}", dir.display());
        Self::with_lake(stack, url).await
    }

    /// A world with an `s3://` lake under a fresh prefix of the stack's bucket.
    pub async fn new_s3() -> Self {
        let stack = Stack::from_env();
        let url = format!("{}/{}", stack.s3_lake_url().trim_end_matches('/'), unique("lake"));
        Self::with_lake(stack, url).await
    }

    /// A world with a `file://` lake whose deployment hashes with SHA-256.
    pub async fn new_sha256() -> Self {
        let stack = Stack::from_env();
        let dir = stack.scratch.join(unique("lake"));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("file://{}", dir.display());
        Self::with_scheme(stack, url, memberlake::ids::HashScheme::Sha256).await
    }

    async fn with_lake(stack: Stack, lake_url: String) -> Self {
        Self::with_scheme(stack, lake_url, Default::default()).await
    }

    async fn with_scheme(stack: Stack, lake_url: String, hash: memberlake::ids::HashScheme) -> Self {
        let database_url = fresh_database(&stack).await;
        let keyspace = unique("t");
        let catalog = Catalog::open(&stack.database_args(&database_url, 4)).await.unwrap();
        memberlake::schema::migrate_postgres(catalog.pool()).await.unwrap();
        let session = memberlake::store::connect_session(&stack.store_args(Duration::from_secs(5))).await.unwrap();
        memberlake::schema::migrate_cql(&session, &keyspace, &stack.replication, hash).await.unwrap();
        let store = Arc::new(
            MembershipStore::with_session(Arc::new(session), &keyspace, Duration::from_secs(5)).await.unwrap(),
        );
        let lake = Lake::open(&lake_url).unwrap();
        let work_url = format!("{}-work", lake_url.trim_end_matches('/'));
        Self { stack, database_url, keyspace, lake_url, work_url, catalog, store, lake, hash }
    }

    /// Environment for a service process pointed at this world.
    pub fn service_env(&self) -> HashMap<String, String> {
        let mut env: HashMap<String, String> = [
            ("MEMBERLAKE_DATABASE_URL", self.database_url.as_str()),
            ("MEMBERLAKE_SCYLLA_NODES", self.stack.scylla_nodes.as_str()),
            ("MEMBERLAKE_SCYLLA_KEYSPACE", self.keyspace.as_str()),
            ("MEMBERLAKE_LAKE_URL", self.lake_url.as_str()),
            ("MEMBERLAKE_WORK_URL", self.work_url.as_str()),
            ("MEMBERLAKE_POLL_INTERVAL", "300ms"),
            ("MEMBERLAKE_SPLITTER_INTERVAL", "200ms"),
            ("MEMBERLAKE_WORKER_POLL_INTERVAL", "100ms"),
            ("MEMBERLAKE_LEADER_TTL", "3s"),
            ("MEMBERLAKE_LEASE_TTL", "3s"),
            ("MEMBERLAKE_VERSIONS_REFRESH", "500ms"),
            ("MEMBERLAKE_RETIRE_INTERVAL", "1s"),
            ("MEMBERLAKE_RETIRE_GRACE", "4s"), // > MEMBERLAKE_LEASE_TTL (the splitter checks)
            ("MEMBERLAKE_ERASURE_INTERVAL", "1s"),
            ("MEMBERLAKE_DATABASE_MAX_CONNECTIONS", "4"),
            ("MEMBERLAKE_LOG", "info"),
            ("MEMBERLAKE_HASH", self.hash.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (k, v) in std::env::vars() {
            if k.starts_with("AWS_") || memberlake::config::ConnectionSettings::ENV.contains(&k.as_str()) {
                env.insert(k, v);
            }
        }
        env
    }

    /// Spawns a service binary with this world's environment plus `extra`.
    pub fn spawn(&self, binary: &str, name: &str, extra: &[(&str, &str)]) -> Service {
        let mut env = self.service_env();
        let metrics_port = free_port();
        env.insert("MEMBERLAKE_METRICS_ADDR".into(), format!("127.0.0.1:{metrics_port}"));
        env.insert("MEMBERLAKE_INSTANCE_ID".into(), name.to_owned());
        for (k, v) in extra {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        Service::spawn(binary, name, env, &self.stack.scratch)
    }

    /// Writes a member list under `advertisers/<advertiser>/<name>`; returns its key.
    pub async fn upload(&self, advertiser: &str, name: &str, data: impl Into<bytes::Bytes>) -> String {
        let adv = memberlake::ids::AdvertiserId::parse(advertiser).unwrap();
        let key = self.lake.member_list_key(&adv, name);
        self.lake.put(&key, data.into()).await.unwrap();
        key
    }

    pub async fn files(&self) -> Vec<FileRecord> {
        self.catalog.files().await.unwrap()
    }

    /// Waits until the file under `key` is registered and finished (ingested, failed or
    /// cancelled); returns it.
    pub async fn wait_finished(&self, key: &str, timeout: Duration) -> FileRecord {
        wait_for(timeout, &format!("file {key} to finish"), || async {
            self.files().await.into_iter().find(|f| f.object_key.ends_with(key) && f.finished_at.is_some())
        })
        .await
    }

    pub async fn file(&self, id: FileId) -> FileRecord {
        self.catalog.file(id).await.unwrap().unwrap()
    }

    /// Every row of `membership_changes` in this world's keyspace (present or absent).
    pub async fn count_rows(&self) -> u64 {
        self.store.count_changes().await.unwrap().values().sum()
    }

    /// Rows of `membership_changes` by (advertiser, present).
    pub async fn count_rows_by(&self) -> HashMap<(String, bool), u64> {
        self.store.count_changes().await.unwrap()
    }

    /// Every row of the legacy `memberships` table in this world's keyspace.
    pub async fn count_legacy_rows(&self) -> u64 {
        self.store.retire_rows(|_, _| false, 16, 4).await.unwrap().0
    }
}

/// Creates an empty database on the stack's server and returns its URL.
pub async fn fresh_database(stack: &Stack) -> String {
    let name = unique("test");
    let admin = stack.admin_pool().await;
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.unwrap();
    admin.close().await;
    let mut url = url::Url::parse(&stack.database_url).unwrap();
    url.set_path(&name);
    url.to_string()
}

/// A free TCP port on loopback for a service to bind. Taken below the kernel's ephemeral range
/// (which starts at 32768), so that no outgoing connection can grab it between this check and
/// the service's bind, and from a per-process counter, so that two tests never get the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 600) as u16 * 20;
    loop {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 12_000;
        let port = if port >= 32_000 { port - 12_000 } else { port };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Path of a workspace binary, next to the test executable's directory.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join(name);
    assert!(path.exists(), "{} not built: run `cargo build --bins` first (deploy/local/test.sh does)", path.display());
    path
}

/// A running service process, killed when dropped. Its output goes to a log file.
pub struct Service {
    pub name: String,
    pub child: Option<Child>,
    pub log: PathBuf,
    /// The operations port (`MEMBERLAKE_METRICS_ADDR`: `/healthz`, `/readyz`, `/metrics`).
    pub metrics_addr: Option<String>,
}

impl Service {
    pub fn spawn(binary_name: &str, name: &str, env: HashMap<String, String>, scratch: &std::path::Path) -> Self {
        std::fs::create_dir_all(scratch).unwrap();
        let log = scratch.join(format!("{}.log", unique(name)));
        let out = std::fs::File::create(&log).unwrap();
        let metrics_addr = env.get("MEMBERLAKE_METRICS_ADDR").cloned();
        let child = Command::new(binary(binary_name))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Self { name: name.to_owned(), child: Some(child), log, metrics_addr }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().and_then(|c| c.id()).expect("running")
    }

    /// kill -9: no cleanup, no lease release.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// SIGTERM, then wait for exit; returns the exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        signal(child.id().unwrap(), "TERM");
        tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("exits after SIGTERM").unwrap()
    }

    /// Waits for the process to exit by itself.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        tokio::time::timeout(timeout, child.wait()).await.expect("process exits").unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GETs `path` on this service's ops address.
    pub async fn get(&self, path: &str) -> Result<(u16, String), reqwest::Error> {
        let addr = self.metrics_addr.as_ref().expect("service has an ops address");
        let r = reqwest::get(format!("http://{addr}{path}")).await?;
        let status = r.status().as_u16();
        Ok((status, r.text().await?))
    }
}

pub fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap();
    assert!(status.success(), "kill -{sig} {pid}");
}

/// Polls `probe` every 100 ms until it returns `Some`, or panics after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// MD5 of the normalized email, computed here independently of the product's parser.
pub fn md5_email(email: &str) -> EmailHash {
    EmailHash::md5(Md5::digest(email.trim().to_lowercase().as_bytes()).into())
}

/// A member list file: one email per line.
pub fn list(members: &[String]) -> Vec<u8> {
    members.iter().flat_map(|e| format!("{e}\n").into_bytes()).collect()
}

/// The hashes of `members` ([`md5_email`]).
pub fn hashes(members: &[String]) -> Vec<EmailHash> {
    members.iter().map(|e| md5_email(e)).collect()
}

/// `n` distinct synthetic emails starting at index `from`.
pub fn emails(from: usize, n: usize) -> Vec<String> {
    (from..from + n).map(|i| format!("member.{i}@domain{}.example", i % 13)).collect()
}

/// Value of a Prometheus counter/gauge (summed over label sets) in a `/metrics` text.
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split([' ', '{']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The four services running against one world.
pub struct Pipeline {
    pub meta: Vec<Service>,
    pub splitters: Vec<Service>,
    pub workers: Vec<Service>,
    pub matcher: Option<Service>,
    pub matcher_url: String,
}

impl TestWorld {
    /// Starts one meta-service, one splitter (range size `range_size`), `workers` workers and a
    /// matcher; waits until the matcher is ready.
    pub async fn start_pipeline(&self, range_size: &str, workers: usize) -> Pipeline {
        let meta = vec![self.spawn(
            "meta-service",
            "meta-a",
            &[("MEMBERLAKE_ADMIN_ADDR", &format!("127.0.0.1:{}", free_port()))],
        )];
        let splitters = vec![self.spawn("splitter", "splitter-a", &[("MEMBERLAKE_RANGE_SIZE", range_size)])];
        let workers = (0..workers).map(|i| self.spawn("compute-worker", &format!("worker-{i}"), &[])).collect();
        let (matcher, matcher_url) = self.start_matcher(&[]).await;
        Pipeline { meta, splitters, workers, matcher: Some(matcher), matcher_url }
    }

    /// Starts a matcher-api and waits for its /readyz (on its operations port); returns it and
    /// the URL of its API.
    pub async fn start_matcher(&self, extra: &[(&str, &str)]) -> (Service, String) {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut env: Vec<(&str, &str)> = vec![("MEMBERLAKE_MATCHER_ADDR", &addr)];
        env.extend_from_slice(extra);
        let matcher = self.spawn("matcher-api", "matcher", &env);
        let url = format!("http://{addr}");
        wait_for(Duration::from_secs(30), "matcher /readyz", || async {
            matcher.get("/readyz").await.ok().filter(|(s, _)| *s == 200)
        })
        .await;
        (matcher, url)
    }
}

/// A meta-service and the typed client of its admin API.
pub struct Admin {
    pub meta: Service,
    /// `http://host:port` of its admin API.
    pub url: String,
    pub token: Option<String>,
    pub client: memberlake_admin::AdminClient,
}

impl Admin {
    /// Starts meta-service with admin `tokens` (`caller:secret,...`; `None`: open) and waits
    /// until it is ready; the client holds the first token.
    pub async fn start(world: &TestWorld, tokens: Option<&str>) -> Self {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut env = vec![("MEMBERLAKE_ADMIN_ADDR", addr.as_str())];
        if let Some(t) = tokens {
            env.push(("MEMBERLAKE_ADMIN_TOKENS", t));
        }
        let meta = world.spawn("meta-service", "meta-a", &env);
        wait_for(Duration::from_secs(20), "meta-service ready", || async {
            meta.get("/readyz").await.ok().filter(|(s, _)| *s == 200)
        })
        .await;
        let token = tokens.map(|t| t.split(',').next().unwrap().split_once(':').map_or(t, |(_, s)| s).to_owned());
        let client = memberlake_admin::AdminClient::new(&addr, token.clone());
        Self { meta, url: format!("http://{addr}"), token, client }
    }

    /// A request the typed client cannot send (malformed on purpose), with the operator token:
    /// status and body.
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut r = reqwest::Client::new().request(method, format!("{}{path}", self.url));
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Runs the `memberlake` CLI against this meta-service with `token`: success, stdout, stderr.
    pub fn cli(&self, token: &str, args: &[&str]) -> (bool, String, String) {
        let out = std::process::Command::new(binary("memberlake"))
            .args(args)
            .env("MEMBERLAKE_ADMIN_ADDR", self.url.trim_start_matches("http://"))
            .env("MEMBERLAKE_ADMIN_TOKEN", token)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// `GET /v1/match`; panics unless the answer is a 200.
pub async fn is_member(client: &reqwest::Client, matcher_url: &str, advertiser: &str, hash: EmailHash) -> bool {
    let r = client
        .get(format!("{matcher_url}/v1/match?advertiser_id={advertiser}&email_hash={hash}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    body["member"].as_bool().unwrap()
}

/// `POST /v1/suppress` of `hash` over `advertisers`: the advertisers it is a member of; panics
/// unless the answer is a 200.
pub async fn suppressed(
    client: &reqwest::Client,
    matcher_url: &str,
    hash: EmailHash,
    advertisers: &[&str],
) -> Vec<String> {
    let r = client
        .post(format!("{matcher_url}/v1/suppress"))
        .json(&serde_json::json!({"email_hash": hash.to_hex(), "advertiser_ids": advertisers}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    body["members"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect()
}

/// Reads `hashes` from the store (64 at a time) and returns how many are members of
/// `advertiser`'s list at `version` (the newest of its rows at or below it is present). A
/// transient failure is retried for up to a minute: after a game day restarts a node, the
/// test's own session reconnects on the driver's schedule, not the services'.
pub async fn stored_members(store: &MembershipStore, advertiser: &str, version: FileId, hashes: &[EmailHash]) -> usize {
    use futures::StreamExt;
    use memberlake::retry::{retry_transient, Backoff};
    futures::stream::iter(hashes)
        .map(|h| async move {
            let backoff = Backoff { initial: Duration::from_millis(200), max: Duration::from_secs(2) };
            let rows = retry_transient("a test's read", Duration::from_secs(60), backoff, || store.read_changes(h))
                .await
                .unwrap();
            memberlake::store::member_at(
                rows.iter().map(|r| (r.advertiser_id.as_str(), r.since.0, r.present)),
                advertiser,
                version.0,
            )
        })
        .buffer_unordered(64)
        .filter(|found| futures::future::ready(*found))
        .count()
        .await
}

/// Runs a SQL query returning one i64.
pub async fn sql_i64(catalog: &Catalog, query: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(query).fetch_one(catalog.pool()).await.unwrap()
}

impl TestWorld {
    /// Writes `hashes` as a new, fully ingested version of `advertiser`'s list and activates it
    /// (rows first, then the version flip, as the splitter does), the way a release before
    /// change-proportional versions did: a legacy version, one row per member in `memberships`
    /// (the matcher still answers those). Returns the version.
    pub async fn seed_list(&self, advertiser: &str, hashes: &[EmailHash]) -> i64 {
        let pool = self.catalog.pool();
        sqlx::query("INSERT INTO advertisers (advertiser_id) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(advertiser)
            .execute(pool)
            .await
            .unwrap();
        let version: i64 = sqlx::query_scalar(
            "INSERT INTO files (advertiser_id, bucket, object_key, etag, size_bytes, last_modified, state, finished_at, \
             store_format) VALUES ($1, 'seed', $2, 'seed', 0, now(), 'ingested', now(), 'rows') RETURNING file_id",
        )
        .bind(advertiser)
        .bind(unique("seed"))
        .fetch_one(pool)
        .await
        .unwrap();
        let adv = memberlake::ids::AdvertiserId::parse(advertiser).unwrap();
        self.store.insert_legacy_members(&adv, memberlake::ids::ListVersion(version), hashes, 64).await.unwrap();
        sqlx::query("UPDATE advertisers SET active_file_id = $2, activated_at = now() WHERE advertiser_id = $1")
            .bind(advertiser)
            .bind(version)
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(memberlake::catalog::ACTIVATIONS_CHANNEL)
            .bind(format!("{advertiser}:{version}"))
            .execute(pool)
            .await
            .unwrap();
        version
    }
}

/// Runs `deploy/local/stack.sh <args>` (game-day tests stop and start servers).
pub fn stack_sh(args: &[&str]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/stack.sh");
    let out = std::process::Command::new("bash").arg(script).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "stack.sh {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pipeline {
    pub fn logs(&self) -> Vec<PathBuf> {
        self.meta
            .iter()
            .chain(&self.splitters)
            .chain(&self.workers)
            .chain(&self.matcher)
            .map(|s| s.log.clone())
            .collect()
    }
}

/// Panics if any log contains one of `emails` in plaintext (any case). Scans each log for
/// email-looking tokens and looks them up, so it stays fast for large lists; also checks the
/// logs are not empty, so the scan cannot pass vacuously. Also: no secret of the stack (a
/// secure stack's passwords, [`stack_secrets`]) in any log.
pub fn assert_logs_free_of(logs: &[PathBuf], emails: &[String]) {
    let secrets = stack_secrets();
    let wanted: std::collections::HashSet<String> = emails.iter().map(|e| e.trim().to_lowercase()).collect();
    let mut scanned = 0usize;
    for log in logs {
        let text = std::fs::read_to_string(log).unwrap_or_default().to_lowercase();
        scanned += text.len();
        for token in text.split(|c: char| c.is_whitespace() || "\"'<>()[]{},;=`".contains(c)) {
            if token.contains('@') {
                assert!(!wanted.contains(token), "plaintext email in {}: {token}", log.display());
            }
        }
        for e in emails.iter().take(50) {
            assert!(!text.contains(&e.to_lowercase()), "plaintext email in {}", log.display());
        }
        for (variable, secret) in &secrets {
            assert!(!text.contains(&secret.to_lowercase()), "the secret of {variable} in {}", log.display());
        }
    }
    assert!(scanned > 1000, "the logs are empty: nothing was scanned");
}

/// The secrets the stack's environment points at (the password files of a secure stack), with
/// the variable naming each: no log may contain one.
pub fn stack_secrets() -> Vec<(&'static str, String)> {
    ["MEMBERLAKE_DATABASE_PASSWORD_FILE", "MEMBERLAKE_SCYLLA_PASSWORD_FILE"]
        .into_iter()
        .filter_map(|variable| {
            let path = std::env::var(variable).ok()?;
            let secret = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{variable}={path}: {e}"));
            Some((variable, secret.trim_end().to_owned()))
        })
        .filter(|(_, secret)| secret.len() >= 8)
        .collect()
}

// ---- Faults around list-version stages (tests/tests/version_faults.rs, store_outage_merge.rs):
// the pipeline is stopped at a chosen stage by row locks a test holds in Postgres (the splitter's
// lease row, a version's queued merge units), never by timing; a scan of the store by version;
// the exact-answer check of a version.

use memberlake::catalog::{FileState, LeaderInfo};

/// How long a stage of a small test version may take on a busy machine.
const STAGE_TIMEOUT: Duration = Duration::from_secs(240);

/// Row locks held in one open Postgres transaction; released by [`RowLocks::release`] (rolled
/// back if dropped).
pub struct RowLocks {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    /// The backend holding the locks.
    pub pid: i32,
    /// The rows locked.
    pub rows: usize,
}

impl RowLocks {
    async fn begin(catalog: &Catalog) -> Self {
        let mut tx = catalog.pool().begin().await.unwrap();
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut *tx).await.unwrap();
        Self { tx, pid, rows: 0 }
    }

    /// The backends waiting for these locks, directly or behind another waiter (Postgres queues
    /// a row's waiters: the second waits for the first).
    pub async fn waiters(&self, catalog: &Catalog) -> Vec<i32> {
        let waiters = "WITH RECURSIVE w(pid) AS ( \
                           SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)) \
                           UNION \
                           SELECT a.pid FROM pg_stat_activity a JOIN w ON w.pid = ANY(pg_blocking_pids(a.pid))) \
                       SELECT pid FROM w";
        sqlx::query_scalar(waiters).bind(self.pid).fetch_all(catalog.pool()).await.unwrap()
    }

    pub async fn release(self) {
        self.tx.commit().await.unwrap();
    }
}

impl TestWorld {
    /// The file registered from `key`, if it is registered.
    pub async fn file_by_key(&self, key: &str) -> Option<FileRecord> {
        self.files().await.into_iter().find(|f| f.object_key.ends_with(key))
    }

    /// Freezes the splitter role: locks its lease row, which every leader transaction first
    /// takes FOR SHARE (`hold_term.sql`) and every renewal or takeover updates. Until release, no
    /// splitter splits, reaps, settles or queues cleanup, and none takes over; workers go on.
    /// Returns the lock and the last leader (the frozen one, if its process lives).
    pub async fn hold_leadership(&self) -> (RowLocks, LeaderInfo) {
        let mut locks = RowLocks::begin(&self.catalog).await;
        let leader: LeaderInfo =
            sqlx::query_as("SELECT holder, term, expires_at FROM leader_leases WHERE role = 'splitter' FOR UPDATE")
                .fetch_optional(&mut *locks.tx)
                .await
                .unwrap()
                .expect("no splitter lease row to hold");
        locks.rows = 1;
        (locks, leader)
    }

    /// Locks `file`'s queued merge units except the first `open` (by bucket). Workers claim
    /// with SKIP LOCKED, so they merge only the open ones until release; a cancellation of the
    /// file (which revokes its queued units) waits for the release too.
    pub async fn hold_merge_units(&self, file: FileId, open: i64) -> RowLocks {
        let mut locks = RowLocks::begin(&self.catalog).await;
        let queued = "SELECT range_index FROM ranges WHERE file_id = $1 AND stage = 'merge' AND state = 'queued'";
        let open: Vec<i32> = sqlx::query_scalar(&format!("{queued} ORDER BY range_index LIMIT $2"))
            .bind(file)
            .bind(open)
            .fetch_all(&mut *locks.tx)
            .await
            .unwrap();
        let locked: Vec<i32> =
            sqlx::query_scalar(&format!("{queued} AND range_index <> ALL($2) FOR UPDATE SKIP LOCKED"))
                .bind(file)
                .bind(&open)
                .fetch_all(&mut *locks.tx)
                .await
                .unwrap();
        locks.rows = locked.len();
        locks
    }

    /// Locks the merge unit of `file` that worker `owner` holds, if it still holds one once
    /// locked; returns the lock and the unit's bucket. Until release the unit can be neither
    /// recorded done nor renewed, nor revoked (a cancellation waits).
    pub async fn hold_leased_merge_unit(&self, file: FileId, owner: &str) -> Option<(RowLocks, i32)> {
        let leased = "SELECT range_index FROM ranges \
                      WHERE file_id = $1 AND stage = 'merge' AND state = 'leased' AND lease_owner = $2";
        let bucket: i32 =
            sqlx::query_scalar(leased).bind(file).bind(owner).fetch_optional(self.catalog.pool()).await.unwrap()?;
        let mut locks = RowLocks::begin(&self.catalog).await;
        let locked: Option<i32> = sqlx::query_scalar(&format!("{leased} AND range_index = $3 FOR UPDATE"))
            .bind(file)
            .bind(owner)
            .bind(bucket)
            .fetch_optional(&mut *locks.tx)
            .await
            .unwrap();
        locks.rows = 1;
        locked.map(|b| (locks, b))
    }

    /// Brings the version uploaded under `key` (with no worker running) to the boundary between
    /// its stages: every ingest unit done (by a worker started and stopped here), the merge stage
    /// not started, because the splitter leader is frozen ([`hold_leadership`](Self::hold_leadership),
    /// returned). Returns the version, the lock and the frozen leader.
    pub async fn ingested_not_merging(&self, key: &str) -> (FileRecord, RowLocks, LeaderInfo) {
        let split = wait_for(STAGE_TIMEOUT, "the version split into ingest units", || async {
            self.file_by_key(key).await.filter(|f| f.state == FileState::Ingesting && f.ranges_total > 0)
        })
        .await;
        let (hold, leader) = self.hold_leadership().await;
        let mut worker = self.spawn("compute-worker", "worker-ingest", &[]);
        wait_for(STAGE_TIMEOUT, "every ingest unit done", || async {
            Some(self.file(split.file_id).await).filter(|f| f.ranges_done == f.ranges_total)
        })
        .await;
        assert!(worker.terminate().await.success(), "worker-ingest exits cleanly");
        let file = self.file(split.file_id).await;
        assert_eq!(file.state, FileState::Ingesting, "the frozen leader cannot have started the merge: {file:?}");
        assert_eq!(file.version.buckets_done, 0);
        (file, hold, leader)
    }

    /// Once the leader has queued `file`'s merge units (with no worker running), holds all but
    /// the first `open` ([`hold_merge_units`](Self::hold_merge_units), returned) and starts a
    /// worker (`name`, `env`); returns when it has merged exactly the open ones: the version is
    /// mid-diff, its other units queued behind the lock.
    pub async fn mid_diff(
        &self,
        file: FileId,
        open: i64,
        name: &str,
        env: &[(&str, &str)],
    ) -> (Service, RowLocks, FileRecord) {
        let merging = wait_for(STAGE_TIMEOUT, "the merge stage to start", || async {
            Some(self.file(file).await).filter(|f| f.state == FileState::Merging)
        })
        .await;
        let buckets = 1i64 << merging.version.bucket_bits.unwrap();
        assert!(buckets > open, "{buckets} buckets");
        let gate = self.hold_merge_units(file, open).await;
        assert_eq!(gate.rows as i64, buckets - open, "no worker ran: every merge unit was queued");
        let worker = self.spawn("compute-worker", name, env);
        let file = wait_for(STAGE_TIMEOUT, "the open merge units done", || async {
            Some(self.file(file).await).filter(|f| i64::from(f.version.buckets_done) == open)
        })
        .await;
        assert_eq!(file.state, FileState::Merging, "{file:?}");
        (worker, gate, file)
    }

    /// Rows of `membership_changes` by (advertiser, since_version, present): a scan of the table.
    pub async fn count_rows_by_version(&self) -> HashMap<(String, i64, bool), u64> {
        use futures::TryStreamExt;
        let cql = format!("SELECT advertiser_id, since_version, present FROM {}.membership_changes", self.keyspace);
        let mut rows = self
            .store
            .session()
            .query_iter(cql, ())
            .await
            .unwrap()
            .rows_stream::<(String, i64, Option<bool>)>()
            .unwrap();
        let mut counts = HashMap::new();
        while let Some((advertiser, since, present)) = rows.try_next().await.unwrap() {
            *counts.entry((advertiser, since, present.unwrap_or(false))).or_insert(0) += 1;
        }
        counts
    }
}

/// The exact check of a version: every hash of `members` is a member of `advertiser`'s list at
/// `version` and no hash of `others` is, as the store says (`member_at` over each partition)
/// and as the matcher at `url` answers — every hash, once the matcher follows the activation
/// (until then, or while it answers 503, the whole check is asked again, up to 60 s).
pub async fn assert_exact_answers(
    world: &TestWorld,
    url: &str,
    advertiser: &str,
    version: FileId,
    members: &[EmailHash],
    others: &[EmailHash],
) {
    use futures::StreamExt;
    assert_eq!(stored_members(&world.store, advertiser, version, members).await, members.len(), "members in the store");
    assert_eq!(stored_members(&world.store, advertiser, version, others).await, 0, "non-members in the store");
    let client = reqwest::Client::new();
    let expected: Vec<(EmailHash, bool)> =
        members.iter().map(|h| (*h, true)).chain(others.iter().map(|h| (*h, false))).collect();
    let wrong = |sample: Vec<(EmailHash, bool)>| {
        let client = &client;
        futures::stream::iter(sample)
            .map(move |(h, want)| async move {
                let url = format!("{url}/v1/match?advertiser_id={advertiser}&email_hash={h}");
                match client.get(url).send().await {
                    Ok(r) if r.status() == 200 => {
                        let body: serde_json::Value = r.json().await.unwrap();
                        body["member"].as_bool() != Some(want)
                    }
                    _ => true,
                }
            })
            .buffer_unordered(16)
            .filter(|wrong| futures::future::ready(*wrong))
            .count()
    };
    wait_for(Duration::from_secs(60), "the matcher to answer every hash exactly", || async {
        let sample = expected.iter().step_by(97).copied().collect();
        if wrong(sample).await > 0 {
            return None;
        }
        (wrong(expected.clone()).await == 0).then_some(())
    })
    .await;
}
