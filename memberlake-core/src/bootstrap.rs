//! Start-up steps every service shares: connect to a dependency and refuse to run against a
//! schema that is not exactly the one this build knows.

use std::sync::Arc;

use crate::catalog::{Catalog, CatalogError};
use crate::config::{DatabaseArgs, StoreArgs};
use crate::http::ReadinessCheck;
use crate::lake::Lake;
use crate::schema::{self, SchemaError};
use crate::store::{MembershipStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// Connects the control plane and checks its schema version.
pub async fn open_catalog(args: &DatabaseArgs) -> Result<Catalog, BootstrapError> {
    let catalog = Catalog::open(args).await?;
    schema::check_postgres(catalog.pool()).await?;
    Ok(catalog)
}

/// Connects the membership store and checks its schema version.
pub async fn open_store(args: &StoreArgs) -> Result<MembershipStore, BootstrapError> {
    args.hash.install()?;
    let session = Arc::new(crate::store::connect_session(args).await?);
    schema::check_cql(&session, &args.scylla_keyspace).await?;
    schema::check_hash_scheme(&session, &args.scylla_keyspace, args.hash.hash).await?;
    Ok(MembershipStore::from_session(session, args).await?)
}

/// `/readyz` check: Postgres answers.
pub fn postgres_ready(catalog: &Catalog) -> ReadinessCheck {
    let catalog = catalog.clone();
    ReadinessCheck::new("postgres", move || {
        let catalog = catalog.clone();
        async move { catalog.ping().await.map_err(|e| e.to_string()) }
    })
}

/// `/readyz` check: the CQL store answers.
pub fn cql_ready(store: &Arc<MembershipStore>) -> ReadinessCheck {
    let store = store.clone();
    ReadinessCheck::new("cql", move || {
        let store = store.clone();
        async move { store.ping().await.map_err(|e| e.to_string()) }
    })
}

/// `/readyz` check: the lake can be listed.
pub fn lake_ready(lake: &Lake) -> ReadinessCheck {
    let lake = lake.clone();
    ReadinessCheck::new("lake", move || {
        let lake = lake.clone();
        async move { lake.ping().await.map_err(|e| e.to_string()) }
    })
}
