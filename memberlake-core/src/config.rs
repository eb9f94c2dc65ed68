//! Configuration from `MEMBERLAKE_*` environment variables (flags override), with clap.
//!
//! Each service composes the argument groups it needs (`#[command(flatten)]`). `--help` lists
//! every variable with its default and current value (secrets hidden), and
//! [`log_effective_config`] prints the effective configuration at start, secrets masked.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgMatches, Args};

use crate::catalog::PriorityKnobs;
pub use crate::telemetry::{LogArgs, LogFormat};

/// The Postgres control plane.
#[derive(Args, Debug, Clone)]
pub struct DatabaseArgs {
    /// Postgres URL of the control plane (the password, if any, is masked in logs).
    #[arg(
        long,
        env = "MEMBERLAKE_DATABASE_URL",
        default_value = "postgres://memberlake@127.0.0.1:5432/memberlake",
        hide_env_values = true
    )]
    pub database_url: String,
    /// Connections in this process's Postgres pool.
    #[arg(long, env = "MEMBERLAKE_DATABASE_MAX_CONNECTIONS", default_value_t = 8)]
    pub database_max_connections: u32,
    /// File holding the Postgres password (a mounted secret; one trailing newline ignored).
    /// Used when the URL carries no password.
    #[arg(long, env = "MEMBERLAKE_DATABASE_PASSWORD_FILE")]
    pub database_password_file: Option<PathBuf>,
    /// CA certificate(s) (PEM) that sign the Postgres server's certificate. Set: every
    /// connection uses TLS and verifies the server's certificate and host name
    /// (`sslmode=verify-full`). Unset: the URL's `sslmode`/`sslrootcert` apply (default
    /// `prefer`).
    #[arg(long, env = "MEMBERLAKE_DATABASE_TLS_CA_FILE")]
    pub database_tls_ca_file: Option<PathBuf>,
}

/// How the deployment hashes emails: one scheme per deployment, recorded in the store.
#[derive(Args, Debug, Clone, Copy)]
pub struct HashArgs {
    /// `md5` (the contract's default) or `sha256`: how emails are hashed, and the width of
    /// pre-hashed rows and of every hash in the APIs (32 or 64 hex digits). `memberlake migrate`
    /// records it in the store; a process of the other scheme refuses to start against it.
    #[arg(long = "hash", env = "MEMBERLAKE_HASH", default_value = "md5")]
    pub hash: crate::ids::HashScheme,
}

impl HashArgs {
    /// Makes the setting this process's scheme ([`HashScheme::install`](crate::ids::HashScheme::install)),
    /// before anything hashes or parses a hash.
    pub fn install(&self) -> Result<(), ConfigError> {
        if self.hash.install() {
            return Ok(());
        }
        Err(ConfigError(format!(
            "MEMBERLAKE_HASH={} but this process already hashes with {}",
            self.hash,
            crate::ids::HashScheme::deployment()
        )))
    }
}

/// The CQL membership store (ScyllaDB or Cassandra).
#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// The scheme of the hashes the store holds (checked against the store's record at start).
    #[command(flatten)]
    pub hash: HashArgs,
    /// CQL contact points, comma-separated host:port.
    #[arg(long, env = "MEMBERLAKE_SCYLLA_NODES", value_delimiter = ',', default_value = "127.0.0.1:9042")]
    pub scylla_nodes: Vec<String>,
    /// Keyspace holding the memberships table.
    #[arg(long, env = "MEMBERLAKE_SCYLLA_KEYSPACE", default_value = "memberlake")]
    pub scylla_keyspace: String,
    /// Timeout of one store request, e.g. `2s` or `500ms`.
    #[arg(long, env = "MEMBERLAKE_SCYLLA_TIMEOUT", value_parser = parse_duration, default_value = "2s")]
    pub scylla_timeout: Duration,
    /// A lookup not answered within this is also sent to a second coordinator, and the first
    /// answer wins (driver speculative execution, reads only): a node that died but is not yet
    /// known dead, or a slow replica, costs this much latency instead of a timeout. `0s`: off.
    #[arg(long, env = "MEMBERLAKE_SCYLLA_READ_SPECULATION", value_parser = parse_duration, default_value = "200ms")]
    pub scylla_read_speculation: Duration,
    /// CQL user (the nodes' PasswordAuthenticator). Unset: no authentication.
    #[arg(long, env = "MEMBERLAKE_SCYLLA_USERNAME", requires = "scylla_password_file")]
    pub scylla_username: Option<String>,
    /// File holding the CQL user's password (a mounted secret; one trailing newline ignored).
    #[arg(long, env = "MEMBERLAKE_SCYLLA_PASSWORD_FILE", requires = "scylla_username")]
    pub scylla_password_file: Option<PathBuf>,
    /// CA certificate(s) (PEM) that sign the nodes' certificates. Set: every connection uses
    /// TLS and verifies the node's certificate (for its IP address, or
    /// MEMBERLAKE_SCYLLA_TLS_SERVER_NAME). Unset: plaintext.
    #[arg(long, env = "MEMBERLAKE_SCYLLA_TLS_CA_FILE")]
    pub scylla_tls_ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM), for nodes that require client certificates.
    #[arg(
        long,
        env = "MEMBERLAKE_SCYLLA_TLS_CERT_FILE",
        requires_all = ["scylla_tls_key_file", "scylla_tls_ca_file"]
    )]
    pub scylla_tls_cert_file: Option<PathBuf>,
    /// Private key (PEM) of the client certificate.
    #[arg(long, env = "MEMBERLAKE_SCYLLA_TLS_KEY_FILE", requires = "scylla_tls_cert_file")]
    pub scylla_tls_key_file: Option<PathBuf>,
    /// The DNS name every node's certificate is checked for, when the certificates name a host
    /// rather than each node's address (e.g. a cluster-wide certificate). Unset: each node's IP.
    #[arg(long, env = "MEMBERLAKE_SCYLLA_TLS_SERVER_NAME", requires = "scylla_tls_ca_file")]
    pub scylla_tls_server_name: Option<String>,
    /// This replica's datacenter: requests go to its nodes only (token-aware), so that
    /// LOCAL_QUORUM reads and writes stay in it. Unset: the driver treats every node alike
    /// (one datacenter).
    #[arg(long, env = "MEMBERLAKE_SCYLLA_LOCAL_DC")]
    pub scylla_local_dc: Option<String>,
}

/// The connection settings of the control plane and the store, for tools and tests that
/// connect without being a service: read from the environment exactly as a service reads them.
#[derive(clap::Parser, Debug, Clone)]
pub struct ConnectionSettings {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub store: StoreArgs,
}

impl ConnectionSettings {
    /// The settings from `MEMBERLAKE_*` variables alone.
    pub fn from_env() -> Result<Self, clap::Error> {
        <Self as clap::Parser>::try_parse_from(["memberlake"])
    }

    /// The variables that say how to reach and authenticate to the control plane and the
    /// store: what a process started for the same servers must inherit.
    pub const ENV: &'static [&'static str] = &[
        "MEMBERLAKE_DATABASE_PASSWORD_FILE",
        "MEMBERLAKE_DATABASE_TLS_CA_FILE",
        "MEMBERLAKE_SCYLLA_USERNAME",
        "MEMBERLAKE_SCYLLA_PASSWORD_FILE",
        "MEMBERLAKE_SCYLLA_TLS_CA_FILE",
        "MEMBERLAKE_SCYLLA_TLS_CERT_FILE",
        "MEMBERLAKE_SCYLLA_TLS_KEY_FILE",
        "MEMBERLAKE_SCYLLA_TLS_SERVER_NAME",
        "MEMBERLAKE_SCYLLA_LOCAL_DC",
    ];
}

/// The data lake root.
#[derive(Args, Debug, Clone)]
pub struct LakeArgs {
    /// Lake root: `s3://bucket/prefix` (configured by the standard AWS_* variables, incl.
    /// AWS_ENDPOINT_URL and AWS_ALLOW_HTTP) or `file:///absolute/path`.
    #[arg(long, env = "MEMBERLAKE_LAKE_URL", default_value = "file:///var/lib/memberlake/lake")]
    pub lake_url: String,
    /// memberlake's own work location (sorted runs, version manifests and diffs):
    /// `s3://bucket/prefix` or `file:///absolute/path`, never inside the lake. Default: `work`
    /// beside a `file://` lake; an S3 lake must set it.
    #[arg(long, env = "MEMBERLAKE_WORK_URL")]
    pub work_url: Option<String>,
}

/// How a list becomes a version: its range plan, its bucket width and the guards that hold it.
/// The splitter applies them; `memberlake check` (a dry run) predicts with the same values, so
/// both read them here.
#[derive(Args, Debug, Clone, Copy, PartialEq)]
pub struct PlanArgs {
    /// Byte size of the ranges files are cut into (compressed files are one range).
    #[arg(long, env = "MEMBERLAKE_RANGE_SIZE", value_parser = parse_bytes, default_value = "64MiB")]
    pub range_size: u64,
    /// About how many hashes one bucket of a version holds: a version gets enough buckets for
    /// its size (what a merge unit holds in memory per input, 33 bytes each).
    #[arg(long, env = "MEMBERLAKE_BUCKET_TARGET", default_value_t = crate::catalog::DEFAULT_BUCKET_TARGET)]
    pub bucket_target: u64,
    /// A version with a larger share of rejected rows is held for an operator before it writes
    /// a row (approve: it goes on; reject: it is cancelled).
    #[arg(long, env = "MEMBERLAKE_MAX_REJECT_RATIO", default_value_t = 0.5)]
    pub max_reject_ratio: f64,
    /// A version whose member count is below `(1 - this)` of the active version's is held for
    /// an operator to approve or reject instead of activating (1: never held).
    #[arg(long, env = "MEMBERLAKE_MAX_SHRINK", default_value_t = 0.5)]
    pub max_shrink: f64,
}

impl PlanArgs {
    /// The guards, as the settle step applies them.
    pub fn settle_policy(&self) -> crate::catalog::SettlePolicy {
        crate::catalog::SettlePolicy { max_reject_ratio: self.max_reject_ratio, max_shrink: self.max_shrink }
    }
}

/// Range leases, which the compute-worker holds and the splitter reaps: both must read the
/// same values, so they are declared once, here.
#[derive(Args, Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseArgs {
    /// Lease lifetime; renewed every third of it. A dead worker's range is retried after it.
    #[arg(long, env = "MEMBERLAKE_LEASE_TTL", value_parser = parse_duration, default_value = "30s")]
    pub lease_ttl: Duration,
    /// Attempts a range gets before it (and its file) fails.
    #[arg(long, env = "MEMBERLAKE_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(i32).range(1..))]
    pub max_attempts: i32,
}

/// How this process names itself in leases and logs (workers and splitters share it).
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceArgs {
    /// Name of this process in leases and logs (default: host-pid).
    #[arg(long, env = "MEMBERLAKE_INSTANCE_ID")]
    pub instance_id: Option<String>,
}

impl InstanceArgs {
    /// `MEMBERLAKE_INSTANCE_ID`, else the host name and the process id.
    pub fn name(&self) -> String {
        if let Some(id) = self.instance_id.as_deref().filter(|s| !s.is_empty()) {
            return id.to_owned();
        }
        let host =
            std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_owned()).unwrap_or_else(|_| "host".into());
        format!("{host}-{}", std::process::id())
    }
}

/// A rule between settings, checked at start so that a bad combination stops the service with
/// a message naming the settings to fix instead of misbehaving later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl LeaseArgs {
    /// Superseded rows may only be deleted once no worker holding a revoked lease can still be
    /// writing them: the retirement grace must exceed the lease TTL.
    pub fn check_retire_grace(&self, retire_grace: Duration) -> Result<(), ConfigError> {
        if retire_grace <= self.lease_ttl {
            return Err(ConfigError(format!(
                "MEMBERLAKE_RETIRE_GRACE ({retire_grace:?}) must be longer than MEMBERLAKE_LEASE_TTL ({:?}): \
                 a worker whose lease was revoked may write rows until its lease expires",
                self.lease_ttl
            )));
        }
        Ok(())
    }
}

/// Parses `250ms`, `2s`, `5m`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let value: f64 = number.parse().map_err(|_| format!("invalid duration {s:?}: expected e.g. 500ms, 2s, 5m"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        _ => return Err(format!("invalid duration unit in {s:?}: use ms, s, m, h or d")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a byte size: `64MiB`, `1GiB`, `512KiB`, `1000` (bytes).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: u64 = number.parse().map_err(|_| format!("invalid size {s:?}: expected e.g. 64MiB"))?;
    let multiplier = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "KB" => 1 << 10,
        "MiB" | "M" | "MB" => 1 << 20,
        "GiB" | "G" | "GB" => 1 << 30,
        other => return Err(format!("invalid size unit {other:?}: use B, KiB, MiB or GiB")),
    };
    value
        .checked_mul(multiplier)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("size {s:?} must be positive and fit in 64 bits"))
}

/// Formats a byte count for people: `3.0 MiB`, `12 B`.
pub fn format_bytes(n: u64) -> String {
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if n >= size {
            return format!("{:.1} {unit}", n as f64 / size as f64);
        }
    }
    format!("{n} B")
}

/// One line of the effective configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub env: String,
    pub value: String,
    pub source: &'static str,
}

/// Parses the process arguments and environment into `T`, returning the effective
/// configuration with secrets masked alongside. Exits with clap's message on bad input.
pub fn parse<T: clap::Parser>() -> (T, Vec<Setting>) {
    let mut command = T::command();
    let matches = command.get_matches_mut();
    let settings = effective_settings(&command, &matches);
    let parsed = T::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut command).exit());
    (parsed, settings)
}

/// The value and origin of every argument that has an environment variable.
pub fn effective_settings(command: &clap::Command, matches: &ArgMatches) -> Vec<Setting> {
    let mut out = Vec::new();
    for arg in command.get_arguments() {
        let Some(env) = arg.get_env() else { continue };
        let id = arg.get_id().as_str();
        let source = match matches.value_source(id) {
            Some(clap::parser::ValueSource::EnvVariable) => "env",
            Some(clap::parser::ValueSource::CommandLine) => "flag",
            Some(clap::parser::ValueSource::DefaultValue) => "default",
            _ => "unset",
        };
        let raw: Vec<String> = matches
            .get_raw(id)
            .map(|vals| vals.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let joined = raw.join(",");
        let value = if arg.is_hide_env_values_set() { mask_secret(&joined) } else { joined };
        out.push(Setting { env: env.to_string_lossy().into_owned(), value, source });
    }
    // Subcommands' own arguments are reported by the subcommand that runs.
    out
}

/// Masks a secret: a URL keeps everything but its password; anything else shows only whether it
/// is set and how many comma-separated items it holds.
pub fn mask_secret(value: &str) -> String {
    if value.is_empty() {
        return "(unset)".into();
    }
    if let Ok(mut url) = url::Url::parse(value) {
        if url.has_host() {
            if url.password().is_some() {
                let _ = url.set_password(Some("****"));
            }
            return url.to_string();
        }
    }
    let items = value.split(',').filter(|s| !s.is_empty()).count();
    format!("**** ({items} item{})", if items == 1 { "" } else { "s" })
}

/// A service's first steps: parse the configuration, set up logs and metrics, log the effective
/// configuration (secrets masked).
pub fn start<T: clap::Parser>(service: &str, log: impl Fn(&T) -> &LogArgs) -> T {
    let (args, settings) = parse::<T>();
    crate::telemetry::init(log(&args));
    crate::telemetry::catalogue::record_build_info(service);
    crate::telemetry::catalogue::export_zero_counters(service);
    log_effective_config(service, &settings);
    args
}

/// Logs the effective configuration, one line per variable.
pub fn log_effective_config(service: &str, settings: &[Setting]) {
    tracing::info!(service, version = env!("CARGO_PKG_VERSION"), "starting");
    for s in settings {
        tracing::info!(target: "memberlake::config", "{}={} ({})", s.env, s.value, s.source);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("2 weeks").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn formats_bytes() {
        assert_eq!(format_bytes(3 << 20), "3.0 MiB");
        assert_eq!(format_bytes(12), "12 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert_eq!(parse_bytes("1GiB").unwrap(), 1 << 30);
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("12parsecs").is_err());
    }

    #[test]
    fn secrets_are_masked() {
        assert_eq!(mask_secret("postgres://u:hunter2@db:5432/x"), "postgres://u:****@db:5432/x");
        assert_eq!(mask_secret("postgres://u@db/x"), "postgres://u@db/x");
        assert_eq!(mask_secret("tok1,tok2"), "**** (2 items)");
        assert_eq!(mask_secret(""), "(unset)");
        assert!(!mask_secret("hunter2").contains("hunter2"));
    }

    #[test]
    fn retire_grace_must_exceed_the_lease_ttl() {
        let leases = LeaseArgs { lease_ttl: Duration::from_secs(30), max_attempts: 5 };
        assert!(leases.check_retire_grace(Duration::from_secs(120)).is_ok());
        let err = leases.check_retire_grace(Duration::from_secs(30)).unwrap_err().to_string();
        assert!(err.contains("MEMBERLAKE_RETIRE_GRACE") && err.contains("MEMBERLAKE_LEASE_TTL"), "{err}");
    }
}

/// Knobs of the effective priority (see `migrations/postgres/0002_priorities.sql`).
#[derive(Args, Debug, Clone, Copy, PartialEq)]
pub struct PriorityArgs {
    /// Effective-priority points per unit of operator priority.
    #[arg(long, env = "MEMBERLAKE_PRIORITY_PER_LEVEL", default_value_t = 1000.0)]
    pub priority_per_level: f64,
    /// Points per unit of ln(advertiser weight): weight 10 → +230 with the default.
    #[arg(long, env = "MEMBERLAKE_PRIORITY_PER_LOG_WEIGHT", default_value_t = 100.0)]
    pub priority_per_log_weight: f64,
    /// Aging: points per second a file has waited since registration (0.2 = 720 per hour).
    #[arg(long, env = "MEMBERLAKE_PRIORITY_AGING_PER_SECOND", default_value_t = 0.2)]
    pub priority_aging_per_second: f64,
    /// Size penalty: points per doubling of the file size in MiB (100 GB → −830).
    #[arg(long, env = "MEMBERLAKE_PRIORITY_PER_SIZE_DOUBLING", default_value_t = 50.0)]
    pub priority_per_size_doubling: f64,
}

impl PriorityArgs {
    /// The domain's view of these settings.
    pub fn knobs(&self) -> PriorityKnobs {
        PriorityKnobs {
            per_level: self.priority_per_level,
            per_log_weight: self.priority_per_log_weight,
            aging_per_second: self.priority_aging_per_second,
            per_size_doubling: self.priority_per_size_doubling,
        }
    }
}

/// What counts as express work (small or urgent files).
#[derive(Args, Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneArgs {
    /// Largest file the express lane takes.
    #[arg(long, env = "MEMBERLAKE_EXPRESS_MAX_FILE_SIZE", value_parser = parse_bytes, default_value = "256MiB")]
    pub express_max_file_size: u64,
    /// Files with at least this operator priority also go to the express lane.
    #[arg(long, env = "MEMBERLAKE_URGENT_PRIORITY", default_value_t = 100)]
    pub urgent_priority: i32,
}
