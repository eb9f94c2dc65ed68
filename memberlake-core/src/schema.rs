//! Versioned schemas: Postgres migrations (sqlx, `migrations/postgres/`) and CQL migrations
//! (`migrations/cql/`, tracked in `<keyspace>.schema_migrations`). `memberlake migrate` applies
//! both idempotently; every service calls [`check_postgres`] / [`check_cql`] at start and refuses
//! to run against an unmigrated schema or one newer than itself.

use crate::ids::HashScheme;
use scylla::client::session::Session;
use sqlx::migrate::Migrator;
use sqlx::PgPool;

/// The Postgres migrations, embedded at compile time.
pub static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("../migrations/postgres");

/// One CQL migration: statements separated by `;` at the end of a line.
#[derive(Debug, Clone, Copy)]
pub struct CqlMigration {
    pub version: i64,
    pub description: &'static str,
    pub cql: &'static str,
}

/// The CQL migrations, in order.
pub const CQL_MIGRATIONS: &[CqlMigration] = &[
    CqlMigration {
        version: 1,
        description: "memberships",
        cql: include_str!("../../migrations/cql/0001_memberships.cql"),
    },
    CqlMigration {
        version: 2,
        description: "membership_changes",
        cql: include_str!("../../migrations/cql/0002_membership_changes.cql"),
    },
    CqlMigration {
        version: 3,
        description: "deployment",
        cql: include_str!("../../migrations/cql/0003_deployment.cql"),
    },
];

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("the {store} schema is not migrated (applied: {applied:?}, this build expects {expected}); run `memberlake migrate`")]
    NotMigrated { store: &'static str, applied: Option<i64>, expected: i64 },
    #[error("the {store} schema is newer than this build (applied version {applied}, this build knows up to {expected}); upgrade this service")]
    Newer { store: &'static str, applied: i64, expected: i64 },
    #[error("postgres migration failed: {0}")]
    PostgresMigrate(#[from] sqlx::migrate::MigrateError),
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("CQL schema: {0}")]
    Cql(String),
    #[error("invalid keyspace name {0:?}: use letters, digits and underscores")]
    InvalidKeyspace(String),
    #[error(
        "the store holds {store} email hashes, and this process hashes with {deployment}: set MEMBERLAKE_HASH={store} \
         (a deployment keeps one scheme; a new scheme needs a new keyspace)"
    )]
    HashScheme { store: HashScheme, deployment: HashScheme },
}

/// Applies pending Postgres migrations (idempotent).
pub async fn migrate_postgres(pool: &PgPool) -> Result<(), SchemaError> {
    POSTGRES_MIGRATOR.run(pool).await?;
    Ok(())
}

/// Fails unless Postgres is migrated to exactly what this build knows.
pub async fn check_postgres(pool: &PgPool) -> Result<(), SchemaError> {
    let expected = POSTGRES_MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(pool).await?;
    let applied: Option<i64> = if exists {
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success").fetch_one(pool).await?
    } else {
        None
    };
    compare("postgres", applied, expected)
}

fn compare(store: &'static str, applied: Option<i64>, expected: i64) -> Result<(), SchemaError> {
    match applied {
        Some(v) if v == expected => Ok(()),
        Some(v) if v > expected => Err(SchemaError::Newer { store, applied: v, expected }),
        _ => Err(SchemaError::NotMigrated { store, applied, expected }),
    }
}

/// Quotes a keyspace name for CQL text, after checking it is a plain identifier (so that the
/// quoting can never be escaped).
pub fn quote_identifier(name: &str) -> Result<String, SchemaError> {
    validate_keyspace(name)?;
    Ok(format!("\"{name}\""))
}

fn validate_keyspace(keyspace: &str) -> Result<(), SchemaError> {
    let ok = !keyspace.is_empty()
        && keyspace.len() <= 48
        && keyspace.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(SchemaError::InvalidKeyspace(keyspace.to_owned()))
    }
}

/// Creates the keyspace (with `replication`, a CQL map such as
/// `{'class': 'NetworkTopologyStrategy', 'replication_factor': 3}`), applies pending CQL
/// migrations (idempotent) and records the deployment's hash `scheme` in a store that has none
/// (refusing a store recorded with the other one).
pub async fn migrate_cql(
    session: &Session,
    keyspace: &str,
    replication: &str,
    scheme: HashScheme,
) -> Result<Vec<i64>, SchemaError> {
    let ks = quote_identifier(keyspace)?;
    let run = |cql: String| async move {
        session.query_unpaged(cql.clone(), ()).await.map_err(|e| SchemaError::Cql(format!("{e} (in: {})", cql.trim())))
    };
    run(format!("CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {replication}")).await?;
    run(format!(
        "CREATE TABLE IF NOT EXISTS {ks}.schema_migrations (version bigint PRIMARY KEY, description text, applied_at timestamp)"
    ))
    .await?;
    let applied = applied_cql_versions(session, keyspace).await?.unwrap_or_default();
    session.use_keyspace(keyspace, true).await.map_err(|e| SchemaError::Cql(e.to_string()))?;
    let mut newly = Vec::new();
    for m in CQL_MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        for statement in split_cql(m.cql) {
            run(statement).await?;
        }
        session
            .query_unpaged(
                format!("INSERT INTO {ks}.schema_migrations (version, description, applied_at) VALUES (?, ?, toTimestamp(now()))"),
                (m.version, m.description),
            )
            .await
            .map_err(|e| SchemaError::Cql(e.to_string()))?;
        tracing::info!(version = m.version, description = m.description, "applied CQL migration");
        newly.push(m.version);
    }
    match recorded_hash_scheme(session, keyspace).await? {
        Some(store) if store != scheme => return Err(SchemaError::HashScheme { store, deployment: scheme }),
        Some(_) => {}
        // A store written before schemes existed holds MD5 hashes: it may only be recorded so.
        None if scheme != HashScheme::Md5 && store_has_rows(session, keyspace).await? => {
            return Err(SchemaError::HashScheme { store: HashScheme::Md5, deployment: scheme });
        }
        None => {
            session
                .query_unpaged(
                    format!("INSERT INTO {ks}.deployment (name, value) VALUES ('hash_scheme', ?)"),
                    (scheme.as_str(),),
                )
                .await
                .map_err(|e| SchemaError::Cql(e.to_string()))?;
            tracing::info!(%scheme, "recorded the deployment's hash scheme in the store");
        }
    }
    Ok(newly)
}

/// The hash scheme the store was recorded with (`None`: written before schemes existed, MD5).
async fn recorded_hash_scheme(session: &Session, keyspace: &str) -> Result<Option<HashScheme>, SchemaError> {
    let ks = quote_identifier(keyspace)?;
    let rows = session
        .query_unpaged(format!("SELECT value FROM {ks}.deployment WHERE name = 'hash_scheme'"), ())
        .await
        .map_err(|e| SchemaError::Cql(e.to_string()))?
        .into_rows_result()
        .map_err(|e| SchemaError::Cql(e.to_string()))?;
    let value = rows.maybe_first_row::<(Option<String>,)>().map_err(|e| SchemaError::Cql(e.to_string()))?;
    match value.and_then(|(v,)| v) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| SchemaError::Cql(format!("unknown hash scheme {v:?} in the store"))),
    }
}

/// Whether the store holds any membership row (one row read).
async fn store_has_rows(session: &Session, keyspace: &str) -> Result<bool, SchemaError> {
    let ks = quote_identifier(keyspace)?;
    for table in ["membership_changes", "memberships"] {
        let rows = session
            .query_unpaged(format!("SELECT email_hash FROM {ks}.{table} LIMIT 1"), ())
            .await
            .map_err(|e| SchemaError::Cql(e.to_string()))?
            .into_rows_result()
            .map_err(|e| SchemaError::Cql(e.to_string()))?;
        if rows.rows_num() > 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Fails unless the store was recorded with `scheme` (a store without a record holds MD5).
pub async fn check_hash_scheme(session: &Session, keyspace: &str, scheme: HashScheme) -> Result<(), SchemaError> {
    let store = recorded_hash_scheme(session, keyspace).await?.unwrap_or_default();
    if store != scheme {
        return Err(SchemaError::HashScheme { store, deployment: scheme });
    }
    Ok(())
}

async fn applied_cql_versions(session: &Session, keyspace: &str) -> Result<Option<Vec<i64>>, SchemaError> {
    let ks = quote_identifier(keyspace)?;
    let result = match session.query_unpaged(format!("SELECT version FROM {ks}.schema_migrations"), ()).await {
        Ok(r) => r,
        Err(e) => {
            let msg = e.to_string();
            // The keyspace or table does not exist yet.
            if msg.contains("unconfigured table") || msg.contains("does not exist") || msg.contains("Keyspace") {
                return Ok(None);
            }
            return Err(SchemaError::Cql(msg));
        }
    };
    let rows = result.into_rows_result().map_err(|e| SchemaError::Cql(e.to_string()))?;
    let versions = rows
        .rows::<(i64,)>()
        .map_err(|e| SchemaError::Cql(e.to_string()))?
        .map(|r| r.map(|(v,)| v))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SchemaError::Cql(e.to_string()))?;
    Ok(Some(versions))
}

/// Fails unless the CQL keyspace is migrated to exactly what this build knows.
pub async fn check_cql(session: &Session, keyspace: &str) -> Result<(), SchemaError> {
    let expected = CQL_MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0);
    let applied = applied_cql_versions(session, keyspace).await?.and_then(|v| v.into_iter().max());
    compare("CQL", applied, expected)
}

/// Splits a CQL script into statements: `;` at a line end separates them; `--` comments dropped.
pub fn split_cql(script: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    for line in script.lines() {
        let line = line.split("--").next().unwrap_or("").trim_end();
        if line.trim().is_empty() {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if line.ends_with(';') {
            statements.push(current.trim().trim_end_matches(';').to_owned());
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        statements.push(current.trim().to_owned());
    }
    statements
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cql_scripts_split_into_statements() {
        let statements = split_cql(CQL_MIGRATIONS[0].cql);
        assert_eq!(statements.len(), 1);
        assert!(statements[0].starts_with("CREATE TABLE IF NOT EXISTS memberships"));
        assert_eq!(split_cql("A;\n-- c\nB\n;\nC").len(), 3);
    }

    #[test]
    fn versions_compare() {
        assert!(compare("x", Some(3), 3).is_ok());
        assert!(matches!(compare("x", Some(4), 3), Err(SchemaError::Newer { .. })));
        assert!(matches!(compare("x", Some(2), 3), Err(SchemaError::NotMigrated { .. })));
        assert!(matches!(compare("x", None, 3), Err(SchemaError::NotMigrated { .. })));
    }

    #[test]
    fn keyspace_names() {
        assert!(validate_keyspace("memberlake_test_1").is_ok());
        assert!(validate_keyspace("x\"; DROP").is_err());
    }
}
