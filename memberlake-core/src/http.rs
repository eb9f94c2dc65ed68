//! The operational endpoints every service serves: `/healthz` (process up), `/readyz`
//! (dependencies reachable) and `/metrics` (Prometheus text format).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::shutdown::Shutdown;

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// A named dependency check for `/readyz`.
#[derive(Clone)]
pub struct ReadinessCheck {
    pub name: &'static str,
    check: Arc<dyn Fn() -> CheckFuture + Send + Sync>,
}

impl ReadinessCheck {
    pub fn new<F, Fut>(name: &'static str, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self { name, check: Arc::new(move || Box::pin(f())) }
    }
}

/// `/healthz`, `/readyz` and `/metrics`, to merge into a service's router or serve alone.
pub fn ops_router(checks: Vec<ReadinessCheck>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(checks))
}

async fn readyz(State(checks): State<Arc<Vec<ReadinessCheck>>>) -> Response {
    let results = futures::future::join_all(checks.iter().map(|c| {
        let fut = (c.check)();
        async move {
            let outcome = tokio::time::timeout(std::time::Duration::from_secs(2), fut)
                .await
                .unwrap_or_else(|_| Err("timed out after 2s".into()));
            (c.name, outcome)
        }
    }))
    .await;
    let ready = results.iter().all(|(_, r)| r.is_ok());
    let body: serde_json::Map<String, serde_json::Value> = results
        .into_iter()
        .map(|(name, r)| (name.to_string(), r.map_or_else(|e| json!({"ok": false, "error": e}), |_| json!({"ok": true}))))
        .collect();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({"ready": ready, "checks": body}))).into_response()
}

async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::render_metrics(),
    )
        .into_response()
}

/// Binds `addr` and serves `router` until `shutdown`; returns the bound address at once.
pub async fn spawn_server(
    addr: SocketAddr,
    router: Router,
    shutdown: Shutdown,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(%local, "http listening");
    let handle = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await
    });
    Ok((local, handle))
}
