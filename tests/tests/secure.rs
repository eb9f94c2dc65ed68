//! The secure stack (`deploy/local/stack.sh up --secure`): Postgres and the CQL node accept TLS
//! and passwords only. The real `memberlake migrate` runs with one setting wrong at a time: the
//! connection is refused, the process exits non-zero, and its error names the setting to fix.
//! No secret (the stack's passwords, or a wrong one tried) ever appears in any output, of a
//! failing run or of a successful one. The services themselves run over TLS with passwords.
//!
//! These tests need the secure stack's environment, so the main pass ignores them;
//! `deploy/local/test.sh` runs them in its secure pass (`--include-ignored`). Run without that
//! environment, they fail: they never pass vacuously.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use memberlake_tests::*;
use rand::Rng;

const HOW: &str = "these tests need the secure stack: deploy/local/test.sh runs them in its secure pass \
     (by hand: MEMBERLAKE_STACK_DIR=$PWD/.stack-secure MEMBERLAKE_STACK_PORT_OFFSET=100 \
     deploy/local/stack.sh up --secure, then eval \"$(deploy/local/stack.sh env)\" with the same variables)";

/// The secure stack's settings and secrets, from the environment (panics without them).
struct Secure {
    stack: Stack,
    /// The CA that signs the stack's server certificate.
    ca_file: PathBuf,
    /// Every secret of the stack: the `memberlake` roles' passwords and the others the stack
    /// keeps beside them (the CQL superuser's, the keystore's).
    secrets: Vec<String>,
    /// This test's own files (wrong passwords, an untrusted CA).
    scratch: PathBuf,
}

fn setting(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: {HOW}"))
}

fn read_secret(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.trim_end_matches(['\n', '\r']).to_owned()
}

fn secure() -> Secure {
    let pg_password_file = PathBuf::from(setting("MEMBERLAKE_DATABASE_PASSWORD_FILE"));
    let cql_password_file = PathBuf::from(setting("MEMBERLAKE_SCYLLA_PASSWORD_FILE"));
    let ca_file = PathBuf::from(setting("MEMBERLAKE_SCYLLA_TLS_CA_FILE"));
    setting("MEMBERLAKE_DATABASE_TLS_CA_FILE");
    setting("MEMBERLAKE_SCYLLA_USERNAME");
    let mut secrets = vec![read_secret(&pg_password_file), read_secret(&cql_password_file)];
    for file in [&pg_password_file, &cql_password_file] {
        let dir = file.parent().expect("a password file in a directory");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with("-password")) {
                secrets.push(read_secret(&path));
            }
        }
    }
    secrets.sort();
    secrets.dedup();
    for secret in &secrets {
        // A short secret could appear in output by chance; the stack's are 48 hex digits.
        assert!(secret.len() >= 16, "a secret of {} characters: not the secure stack's", secret.len());
    }
    let stack = Stack::from_env();
    let scratch = stack.scratch.join(unique("secure"));
    std::fs::create_dir_all(&scratch).unwrap();
    Secure { stack, ca_file, secrets, scratch }
}

/// A random password, as long as the stack's.
fn random_secret() -> String {
    let mut rng = rand::rng();
    (0..3).map(|_| format!("{:016x}", rng.random::<u64>())).collect()
}

impl Secure {
    /// Writes `content` to a 0600 file in this test's scratch dir.
    fn file(&self, name: &str, content: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.scratch.join(name);
        std::fs::write(&path, format!("{content}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// A fresh self-signed CA (openssl), trusted by nothing.
    fn untrusted_ca(&self) -> PathBuf {
        let (key, cert) = (self.scratch.join("untrusted-ca.key"), self.scratch.join("untrusted-ca.pem"));
        let out = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"])
            .args(["-subj", "/CN=memberlake untrusted test CA"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl (deploy/local/stack.sh up --secure installs it)");
        assert!(out.status.success(), "openssl req -x509: {}", String::from_utf8_lossy(&out.stderr));
        assert_ne!(std::fs::read(&cert).unwrap(), std::fs::read(&self.ca_file).unwrap());
        cert
    }

    /// Runs `memberlake [args]` with the stack's settings, `set` over them and `unset` removed;
    /// at most 90 s. Checks that no secret (the stack's or one of `tried`) is in its output.
    async fn memberlake(&self, args: &[&str], set: &[(&str, &str)], unset: &[&str], tried: &[&str]) -> Output {
        let mut command = tokio::process::Command::new(binary("memberlake"));
        command.args(args).stdin(std::process::Stdio::null()).kill_on_drop(true);
        for name in unset {
            command.env_remove(name);
        }
        for (name, value) in set {
            command.env(name, value);
        }
        let out = tokio::time::timeout(Duration::from_secs(90), command.output())
            .await
            .unwrap_or_else(|_| panic!("memberlake {args:?} did not finish within 90 s"))
            .unwrap();
        let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        self.assert_free_of_secrets(&text, &format!("the output of memberlake {args:?} with {set:?}"), tried);
        out
    }

    /// `memberlake migrate` against database `url` and CQL keyspace `keyspace`.
    async fn migrate(&self, url: &str, keyspace: &str, set: &[(&str, &str)], unset: &[&str], tried: &[&str]) -> Output {
        let mut all = vec![("MEMBERLAKE_DATABASE_URL", url), ("MEMBERLAKE_SCYLLA_KEYSPACE", keyspace)];
        all.extend_from_slice(set);
        self.memberlake(&["migrate"], &all, unset, tried).await
    }

    fn assert_free_of_secrets(&self, text: &str, what: &str, tried: &[&str]) {
        assert!(!self.secrets.is_empty());
        for secret in self.secrets.iter().map(String::as_str).chain(tried.iter().copied()) {
            assert!(!text.contains(secret), "{what} contains a secret:\n{text}");
        }
    }
}

/// The stderr of a run that must have failed.
fn refused(out: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{what}: memberlake migrate succeeded\n{stderr}");
    stderr
}

#[tokio::test]
#[ignore = "needs the secure stack: deploy/local/test.sh runs it"]
async fn migrate_over_tls_with_passwords_prints_no_secret() {
    let s = secure();
    let url = fresh_database(&s.stack).await;
    let keyspace = unique("t");
    // Debug logs too: a driver or pool that logged its connection options would show here.
    for log in ["debug", "info"] {
        let out = s.migrate(&url, &keyspace, &[("MEMBERLAKE_LOG", log)], &[], &[]).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "migrate failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("postgres: schema up to date") && stdout.contains("cql: keyspace"), "{stdout}");
    }
    // The settings listing shows the files' paths, never their contents.
    let help = s.memberlake(&["migrate", "--help"], &[], &[], &[]).await;
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("MEMBERLAKE_SCYLLA_PASSWORD_FILE"));
}

#[tokio::test]
#[ignore = "needs the secure stack: deploy/local/test.sh runs it"]
async fn a_wrong_cql_password_is_refused_naming_its_file() {
    let s = secure();
    let url = fresh_database(&s.stack).await;
    let wrong = random_secret();
    let file = s.file("wrong-cql-password", &wrong);
    let out = s
        .migrate(
            &url,
            &unique("t"),
            &[("MEMBERLAKE_SCYLLA_PASSWORD_FILE", file.to_str().unwrap())],
            &[],
            &[wrong.as_str()],
        )
        .await;
    let stderr = refused(&out, "a wrong CQL password");
    assert!(stderr.contains("MEMBERLAKE_SCYLLA_PASSWORD_FILE"), "{stderr}");
}

#[tokio::test]
#[ignore = "needs the secure stack: deploy/local/test.sh runs it"]
async fn a_plaintext_cql_client_is_refused_and_told_to_use_tls() {
    let s = secure();
    let url = fresh_database(&s.stack).await;
    let out = s.migrate(&url, &unique("t"), &[], &["MEMBERLAKE_SCYLLA_TLS_CA_FILE"], &[]).await;
    let stderr = refused(&out, "a plaintext CQL client");
    assert!(stderr.contains("TLS") && stderr.contains("MEMBERLAKE_SCYLLA_TLS_CA_FILE"), "{stderr}");
}

#[tokio::test]
#[ignore = "needs the secure stack: deploy/local/test.sh runs it"]
async fn an_untrusted_cql_ca_is_refused_naming_its_ca_file() {
    let s = secure();
    let ca = s.untrusted_ca();
    let ca = ca.to_str().unwrap();
    let url = fresh_database(&s.stack).await;
    let out = s.migrate(&url, &unique("t"), &[("MEMBERLAKE_SCYLLA_TLS_CA_FILE", ca)], &[], &[]).await;
    let stderr = refused(&out, "CQL with an untrusted CA");
    assert!(stderr.contains("MEMBERLAKE_SCYLLA_TLS_CA_FILE"), "{stderr}");
}

#[tokio::test]
#[ignore = "needs the secure stack: deploy/local/test.sh runs it"]
async fn an_untrusted_ca_for_postgres_is_refused_naming_its_ca_file() {
    let s = secure();
    let ca = s.untrusted_ca();
    let out = s
        .migrate(
            &s.stack.database_url,
            &unique("t"),
            &[("MEMBERLAKE_DATABASE_TLS_CA_FILE", ca.to_str().unwrap())],
            &[],
            &[],
        )
        .await;
    let stderr = refused(&out, "Postgres with an untrusted CA");
    assert!(stderr.contains("MEMBERLAKE_DATABASE_TLS_CA_FILE"), "{stderr}");
}

#[tokio::test]
#[ignore = "needs the secure stack: deploy/local/test.sh runs it"]
async fn a_wrong_postgres_password_is_refused_naming_its_file() {
    let s = secure();
    let wrong = random_secret();
    let file = s.file("wrong-postgres-password", &wrong);
    let out = s
        .migrate(
            &s.stack.database_url,
            &unique("t"),
            &[("MEMBERLAKE_DATABASE_PASSWORD_FILE", file.to_str().unwrap())],
            &[],
            &[wrong.as_str()],
        )
        .await;
    let stderr = refused(&out, "a wrong Postgres password");
    assert!(stderr.contains("MEMBERLAKE_DATABASE_PASSWORD_FILE"), "{stderr}");
}

#[tokio::test]
#[ignore = "needs the secure stack: deploy/local/test.sh runs it"]
async fn a_plaintext_postgres_client_is_refused_and_told_to_use_tls() {
    let s = secure();
    let mut url = url::Url::parse(&s.stack.database_url).unwrap();
    url.query_pairs_mut().append_pair("sslmode", "disable");
    let out = s.migrate(url.as_str(), &unique("t"), &[], &["MEMBERLAKE_DATABASE_TLS_CA_FILE"], &[]).await;
    let stderr = refused(&out, "a plaintext Postgres client");
    assert!(stderr.contains("TLS"), "{stderr}");
}

#[tokio::test]
#[ignore = "needs the secure stack: deploy/local/test.sh runs it"]
async fn services_connect_over_tls_with_passwords_and_log_no_secret() {
    let s = secure();
    let world = TestWorld::new().await;
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(world.catalog.pool())
        .await
        .unwrap();
    assert!(ssl, "the catalog's connection is not TLS");
    // Ready = connected to Postgres and to the CQL node, with the settings the world passes on.
    let (matcher, _url) = world.start_matcher(&[("MEMBERLAKE_LOG", "debug")]).await;
    let log = matcher.log_text();
    assert!(log.contains("MEMBERLAKE_SCYLLA_PASSWORD_FILE") || log.contains("scylla_password_file"), "{log}");
    s.assert_free_of_secrets(&log, "the matcher's log", &[]);
}
