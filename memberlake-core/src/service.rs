//! The life of a service process, shared by every binary (as mini-redis's `server::run`): each
//! service is a library with a `Config` and `pub async fn run(deps, config, shutdown)`; its
//! `main.rs` only calls [`start`], opens the dependencies (`bootstrap`) and calls `run`.

use std::net::SocketAddr;

use axum::Router;

use crate::bootstrap::BootstrapError;
use crate::config::{ConfigError, LogArgs};
use crate::lake::LakeError;
use crate::shutdown::Shutdown;

/// Why a service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    Work(#[from] crate::work::WorkError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP server on {addr} failed: {source}")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tokens(#[from] crate::http::TokenFileError),
}

/// A service's first steps: parse its configuration (environment, flags override), set up
/// logs and metrics, log the effective configuration (secrets masked), and arm graceful
/// shutdown on SIGTERM/SIGINT. Exits with clap's message on bad input. Call inside the runtime.
pub fn start<C: clap::Parser>(service: &'static str, log: impl Fn(&C) -> &LogArgs) -> (C, Shutdown) {
    let config = crate::config::start(service, log);
    (config, Shutdown::on_signals())
}

/// An HTTP server running until shutdown.
pub struct Server {
    addr: SocketAddr,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Binds `addr` and serves `router` until `shutdown`.
    pub async fn bind(addr: SocketAddr, router: Router, shutdown: Shutdown) -> Result<Self, ServiceError> {
        let (addr, handle) = crate::http::spawn_server(addr, router, shutdown)
            .await
            .map_err(|source| ServiceError::Bind { addr, source })?;
        Ok(Self { addr, handle })
    }

    /// The bound address (a `:0` port resolved).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits for the server to drain after shutdown.
    pub async fn stopped(self) -> Result<(), ServiceError> {
        let addr = self.addr;
        match self.handle.await {
            Ok(result) => result.map_err(|source| ServiceError::Serve { addr, source }),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(ServiceError::Serve { addr, source: std::io::Error::other(e) }),
        }
    }
}
