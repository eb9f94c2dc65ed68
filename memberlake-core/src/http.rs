//! HTTP shared by every service:
//! - the operations port ([`ops_router`]): `/healthz` (process up), `/readyz` (dependencies
//!   reachable) and `/metrics` (Prometheus text format), on its own address
//!   (`MEMBERLAKE_METRICS_ADDR`) so that the public API port serves the API only;
//! - [`ApiError`], the one JSON error body of every API, whichever layer refuses a request;
//! - [`Tokens`] and [`Caller`]: who is calling;
//! - [`surface`]: the protection every public API surface gets (request ids, timeout,
//!   concurrency limit with load shedding, per-caller rate limit, token check);
//! - [`fleet`]: the replicas of a surface, which share each caller's rate limit.

pub mod fleet;
pub mod surface;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use subtle::ConstantTimeEq;

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

/// The operations port: `/healthz`, `/readyz` and `/metrics`, served on its own address. Not
/// behind the API's token, limits or timeout: the orchestrator's probes and the metrics scraper
/// must reach a busy replica too.
pub fn ops_router(checks: Vec<ReadinessCheck>) -> Router {
    Router::new()
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(checks))
        .merge(health_router())
}

/// `/healthz` alone (liveness: the process answers), also served on an API port for load
/// balancers that probe the port they send traffic to.
pub fn health_router() -> Router {
    Router::new().route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
}

async fn readyz(State(checks): State<Arc<Vec<ReadinessCheck>>>) -> Response {
    let results = futures::future::join_all(checks.iter().map(|c| {
        let fut = (c.check)();
        async move {
            let outcome = tokio::time::timeout(Duration::from_secs(2), fut)
                .await
                .unwrap_or_else(|_| Err("timed out after 2s".into()));
            (c.name, outcome)
        }
    }))
    .await;
    let ready = results.iter().all(|(_, r)| r.is_ok());
    let body: serde_json::Map<String, serde_json::Value> = results
        .into_iter()
        .map(|(name, r)| {
            (name.to_string(), r.map_or_else(|e| json!({"ok": false, "error": e}), |_| json!({"ok": true})))
        })
        .collect();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({"ready": ready, "checks": body}))).into_response()
}

async fn metrics() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::telemetry::render_metrics()).into_response()
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
        axum::serve(listener, router).with_graceful_shutdown(async move { shutdown.wait().await }).await
    });
    Ok((local, handle))
}

/// A token file that cannot be read; names the setting to fix.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {variable}_FILE ({path}): {source}")]
pub struct TokenFileError {
    pub variable: &'static str,
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

/// An API error: status, machine-readable code and a message safe to show the caller.
/// Rendered as `{"error": {"code": "...", "message": "..."}}` by every API and by every layer in
/// front of one ([`surface`]), so a client parses one shape whoever refused it. 503 and 429 add
/// `Retry-After`, 401 adds `WWW-Authenticate`.
///
/// Codes: `bad_request`, `unauthorized`, `not_found`, `method_not_allowed`, `conflict`,
/// `payload_too_large`, `rate_limited` (429), `overloaded`, `timeout`, `unavailable` (503s) and
/// `internal`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// When to ask again (`Retry-After`, whole seconds rounded up); a 503 or 429 without it says
    /// one second.
    retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "missing or invalid bearer token")
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route")
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
    /// The caller spent its request budget; it may ask again after `wait`.
    pub fn rate_limited(wait: Duration) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many requests from this caller; slow down")
            .retry_after(wait)
    }
    /// As many requests as the replica handles at once are in flight: refused at once rather
    /// than queued (another replica, or this one in a moment, can answer).
    pub fn overloaded() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "too many requests in flight; retry")
    }
    /// The request took longer than `limit` and was abandoned. A 503, like every "cannot answer
    /// now" of these APIs (the store unavailable, overload), not a 504: the client's action is
    /// the same (retry, `Retry-After`), and a 504 would read as a gateway in front of the
    /// service giving up, which an operator must be able to tell apart.
    pub fn timed_out(limit: Duration) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "timeout", format!("request not answered within {limit:?}; retry"))
    }
    /// Sets `Retry-After` (rounded up to whole seconds, at least one).
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }
    /// Maps a body or query extractor's rejection, keeping its status (e.g. 413).
    pub fn from_rejection(status: StatusCode, text: String) -> Self {
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => Self::new(status, "payload_too_large", "request body too large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::new(StatusCode::BAD_REQUEST, "bad_request", text),
            _ => Self::bad_request(text),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        match self.status {
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                let wait = self.retry_after.unwrap_or(Duration::from_secs(1));
                let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
            }
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            // The rest of an oversized body is never read, so the connection cannot carry another
            // request: say so, or a client's pool reuses it and its next request fails
            // (`IncompleteMessage`) when the server drops it.
            StatusCode::PAYLOAD_TOO_LARGE => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

/// Who is calling: the name of the token presented (`name:secret` items name it; unnamed ones
/// are `token#N`), `anonymous` on a surface without tokens. Never the token itself, so it can be
/// logged, audited and used as a rate-limit key. Set by the surface's token check
/// ([`surface::ApiSurface`]); as an extractor it answers 401 on a request without one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Caller(Arc<str>);

impl Caller {
    /// Everyone, on a surface without tokens.
    pub fn anonymous() -> Self {
        Self(Arc::from("anonymous"))
    }
    pub fn name(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(ApiError::unauthorized)
    }
}

/// Bearer tokens, optionally named (`name:secret`) so that audit records and rate limits say
/// who called. Compared in constant time; never logged.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Arc<Vec<(Caller, Vec<u8>)>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} configured)", self.entries.len())
    }
}

impl Tokens {
    /// From `MEMBERLAKE_*_TOKENS` items: `secret` or `name:secret`; empty items ignored.
    pub fn parse(items: &[String]) -> Self {
        let entries = items
            .iter()
            .filter(|t| !t.trim().is_empty())
            .enumerate()
            .map(|(i, t)| match t.trim().split_once(':') {
                Some((name, secret)) if !name.is_empty() && !secret.is_empty() => {
                    (Caller(Arc::from(name)), secret.as_bytes().to_vec())
                }
                _ => (Caller(Arc::from(format!("token#{}", i + 1))), t.trim().as_bytes().to_vec()),
            })
            .collect();
        Self { entries: Arc::new(entries) }
    }

    /// Tokens from the `*_TOKENS` variable's items plus, if given, a file (one token per line or
    /// comma-separated; `#` comments), so that secrets can come from a mounted secret file
    /// rather than the environment.
    pub fn load(items: &[String], file: Option<&std::path::Path>) -> std::io::Result<Self> {
        let mut all: Vec<String> = items.to_vec();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)?;
            all.extend(
                text.lines()
                    .map(|l| l.split('#').next().unwrap_or("").trim())
                    .flat_map(|l| l.split(','))
                    .map(|t| t.trim().to_owned())
                    .filter(|t| !t.is_empty()),
            );
        }
        Ok(Self::parse(&all))
    }

    /// [`load`](Self::load) for the surface on `addr` configured by `variable` (and
    /// `<variable>_FILE`), warning loudly when no token is configured (the surface is open).
    pub fn load_for_surface(
        variable: &'static str,
        items: &[String],
        file: Option<&std::path::Path>,
        addr: SocketAddr,
    ) -> Result<Self, TokenFileError> {
        let tokens = Self::load(items, file).map_err(|source| TokenFileError {
            variable,
            path: file.map(|p| p.display().to_string()).unwrap_or_default(),
            source,
        })?;
        if tokens.is_open() {
            tracing::warn!("{variable} is unset: the API on {addr} is OPEN to anyone who can reach it");
        }
        Ok(tokens)
    }

    pub fn is_open(&self) -> bool {
        self.entries.is_empty()
    }

    /// The caller whose token was presented, if it is one of ours. Every token is compared in
    /// full (`subtle`'s constant-time comparison; only a length mismatch returns early, and
    /// length is no secret), without leaving the loop at a match, so timing reveals neither how
    /// much of a token matched nor which one did.
    pub fn identify(&self, presented: &[u8]) -> Option<Caller> {
        let mut found = None;
        for (caller, secret) in self.entries.iter() {
            if bool::from(secret.as_slice().ct_eq(presented)) {
                found = Some(caller.clone());
            }
        }
        found
    }

    /// The caller presenting an `Authorization: Bearer …` header value, if its token is one of
    /// ours. Open (no tokens configured) lets everyone in as [`Caller::anonymous`].
    pub fn caller(&self, authorization: Option<&str>) -> Option<Caller> {
        if self.is_open() {
            return Some(Caller::anonymous());
        }
        let presented = authorization.and_then(|v| v.strip_prefix("Bearer "))?;
        self.identify(presented.as_bytes())
    }
}

/// Counts requests by route and status and records their latency (axum middleware).
pub async fn record_metrics(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let started = std::time::Instant::now();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("memberlake_http_requests_total", "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("memberlake_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_load_from_a_file() {
        let dir = std::env::temp_dir().join(format!("memberlake-tokens-{}", std::process::id()));
        std::fs::write(&dir, "# operators\nalice:alpha\n\nbob:bravo, carol:charlie\n").unwrap();
        let t = Tokens::load(&["env:echo".into()], Some(&dir)).unwrap();
        std::fs::remove_file(&dir).unwrap();
        let name = |presented: &[u8]| t.identify(presented).map(|c| c.name().to_owned());
        assert_eq!(name(b"echo").as_deref(), Some("env"));
        assert_eq!(name(b"alpha").as_deref(), Some("alice"));
        assert_eq!(name(b"charlie").as_deref(), Some("carol"));
        assert!(Tokens::load(&[], Some(std::path::Path::new("/nonexistent/tokens"))).is_err());
    }

    #[test]
    fn tokens_compare_whole_and_carry_names() {
        let tokens = Tokens::parse(&["alice:alpha".into(), "bravo-token".into(), "".into()]);
        let name = |presented: &[u8]| tokens.identify(presented).map(|c| c.name().to_owned());
        assert_eq!(name(b"alpha").as_deref(), Some("alice"));
        assert_eq!(name(b"bravo-token").as_deref(), Some("token#2"));
        assert_eq!(name(b"alph"), None);
        assert_eq!(name(b"alphax"), None);
        assert_eq!(name(b""), None);
        assert_eq!(tokens.caller(Some("Bearer alpha")).unwrap().name(), "alice");
        assert!(tokens.caller(Some("alpha")).is_none());
        assert!(tokens.caller(None).is_none());
        assert_eq!(Tokens::parse(&[]).caller(None), Some(Caller::anonymous()));
        assert!(!format!("{tokens:?}").contains("alpha"));
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        let header = |e: ApiError| e.into_response().headers()[header::RETRY_AFTER].to_str().unwrap().to_owned();
        assert_eq!(header(ApiError::rate_limited(Duration::from_millis(1500))), "2");
        assert_eq!(header(ApiError::rate_limited(Duration::ZERO)), "1");
        assert_eq!(header(ApiError::rate_limited(Duration::from_secs(3600))), "3600");
        assert_eq!(header(ApiError::overloaded()), "1");
        assert_eq!(header(ApiError::timed_out(Duration::from_secs(5))), "1");
    }
}
