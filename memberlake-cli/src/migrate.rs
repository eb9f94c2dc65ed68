//! `memberlake migrate`: Postgres (sqlx migrations) then CQL (keyspace + versioned scripts).

use anyhow::Context;
use clap::Args;
use memberlake::catalog::Catalog;
use memberlake::config::{DatabaseArgs, StoreArgs};
use memberlake::{schema, store};

#[derive(Args, Debug)]
pub struct MigrateArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    store: StoreArgs,
    /// CQL replication map used when the keyspace is created.
    #[arg(
        long,
        env = "MEMBERLAKE_SCYLLA_REPLICATION",
        default_value = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )]
    replication: String,
    /// Only migrate Postgres.
    #[arg(long)]
    postgres_only: bool,
}

pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let database = DatabaseArgs { database_max_connections: 2, ..args.database.clone() };
    let catalog = Catalog::open(&database).await.context("connecting to Postgres")?;
    schema::migrate_postgres(catalog.pool()).await.context("migrating Postgres")?;
    schema::check_postgres(catalog.pool()).await?;
    println!("postgres: schema up to date");
    if args.postgres_only {
        return Ok(());
    }
    let session = store::connect_session(&args.store).await.context("connecting to the CQL store")?;
    let applied = schema::migrate_cql(&session, &args.store.scylla_keyspace, &args.replication, args.store.hash.hash)
        .await
        .context("migrating the CQL keyspace")?;
    schema::check_cql(&session, &args.store.scylla_keyspace).await?;
    println!("cql: keyspace {} up to date (applied now: {applied:?})", args.store.scylla_keyspace);
    Ok(())
}

/// A failed migration's exit code: unavailable (3) when Postgres or the CQL nodes could not be
/// reached — trying again later may work — else a failure (1), with the error chain (which says
/// which setting to fix when a server refused the connection).
pub fn failed(error: anyhow::Error) -> crate::outcome::Failed {
    use crate::outcome::{Exit, Failed};
    use memberlake::error::Classify;
    let transient = error.chain().any(|e| {
        e.downcast_ref::<memberlake::catalog::CatalogError>().is_some_and(|c| c.is_transient())
            || e.downcast_ref::<store::StoreError>().is_some_and(|s| s.is_transient())
    });
    Failed::new(if transient { Exit::Unavailable } else { Exit::Failure }, error)
}
