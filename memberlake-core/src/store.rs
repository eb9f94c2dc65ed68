//! The CQL data plane (ScyllaDB, or Cassandra for local work: same protocol).
//!
//! One partition per email hash, so that "which of these advertisers have this person?" is a
//! single partition read. Two tables (see `migrations/cql/`):
//!
//! - `membership_changes` (every version ingested since change-proportional versions,
//!   `docs/versions.md`): a row `(h, a, v, present)` says "from version `v` of `a`'s list on, `h`
//!   is (or is not) a member". A lookup at `a`'s active version `V` takes the newest of `a`'s
//!   rows at or below `V` ([`member_at`]). A version writes only what changed against the
//!   version it replaces; rows of versions newer than the active one are ignored, which keeps
//!   activation one flip in Postgres and redone work idempotent.
//! - `memberships` (versions ingested before): a row `(h, a, v)` says "version `v` of `a`'s list
//!   contains `h`"; a lookup matches the active version exactly. Read while an advertiser's
//!   active version is such a *legacy* version, retired by a token-ring scan.
//!
//! Writes go in UNLOGGED batches of rows that share a replica set ([`ReplicaGroups`]): one
//! request carries many rows to a node that owns them all.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{
    ConnectionError, ConnectionPoolError, ConnectionSetupRequestErrorKind, DbError, ExecutionError, MetadataError,
    NewSessionError, NextPageError, NextRowError, PagerExecutionError, PrepareError, RequestAttemptError, RequestError,
    UseKeyspaceError,
};
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;

use crate::error::{Classify, ErrorClass};
use crate::ids::{AdvertiserId, EmailHash, ListVersion};
use crate::schema::SchemaError;

/// A failed store call. The driver's error is kept as the source (and quoted in the message);
/// [`Classify`] says whether the same call could succeed later.
///
/// The driver's errors are boxed: they are hundreds of bytes, and every row a worker writes
/// returns a `Result<(), StoreError>`.
#[derive(Debug)]
pub enum StoreError {
    Connect {
        nodes: String,
        /// What to fix, when the refusal says (bad password, untrusted certificate, plaintext
        /// refused): see [`crate::connect::cql_hint`].
        hint: Option<Box<str>>,
        source: Box<NewSessionError>,
    },
    /// A connection setting that cannot be used (unreadable password file, bad CA file).
    Settings(Box<crate::connect::SettingsError>),
    /// A keyspace name that is not a plain identifier.
    Keyspace {
        source: Box<SchemaError>,
    },
    Prepare {
        statement: String,
        source: Box<PrepareError>,
    },
    Execute {
        operation: &'static str,
        source: Box<ExecutionError>,
    },
    /// A paged query that could not start.
    Pager {
        operation: &'static str,
        source: Box<PagerExecutionError>,
    },
    /// A paged query that failed while fetching or decoding its rows.
    NextRow {
        operation: &'static str,
        source: Box<NextRowError>,
    },
    /// The request outlived the store's timeout (the driver's own timeout is
    /// [`ExecutionError::RequestTimeout`]).
    Timeout {
        operation: &'static str,
        timeout: Duration,
    },
    /// A result that does not have the shape of the memberships table.
    Decode {
        operation: &'static str,
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Connect { nodes, hint: Some(hint), source } => {
                write!(f, "cannot connect to the CQL store at {nodes}: {hint} ({source})")
            }
            StoreError::Connect { nodes, hint: None, source } => {
                write!(f, "cannot connect to the CQL store at {nodes}: {source}")
            }
            StoreError::Settings(e) => write!(f, "{e}"),
            StoreError::Keyspace { source } => write!(f, "cannot prepare the CQL statements: {source}"),
            StoreError::Prepare { statement, source } => write!(f, "CQL prepare of {statement:?} failed: {source}"),
            StoreError::Execute { operation, source } => write!(f, "CQL {operation} failed: {source}"),
            StoreError::Pager { operation, source } => write!(f, "CQL {operation} failed: {source}"),
            StoreError::NextRow { operation, source } => write!(f, "CQL {operation} failed while paging: {source}"),
            StoreError::Timeout { operation, timeout } => write!(f, "CQL {operation} timed out after {timeout:?}"),
            StoreError::Decode { operation, source } => write!(f, "unexpected CQL result for {operation}: {source}"),
        }
    }
}

/// Written out rather than derived: the source is the driver's error itself, not its box, so
/// that `source().downcast_ref::<ExecutionError>()` works.
impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Connect { source, .. } => Some(&**source),
            StoreError::Settings(e) => Some(&**e),
            StoreError::Keyspace { source } => Some(&**source),
            StoreError::Prepare { source, .. } => Some(&**source),
            StoreError::Execute { source, .. } => Some(&**source),
            StoreError::Pager { source, .. } => Some(&**source),
            StoreError::NextRow { source, .. } => Some(&**source),
            StoreError::Timeout { .. } => None,
            StoreError::Decode { source, .. } => Some(&**source),
        }
    }
}

impl StoreError {
    fn execute(operation: &'static str) -> impl FnOnce(ExecutionError) -> Self {
        move |source| StoreError::Execute { operation, source: Box::new(source) }
    }

    fn decode<E: std::error::Error + Send + Sync + 'static>(operation: &'static str) -> impl FnOnce(E) -> Self {
        move |e| StoreError::Decode { operation, source: Box::new(e) }
    }
}

impl Classify for StoreError {
    fn class(&self) -> ErrorClass {
        match self {
            StoreError::Connect { hint: Some(_), .. } => ErrorClass::Permanent,
            StoreError::Connect { source, .. } => source.class(),
            StoreError::Keyspace { .. } | StoreError::Decode { .. } | StoreError::Settings(_) => ErrorClass::Permanent,
            StoreError::Prepare { source, .. } => source.class(),
            StoreError::Execute { source, .. } => source.class(),
            StoreError::Pager { source, .. } => source.class(),
            StoreError::NextRow { source, .. } => source.class(),
            StoreError::Timeout { .. } => ErrorClass::Transient,
        }
    }
}

// How the driver's errors classify. The rule: the cluster being unreachable, unavailable,
// overloaded, slow or restarting is transient; a statement, value, credential or result that is
// wrong is permanent (the same call gets the same answer). The driver's error enums are
// non-exhaustive: a variant this build does not know is taken as transient, so that it is
// retried within the caller's budget as every store error used to be.

impl Classify for DbError {
    fn class(&self) -> ErrorClass {
        match self {
            DbError::SyntaxError
            | DbError::Invalid
            | DbError::AlreadyExists { .. }
            | DbError::FunctionFailure { .. }
            | DbError::AuthenticationError
            | DbError::Unauthorized
            | DbError::ConfigError
            | DbError::ProtocolError => ErrorClass::Permanent,
            // Server-side failures of a correct request: a replica down, overloaded or slow,
            // a node starting, a server error, a rate limit.
            DbError::Unavailable { .. }
            | DbError::Overloaded
            | DbError::IsBootstrapping
            | DbError::TruncateError
            | DbError::ReadTimeout { .. }
            | DbError::WriteTimeout { .. }
            | DbError::ReadFailure { .. }
            | DbError::WriteFailure { .. }
            | DbError::ServerError
            | DbError::RateLimitReached { .. } => ErrorClass::Transient,
            // The driver re-prepares on its own; the next call prepares again.
            DbError::Unprepared { .. } => ErrorClass::Transient,
            DbError::Other(_) => ErrorClass::Transient,
            _ => ErrorClass::Transient,
        }
    }
}

impl Classify for RequestAttemptError {
    fn class(&self) -> ErrorClass {
        match self {
            RequestAttemptError::DbError(db, _) => db.class(),
            RequestAttemptError::BrokenConnectionError(_) | RequestAttemptError::UnableToAllocStreamId => {
                ErrorClass::Transient
            }
            // Values that do not serialize, responses that do not parse, driver invariants.
            RequestAttemptError::SerializationError(_)
            | RequestAttemptError::CqlRequestSerialization(_)
            | RequestAttemptError::BodyExtensionsParseError(_)
            | RequestAttemptError::CqlResultParseError(_)
            | RequestAttemptError::CqlErrorParseError(_)
            | RequestAttemptError::UnexpectedResponse(_)
            | RequestAttemptError::RepreparedIdChanged { .. }
            | RequestAttemptError::RepreparedIdMissingInBatch
            | RequestAttemptError::NonfinishedPagingState => ErrorClass::Permanent,
            _ => ErrorClass::Transient,
        }
    }
}

impl Classify for RequestError {
    fn class(&self) -> ErrorClass {
        match self {
            RequestError::LastAttemptError(e) => e.class(),
            RequestError::ConnectionPoolError(e) => e.class(),
            RequestError::RequestTimeout(_) => ErrorClass::Transient,
            RequestError::EmptyPlan => ErrorClass::Permanent,
            _ => ErrorClass::Transient,
        }
    }
}

impl Classify for ExecutionError {
    fn class(&self) -> ErrorClass {
        match self {
            ExecutionError::BadQuery(_) => ErrorClass::Permanent,
            // A preferred datacenter that does not exist, or a driver bug: the same call in this
            // process gets the same empty plan.
            ExecutionError::EmptyPlan => ErrorClass::Permanent,
            ExecutionError::PrepareError(e) => e.class(),
            ExecutionError::ConnectionPoolError(e) => e.class(),
            ExecutionError::LastAttemptError(e) => e.class(),
            ExecutionError::RequestTimeout(_) => ErrorClass::Transient,
            ExecutionError::UseKeyspaceError(e) => e.class(),
            ExecutionError::SchemaAgreementError(_) | ExecutionError::MetadataError(_) => ErrorClass::Transient,
            _ => ErrorClass::Transient,
        }
    }
}

impl Classify for PrepareError {
    fn class(&self) -> ErrorClass {
        match self {
            PrepareError::ConnectionPoolError(e) => e.class(),
            // A syntax error, an unknown table or keyspace, a missing permission: the first
            // attempt says which.
            PrepareError::AllAttemptsFailed { first_attempt } => first_attempt.class(),
            // Nodes that disagree on the schema for a moment.
            PrepareError::PreparedStatementIdsMismatch => ErrorClass::Transient,
            _ => ErrorClass::Transient,
        }
    }
}

impl Classify for PagerExecutionError {
    fn class(&self) -> ErrorClass {
        match self {
            PagerExecutionError::PrepareError(e) => e.class(),
            PagerExecutionError::SerializationError(_) => ErrorClass::Permanent,
            PagerExecutionError::NextPageError(e) => e.class(),
            PagerExecutionError::UseKeyspaceError(e) => e.class(),
            PagerExecutionError::SchemaAgreementError(_) | PagerExecutionError::MetadataError(_) => {
                ErrorClass::Transient
            }
            _ => ErrorClass::Transient,
        }
    }
}

impl Classify for NextPageError {
    fn class(&self) -> ErrorClass {
        match self {
            NextPageError::RequestFailure(e) => e.class(),
            NextPageError::PartitionKeyError(_)
            | NextPageError::ResultMetadataParseError(_)
            | NextPageError::TypeCheckError(_) => ErrorClass::Permanent,
            _ => ErrorClass::Transient,
        }
    }
}

impl Classify for NextRowError {
    fn class(&self) -> ErrorClass {
        match self {
            NextRowError::NextPageError(e) => e.class(),
            NextRowError::RowDeserializationError(_) => ErrorClass::Permanent,
            _ => ErrorClass::Transient,
        }
    }
}

impl Classify for UseKeyspaceError {
    fn class(&self) -> ErrorClass {
        match self {
            UseKeyspaceError::BadKeyspaceName(_) | UseKeyspaceError::KeyspaceNameMismatch { .. } => {
                ErrorClass::Permanent
            }
            UseKeyspaceError::RequestError(e) => e.class(),
            UseKeyspaceError::RequestTimeout(_) => ErrorClass::Transient,
            _ => ErrorClass::Transient,
        }
    }
}

impl Classify for ConnectionPoolError {
    fn class(&self) -> ErrorClass {
        match self {
            ConnectionPoolError::Broken { last_connection_error } => last_connection_error.class(),
            ConnectionPoolError::Initializing => ErrorClass::Transient,
            ConnectionPoolError::NodeDisabledByHostFilter => ErrorClass::Permanent,
            _ => ErrorClass::Transient,
        }
    }
}

impl Classify for ConnectionError {
    fn class(&self) -> ErrorClass {
        match self {
            ConnectionError::ConnectionSetupRequestError(e) => match e.get_error() {
                ConnectionSetupRequestErrorKind::DbError(db, _) => db.class(),
                ConnectionSetupRequestErrorKind::UnableToAllocStreamId
                | ConnectionSetupRequestErrorKind::BrokenConnection(_) => ErrorClass::Transient,
                // Credentials missing or refused, a server speaking another protocol.
                _ => ErrorClass::Permanent,
            },
            ConnectionError::UseKeyspaceError(e) => e.class(),
            // Timeouts, refused connections, DNS, broken sockets.
            _ => ErrorClass::Transient,
        }
    }
}

impl Classify for MetadataError {
    fn class(&self) -> ErrorClass {
        match self {
            MetadataError::ConnectionPoolError(e) => e.class(),
            _ => ErrorClass::Transient,
        }
    }
}

impl Classify for NewSessionError {
    fn class(&self) -> ErrorClass {
        match self {
            // Nodes not up yet (or their names not yet in DNS) at start-up.
            NewSessionError::FailedToResolveAnyHostname(_) => ErrorClass::Transient,
            NewSessionError::MetadataError(e) => e.class(),
            NewSessionError::UseKeyspaceError(e) => e.class(),
            NewSessionError::EmptyKnownNodesList | NewSessionError::IllegalConfig(_) => ErrorClass::Permanent,
            _ => ErrorClass::Transient,
        }
    }
}

/// The store writes one process may have in flight, shared by everything it writes (every lane
/// of a worker), so that the load a worker puts on the store is one number sized for the store,
/// not a per-range figure that doubles when a second range starts. Rows wait for a permit in
/// FIFO order.
#[derive(Debug, Clone)]
pub struct WriteWindow {
    permits: Arc<tokio::sync::Semaphore>,
    capacity: usize,
}

impl WriteWindow {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self { permits: Arc::new(tokio::sync::Semaphore::new(capacity)), capacity }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Writes currently in flight through this window.
    pub fn in_use(&self) -> usize {
        self.capacity - self.permits.available_permits()
    }

    /// Waits for a slot; the write holds it until the permit is dropped.
    pub async fn acquire(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.permits.acquire().await.expect("the write window's semaphore is never closed")
    }
}

/// One row of a membership partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MembershipRow {
    pub advertiser_id: String,
    pub list_version: ListVersion,
}

/// One row of a `membership_changes` partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChangeRow {
    pub advertiser_id: String,
    pub since: ListVersion,
    pub present: bool,
}

/// Whether `rows` (of one email hash's partition) make the hash a member of `advertiser`'s list
/// at version `active`: the newest of the advertiser's rows at or below `active` answers; no
/// such row means not a member. Rows above `active` belong to versions not (yet) active.
pub fn member_at<'a>(rows: impl IntoIterator<Item = (&'a str, i64, bool)>, advertiser: &str, active: i64) -> bool {
    rows.into_iter()
        .filter(|(a, since, _)| *a == advertiser && *since <= active)
        .max_by_key(|(_, since, _)| *since)
        .is_some_and(|(_, _, present)| present)
}

/// What a write to `membership_changes` does to the rows of one advertiser and version `v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    /// Writes `(h, a, v, present)`: from `v` on, `h` is (or is not) a member.
    Set { present: bool },
    /// Deletes exactly `(h, a, v)`: undoes what version `v` wrote.
    Undo,
    /// Deletes every row `(h, a, since <= v)` (one range tombstone): retires what answered for
    /// versions up to `v` once a newer version answers.
    RetireThrough,
}

impl ChangeOp {
    fn operation(self) -> &'static str {
        match self {
            ChangeOp::Set { .. } => "write",
            ChangeOp::Undo => "undo",
            ChangeOp::RetireThrough => "retire",
        }
    }
}

/// A connected session with the prepared statements of the membership tables.
#[derive(Clone)]
pub struct MembershipStore {
    session: Arc<Session>,
    keyspace: String,
    change_set: PreparedStatement,
    change_undo: PreparedStatement,
    change_retire: PreparedStatement,
    select_changes: PreparedStatement,
    scan_changes: PreparedStatement,
    insert: PreparedStatement,
    select_partition: PreparedStatement,
    delete_row: PreparedStatement,
    scan_segment: PreparedStatement,
    /// Partition deletes of an erased hash, in each table.
    erase_changes: PreparedStatement,
    erase_legacy: PreparedStatement,
    timeout: Duration,
}

/// Rows per batch the workers default to (BENCHMARKS.md: 64-row batches, 16 in flight, wrote
/// 2.2–2.4× the rows/s of single-row inserts on the local node), before [`batch_rows_for`] caps
/// it below the batch-size warning.
pub const DEFAULT_BATCH_ROWS: usize = 64;

/// Rows per batch for rows of an advertiser id of `advertiser_len` bytes: at most `configured`,
/// kept below the node's batch-size warning threshold (Cassandra: 5 KiB of mutations). Measured
/// on Cassandra 5: a `membership_changes` row costs 77 bytes plus the advertiser id (64 rows of
/// advertiser `acme` made a 5.19 KiB batch); 4.75 KiB leaves a margin.
pub fn batch_rows_for(configured: usize, advertiser_len: usize) -> usize {
    const BUDGET: usize = 4864;
    let row = 16 + advertiser_len + 8 + 1 + 56;
    configured.clamp(1, (BUDGET / row).max(1))
}

/// Which rows may share a batch: rows whose partitions have the same replicas (dsbulk's
/// `batch.mode REPLICA_SET`). With one partition per email hash, grouping by partition key gains
/// nothing; grouping by replica set lets one request carry many rows to a node that owns them
/// all. A snapshot of the driver's cluster metadata: take a fresh one per unit of work.
#[derive(Clone)]
pub struct ReplicaGroups {
    cluster: Arc<scylla::cluster::ClusterState>,
    keyspace: String,
}

impl ReplicaGroups {
    /// A key equal for hashes whose partitions have the same replica set (primary replica and
    /// shard first, so a ScyllaDB shard-aware route stays on one shard). `0` when the driver
    /// cannot tell (no table metadata yet): one group, as on a single node.
    pub fn group_of(&self, h: &EmailHash) -> u64 {
        use std::hash::{Hash, Hasher};
        let Ok(replicas) = self.cluster.get_endpoints(&self.keyspace, "memberships", &(h.as_bytes(),)) else {
            return 0;
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for (node, shard) in &replicas {
            node.host_id.hash(&mut hasher);
            shard.hash(&mut hasher);
        }
        hasher.finish()
    }
}

/// Opens a CQL session to the configured nodes, without a keyspace: credentials, TLS and the
/// local datacenter as [`StoreArgs`](crate::config::StoreArgs) say (see [`crate::connect`]).
pub async fn connect_session(args: &crate::config::StoreArgs) -> Result<Session, StoreError> {
    use scylla::policies::load_balancing::DefaultPolicy;
    let mut builder = SessionBuilder::new()
        .known_nodes(&args.scylla_nodes)
        .connection_timeout(args.scylla_timeout.max(Duration::from_secs(3)));
    if let Some((user, password)) =
        crate::connect::cql_credentials(args).map_err(|e| StoreError::Settings(Box::new(e)))?
    {
        builder = builder.user(user, password);
    }
    if let Some(tls) = crate::connect::cql_tls(args).map_err(|e| StoreError::Settings(Box::new(e)))? {
        builder = builder.tls_context(Some(tls));
    }
    if let Some(dc) = &args.scylla_local_dc {
        // Token-aware within the local datacenter, never failing over to a remote one: a
        // LOCAL_QUORUM request sent to a remote coordinator would be served by that DC.
        let policy = DefaultPolicy::builder().prefer_datacenter(dc.clone()).permit_dc_failover(false).build();
        let profile =
            scylla::client::execution_profile::ExecutionProfile::builder().load_balancing_policy(policy).build();
        builder = builder.default_execution_profile_handle(profile.into_handle());
    }
    builder.build().await.map_err(|source| {
        let hint = crate::connect::cql_hint(&format!("{source} {source:?}"), args).map(String::into_boxed_str);
        StoreError::Connect { nodes: args.scylla_nodes.join(","), hint, source: Box::new(source) }
    })
}

impl MembershipStore {
    /// Connects and prepares the statements of `keyspace.memberships`. `timeout` bounds every
    /// request (the matcher turns a timeout into a 503, never into "not a member").
    pub async fn connect(args: &crate::config::StoreArgs) -> Result<Self, StoreError> {
        Self::from_session(Arc::new(connect_session(args).await?), args).await
    }

    /// The store over an open `session`, as `args` configure it (keyspace, timeout, read
    /// speculation).
    pub async fn from_session(session: Arc<Session>, args: &crate::config::StoreArgs) -> Result<Self, StoreError> {
        Ok(Self::with_session(session, &args.scylla_keyspace, args.scylla_timeout)
            .await?
            .with_read_speculation(args.scylla_read_speculation))
    }

    /// Lookups (the matcher's partition reads) not answered within `after` are also sent to a
    /// second coordinator (driver speculative execution; every read here is idempotent). Writes
    /// never speculate: under a write-heavy load a second copy of each slow batch would double
    /// it. `after` zero: off.
    pub fn with_read_speculation(mut self, after: Duration) -> Self {
        use scylla::policies::speculative_execution::SimpleSpeculativeExecutionPolicy;
        if after.is_zero() {
            return self;
        }
        let policy = SimpleSpeculativeExecutionPolicy { max_retry_count: 1, retry_interval: after };
        // The session's default profile (load balancing with the local datacenter) plus it.
        let profile = self
            .session
            .get_default_execution_profile_handle()
            .pointee_to_builder()
            .speculative_execution_policy(Some(Arc::new(policy)))
            .build()
            .into_handle();
        for statement in [&mut self.select_changes, &mut self.select_partition] {
            statement.set_execution_profile_handle(Some(profile.clone()));
        }
        self
    }

    pub async fn with_session(session: Arc<Session>, keyspace: &str, timeout: Duration) -> Result<Self, StoreError> {
        let ks = crate::schema::quote_identifier(keyspace)
            .map_err(|source| StoreError::Keyspace { source: Box::new(source) })?;
        let prepare = |cql: String| {
            let session = session.clone();
            async move {
                let mut statement = session
                    .prepare(cql.as_str())
                    .await
                    .map_err(|source| StoreError::Prepare { statement: cql, source: Box::new(source) })?;
                statement.set_request_timeout(Some(timeout));
                statement.set_consistency(Consistency::LocalQuorum);
                // Every statement of this store is idempotent (reads, inserts, deletes of
                // given rows): the driver and callers may retry any of them.
                statement.set_is_idempotent(true);
                Ok::<_, StoreError>(statement)
            }
        };
        let insert =
            prepare(format!("INSERT INTO {ks}.memberships (email_hash, advertiser_id, list_version) VALUES (?, ?, ?)"))
                .await?;
        let select_partition =
            prepare(format!("SELECT advertiser_id, list_version FROM {ks}.memberships WHERE email_hash = ?")).await?;
        let delete_row = prepare(format!(
            "DELETE FROM {ks}.memberships WHERE email_hash = ? AND advertiser_id = ? AND list_version = ?"
        ))
        .await?;
        let mut scan_segment = prepare(format!(
            "SELECT email_hash, advertiser_id, list_version FROM {ks}.memberships \
             WHERE token(email_hash) >= ? AND token(email_hash) <= ?"
        ))
        .await?;
        scan_segment.set_page_size(5000);
        let change_set = prepare(format!(
            "INSERT INTO {ks}.membership_changes (email_hash, advertiser_id, since_version, present) VALUES (?, ?, ?, ?)"
        ))
        .await?;
        let change_undo = prepare(format!(
            "DELETE FROM {ks}.membership_changes WHERE email_hash = ? AND advertiser_id = ? AND since_version = ?"
        ))
        .await?;
        let change_retire = prepare(format!(
            "DELETE FROM {ks}.membership_changes WHERE email_hash = ? AND advertiser_id = ? AND since_version <= ?"
        ))
        .await?;
        let select_changes = prepare(format!(
            "SELECT advertiser_id, since_version, present FROM {ks}.membership_changes WHERE email_hash = ?"
        ))
        .await?;
        let mut scan_changes = prepare(format!(
            "SELECT advertiser_id, since_version, present FROM {ks}.membership_changes \
             WHERE token(email_hash) >= ? AND token(email_hash) <= ?"
        ))
        .await?;
        scan_changes.set_page_size(5000);
        let erase_changes = prepare(format!("DELETE FROM {ks}.membership_changes WHERE email_hash = ?")).await?;
        let erase_legacy = prepare(format!("DELETE FROM {ks}.memberships WHERE email_hash = ?")).await?;
        Ok(Self {
            session,
            keyspace: keyspace.to_owned(),
            change_set,
            change_undo,
            change_retire,
            select_changes,
            scan_changes,
            insert,
            select_partition,
            delete_row,
            scan_segment,
            erase_changes,
            erase_legacy,
            timeout,
        })
    }

    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// Applies `op` to the rows `(h, advertiser, version)` of every hash of `hashes` in one
    /// request: a single statement for one hash, an UNLOGGED batch for more, so the node pays
    /// its per-request cost once (most of its CPU per row). Callers group the hashes by
    /// [`ReplicaGroups`] so that the batch, routed by its first row's token, reaches a node
    /// that owns every row, and keep batches below the node's batch-size warning threshold
    /// (Cassandra's default: 5 KiB; see [`batch_rows_for`]). Idempotent: the driver and the
    /// caller may retry it freely.
    pub async fn write_changes(
        &self,
        op: ChangeOp,
        advertiser: &AdvertiserId,
        version: ListVersion,
        hashes: &[EmailHash],
    ) -> Result<(), StoreError> {
        if hashes.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let operation = op.operation();
        let (a, v) = (advertiser.as_str(), version.0);
        match (op, hashes) {
            (ChangeOp::Set { present }, [h]) => {
                self.session.execute_unpaged(&self.change_set, (h.as_bytes(), a, v, present)).await.map(drop)
            }
            (ChangeOp::Undo, [h]) => {
                self.session.execute_unpaged(&self.change_undo, (h.as_bytes(), a, v)).await.map(drop)
            }
            (ChangeOp::RetireThrough, [h]) => {
                self.session.execute_unpaged(&self.change_retire, (h.as_bytes(), a, v)).await.map(drop)
            }
            (ChangeOp::Set { present }, many) => {
                let values: Vec<_> = many.iter().map(|h| (h.as_bytes(), a, v, present)).collect();
                self.session.batch(&self.batch_of(&self.change_set, many.len()), values).await.map(drop)
            }
            (ChangeOp::Undo | ChangeOp::RetireThrough, many) => {
                let statement = if op == ChangeOp::Undo { &self.change_undo } else { &self.change_retire };
                let values: Vec<_> = many.iter().map(|h| (h.as_bytes(), a, v)).collect();
                self.session.batch(&self.batch_of(statement, many.len()), values).await.map(drop)
            }
        }
        .map_err(StoreError::execute(operation))
        .inspect_err(|_| metrics::counter!("memberlake_store_errors_total", "request" => "write").increment(1))?;
        metrics::histogram!("memberlake_store_write_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("memberlake_store_rows_written_total", "op" => operation).increment(hashes.len() as u64);
        if hashes.len() > 1 {
            metrics::counter!("memberlake_store_batches_written_total").increment(1);
        }
        Ok(())
    }

    /// Deletes `h`'s partitions in both tables: every row of every advertiser and version, one
    /// partition tombstone each (an erasure). Idempotent.
    pub async fn erase_partitions(&self, h: &EmailHash) -> Result<(), StoreError> {
        for statement in [&self.erase_changes, &self.erase_legacy] {
            tokio::time::timeout(self.timeout, self.session.execute_unpaged(statement, (h.as_bytes(),)))
                .await
                .map_err(|_| StoreError::Timeout { operation: "erase", timeout: self.timeout })
                .and_then(|r| r.map_err(StoreError::execute("erase")))
                .inspect_err(|_| {
                    metrics::counter!("memberlake_store_errors_total", "request" => "write").increment(1)
                })?;
        }
        Ok(())
    }

    /// An UNLOGGED batch of `rows` executions of `statement`.
    fn batch_of(&self, statement: &PreparedStatement, rows: usize) -> Batch {
        let mut batch = Batch::new(BatchType::Unlogged);
        for _ in 0..rows {
            batch.append_statement(statement.clone());
        }
        batch.set_consistency(Consistency::LocalQuorum);
        batch.set_is_idempotent(true);
        batch.set_request_timeout(Some(self.timeout));
        batch
    }

    /// Applies `op` to `(h, advertiser, version)` for every hash, at most `concurrency`
    /// requests in flight, each of up to `batch_rows` rows that share a replica set (1:
    /// single-row requests). Idempotent. (Workers stream rows through a [`WriteWindow`]
    /// instead; this is for tools, benchmarks and tests.)
    pub async fn apply_changes(
        &self,
        op: ChangeOp,
        advertiser: &AdvertiserId,
        version: ListVersion,
        hashes: &[EmailHash],
        concurrency: usize,
        batch_rows: usize,
    ) -> Result<(), StoreError> {
        let mut by_group: std::collections::HashMap<u64, Vec<EmailHash>> = Default::default();
        let groups = (batch_rows > 1).then(|| self.replica_groups());
        for h in hashes {
            by_group.entry(groups.as_ref().map_or(0, |g| g.group_of(h))).or_default().push(*h);
        }
        // A plain loop rather than `buffer_unordered` over a closure: the future stays `Send`
        // for any lifetime, so callers may spawn it.
        let mut requests = by_group.values().flat_map(|rows| rows.chunks(batch_rows.max(1)));
        let mut in_flight = futures::stream::FuturesUnordered::new();
        loop {
            while in_flight.len() < concurrency.max(1) {
                match requests.next() {
                    Some(rows) => in_flight.push(self.write_changes(op, advertiser, version, rows)),
                    None => break,
                }
            }
            match in_flight.next().await {
                Some(done) => done?,
                None => return Ok(()),
            }
        }
    }

    /// Writes legacy rows `(h, advertiser, version)` into `memberships`, as versions ingested
    /// before change-proportional versions did (upgrade tests and tools).
    pub async fn insert_legacy_members(
        &self,
        advertiser: &AdvertiserId,
        version: ListVersion,
        hashes: &[EmailHash],
        concurrency: usize,
    ) -> Result<(), StoreError> {
        futures::stream::iter(hashes)
            .map(|h| async move {
                self.session
                    .execute_unpaged(&self.insert, (h.as_bytes(), advertiser.as_str(), version.0))
                    .await
                    .map(drop)
                    .map_err(StoreError::execute("legacy insert"))
            })
            .buffer_unordered(concurrency.max(1))
            .try_collect::<()>()
            .await
    }

    /// Deletes rows `(email_hash, advertiser_id, list_version)` in one UNLOGGED batch (rows of
    /// one replica set, see [`write_changes`](Self::write_changes)). Returns the rows deleted.
    async fn delete_batch(&self, rows: &[(Vec<u8>, String, i64)]) -> Result<u64, StoreError> {
        let values: Vec<(&[u8], &str, i64)> = rows.iter().map(|(h, adv, v)| (&h[..], adv.as_str(), *v)).collect();
        let batch = self.batch_of(&self.delete_row, rows.len());
        self.session.batch(&batch, values).await.map_err(StoreError::execute("batch delete"))?;
        Ok(rows.len() as u64)
    }

    /// The replica grouping of the memberships table as the driver sees the cluster now.
    pub fn replica_groups(&self) -> ReplicaGroups {
        ReplicaGroups { cluster: self.session.get_cluster_state(), keyspace: self.keyspace.clone() }
    }

    /// Every row of `h`'s `membership_changes` partition: one read, whatever the number of
    /// advertisers asked about.
    pub async fn read_changes(&self, h: &EmailHash) -> Result<Vec<ChangeRow>, StoreError> {
        let rows = self.read_partition::<(String, i64, Option<bool>)>(&self.select_changes, h).await?;
        Ok(rows
            .into_iter()
            .map(|(advertiser_id, since, present)| ChangeRow {
                advertiser_id,
                since: ListVersion(since),
                present: present.unwrap_or(false),
            })
            .collect())
    }

    /// The rows `statement` selects from `h`'s partition, decoded as `R`: one read, bounded by
    /// the store's timeout (the matcher turns a timeout into a 503, never into "not a member").
    async fn read_partition<R>(&self, statement: &PreparedStatement, h: &EmailHash) -> Result<Vec<R>, StoreError>
    where
        R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
    {
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, self.session.execute_unpaged(statement, (h.as_bytes(),)))
            .await
            .map_err(|_| StoreError::Timeout { operation: "read", timeout: self.timeout })
            .and_then(|r| r.map_err(StoreError::execute("read")))
            .inspect_err(|_| metrics::counter!("memberlake_store_errors_total", "request" => "read").increment(1))?;
        let rows = result.into_rows_result().map_err(StoreError::decode("read"))?;
        let out = rows
            .rows::<R>()
            .map_err(StoreError::decode("read"))?
            .map(|r| r.map_err(StoreError::decode("read")))
            .collect::<Result<Vec<_>, _>>()?;
        metrics::histogram!("memberlake_store_read_seconds").record(started.elapsed().as_secs_f64());
        Ok(out)
    }

    /// Counts the rows of `membership_changes` by `(advertiser, present)` with a token-ring
    /// scan: for tests, tools and `store repair`, never for normal operation.
    pub async fn count_changes(&self) -> Result<std::collections::HashMap<(String, bool), u64>, StoreError> {
        let mut counts = std::collections::HashMap::new();
        let mut rows = self
            .session
            .execute_iter(self.scan_changes.clone(), (i64::MIN, i64::MAX))
            .await
            .map_err(|source| StoreError::Pager { operation: "scan", source: Box::new(source) })?
            .rows_stream::<(String, i64, Option<bool>)>()
            .map_err(StoreError::decode("scan"))?;
        while let Some(row) = rows.next().await {
            let (adv, _, present) =
                row.map_err(|source| StoreError::NextRow { operation: "scan", source: Box::new(source) })?;
            *counts.entry((adv, present.unwrap_or(false))).or_insert(0) += 1;
        }
        Ok(counts)
    }

    /// Every row of `h`'s legacy `memberships` partition.
    pub async fn read_legacy_partition(&self, h: &EmailHash) -> Result<Vec<MembershipRow>, StoreError> {
        let rows = self.read_partition::<(String, i64)>(&self.select_partition, h).await?;
        Ok(rows
            .into_iter()
            .map(|(advertiser_id, v)| MembershipRow { advertiser_id, list_version: ListVersion(v) })
            .collect())
    }

    /// Deletes every legacy `memberships` row whose `(advertiser, version)` satisfies `retire`,
    /// scanning the token ring in `segments` slices, `concurrency` at a time. Returns (rows
    /// scanned, rows deleted).
    ///
    /// This is how replaced, failed and cancelled *legacy* versions (ingested before
    /// change-proportional versions) leave the store; change-format versions are undone and
    /// retired from their recorded diffs instead, without a scan. Each delete writes one row tombstone inside a
    /// small partition (one per email hash), so reads stay cheap until compaction drops them.
    pub async fn retire_rows<F>(&self, retire: F, segments: u32, concurrency: usize) -> Result<(u64, u64), StoreError>
    where
        F: Fn(&str, ListVersion) -> bool + Sync,
    {
        let segments = segments.max(1) as i128;
        let (min, max) = (i64::MIN as i128, i64::MAX as i128);
        let width = (max - min + 1) / segments;
        let bounds: Vec<(i64, i64)> = (0..segments)
            .map(|i| {
                let lo = min + i * width;
                let hi = if i == segments - 1 { max } else { lo + width - 1 };
                (lo as i64, hi as i64)
            })
            .collect();
        let retire = &retire;
        let totals = futures::stream::iter(bounds)
            .map(|(lo, hi)| async move {
                let mut scanned = 0u64;
                let mut deleted = 0u64;
                let mut rows = self
                    .session
                    .execute_iter(self.scan_segment.clone(), (lo, hi))
                    .await
                    .map_err(|source| StoreError::Pager { operation: "scan", source: Box::new(source) })?
                    .rows_stream::<(Vec<u8>, String, i64)>()
                    .map_err(StoreError::decode("scan"))?;
                // Deletes go in replica-grouped batches, as inserts do.
                let groups = self.replica_groups();
                let per_batch = batch_rows_for(DEFAULT_BATCH_ROWS, AdvertiserId::MAX_LEN);
                let mut pending: std::collections::HashMap<u64, Vec<(Vec<u8>, String, i64)>> = Default::default();
                while let Some(row) = rows.next().await {
                    let (h, adv, v) =
                        row.map_err(|source| StoreError::NextRow { operation: "scan", source: Box::new(source) })?;
                    scanned += 1;
                    if retire(&adv, ListVersion(v)) {
                        let group = EmailHash::from_slice(&h).map_or(0, |h| groups.group_of(&h));
                        let batch = pending.entry(group).or_default();
                        batch.push((h, adv, v));
                        if batch.len() >= per_batch {
                            deleted += self.delete_batch(&std::mem::take(batch)).await?;
                        }
                    }
                }
                for batch in pending.into_values().filter(|b| !b.is_empty()) {
                    deleted += self.delete_batch(&batch).await?;
                }
                Ok::<_, StoreError>((scanned, deleted))
            })
            .buffer_unordered(concurrency.max(1))
            .try_fold((0u64, 0u64), |acc, x| async move { Ok((acc.0 + x.0, acc.1 + x.1)) })
            .await?;
        metrics::counter!("memberlake_store_rows_retired_total").increment(totals.1);
        Ok(totals)
    }

    /// Cheap reachability check for /readyz.
    pub async fn ping(&self) -> Result<(), StoreError> {
        tokio::time::timeout(self.timeout, self.session.query_unpaged("SELECT release_version FROM system.local", ()))
            .await
            .map_err(|_| StoreError::Timeout { operation: "ping", timeout: self.timeout })?
            .map(|_| ())
            .map_err(StoreError::execute("ping"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scylla::errors::{BadKeyspaceName, BadQuery, DeserializationError, SerializationError, WriteType};

    fn db(error: DbError) -> ExecutionError {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(error, "from the server".to_owned()))
    }

    fn insert_failed(source: ExecutionError) -> StoreError {
        StoreError::Execute { operation: "insert", source: Box::new(source) }
    }

    fn io(kind: std::io::ErrorKind) -> ConnectionError {
        ConnectionError::IoError(Arc::new(std::io::Error::from(kind)))
    }

    #[test]
    fn an_unavailable_overloaded_or_slow_cluster_is_transient() {
        let transient = [
            db(DbError::Unavailable { consistency: Consistency::LocalQuorum, required: 2, alive: 1 }),
            db(DbError::Overloaded),
            db(DbError::IsBootstrapping),
            db(DbError::TruncateError),
            db(DbError::ReadTimeout {
                consistency: Consistency::LocalQuorum,
                received: 1,
                required: 2,
                data_present: false,
            }),
            db(DbError::WriteTimeout {
                consistency: Consistency::LocalQuorum,
                received: 1,
                required: 2,
                write_type: WriteType::Simple,
            }),
            db(DbError::ServerError),
            ExecutionError::RequestTimeout(Duration::from_secs(2)),
            ExecutionError::ConnectionPoolError(ConnectionPoolError::Initializing),
            ExecutionError::ConnectionPoolError(ConnectionPoolError::Broken {
                last_connection_error: ConnectionError::ConnectTimeout,
            }),
            ExecutionError::ConnectionPoolError(ConnectionPoolError::Broken {
                last_connection_error: io(std::io::ErrorKind::ConnectionRefused),
            }),
            ExecutionError::LastAttemptError(RequestAttemptError::UnableToAllocStreamId),
        ];
        for source in transient {
            let e = insert_failed(source);
            assert_eq!(e.class(), ErrorClass::Transient, "{e}");
            assert!(e.is_transient() && !e.is_permanent(), "{e}");
        }
        for e in [
            StoreError::Timeout { operation: "read", timeout: Duration::from_millis(300) },
            StoreError::Connect {
                hint: None,
                nodes: "scylla:9042".into(),
                source: Box::new(NewSessionError::FailedToResolveAnyHostname(vec![])),
            },
            StoreError::Prepare {
                statement: "SELECT 1".into(),
                source: Box::new(PrepareError::ConnectionPoolError(ConnectionPoolError::Initializing)),
            },
        ] {
            assert!(e.is_transient(), "{e}");
        }
    }

    #[test]
    fn a_wrong_statement_value_credential_or_result_is_permanent() {
        let permanent = [
            db(DbError::SyntaxError),
            db(DbError::Invalid),
            db(DbError::Unauthorized),
            db(DbError::AuthenticationError),
            db(DbError::ConfigError),
            ExecutionError::BadQuery(BadQuery::PartitionKeyExtraction),
            ExecutionError::BadQuery(BadQuery::SerializationError(SerializationError::new(std::fmt::Error))),
            ExecutionError::LastAttemptError(RequestAttemptError::SerializationError(SerializationError::new(
                std::fmt::Error,
            ))),
            ExecutionError::UseKeyspaceError(UseKeyspaceError::BadKeyspaceName(BadKeyspaceName::Empty)),
            ExecutionError::PrepareError(PrepareError::AllAttemptsFailed {
                first_attempt: RequestAttemptError::DbError(
                    DbError::SyntaxError,
                    "line 1:0 no viable alternative".into(),
                ),
            }),
        ];
        for source in permanent {
            let e = insert_failed(source);
            assert_eq!(e.class(), ErrorClass::Permanent, "{e}");
            assert!(e.is_permanent() && !e.is_transient(), "{e}");
        }
        for e in [
            StoreError::Decode { operation: "read", source: Box::new(DeserializationError::new(std::fmt::Error)) },
            StoreError::NextRow {
                operation: "scan",
                source: Box::new(NextRowError::RowDeserializationError(DeserializationError::new(std::fmt::Error))),
            },
            StoreError::Keyspace { source: Box::new(crate::schema::quote_identifier("no-dashes").unwrap_err()) },
            StoreError::Connect {
                nodes: String::new(),
                hint: None,
                source: Box::new(NewSessionError::EmptyKnownNodesList),
            },
            StoreError::Prepare {
                statement: "SELEC".into(),
                source: Box::new(PrepareError::AllAttemptsFailed {
                    first_attempt: RequestAttemptError::DbError(DbError::SyntaxError, String::new()),
                }),
            },
        ] {
            assert!(e.is_permanent(), "{e}");
        }
    }

    #[test]
    fn a_store_error_stays_small() {
        // Every row a worker writes returns a `Result<(), StoreError>`: the driver's errors
        // (hundreds of bytes) are boxed.
        assert!(size_of::<StoreError>() <= 48, "{}", size_of::<StoreError>());
    }

    #[test]
    fn a_store_error_names_the_operation_and_keeps_the_driver_error_as_its_source() {
        let e = insert_failed(db(DbError::Overloaded));
        let text = e.to_string();
        assert!(text.starts_with("CQL insert failed: "), "{text}");
        assert!(text.contains("overloaded"), "{text}");
        let source = std::error::Error::source(&e).expect("the driver's error is the source");
        assert!(source.downcast_ref::<ExecutionError>().is_some(), "{source:?}");
    }

    #[tokio::test]
    async fn the_write_window_bounds_writes_in_flight_across_clones() {
        let window = WriteWindow::new(2);
        let lane_b = window.clone(); // another lane of the same worker
        let a1 = window.acquire().await;
        let _b1 = lane_b.acquire().await;
        assert_eq!(window.in_use(), 2);
        let third = tokio::time::timeout(Duration::from_millis(50), lane_b.acquire()).await;
        assert!(third.is_err(), "a third write must wait while two are in flight");
        drop(a1);
        let _b2 = tokio::time::timeout(Duration::from_secs(1), lane_b.acquire()).await.expect("a slot was freed");
        assert_eq!(lane_b.in_use(), 2);
        assert_eq!(WriteWindow::new(0).capacity(), 1, "a zero window would stall every write");
    }
}
