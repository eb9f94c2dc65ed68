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
/// Rendered as `{"error": {"code": "...", "message": "..."}}`; 503 adds `Retry-After`, 401 adds
/// `WWW-Authenticate`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
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
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
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
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
            }
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
            }
            // The rest of an oversized body is never read, so the connection cannot carry another
            // request: say so, or a client's pool reuses it and its next request fails
            // (`IncompleteMessage`) when the server drops it.
            StatusCode::PAYLOAD_TOO_LARGE => {
                headers.insert(header::CONNECTION, axum::http::HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

/// Bearer tokens, optionally named (`name:secret`) so that audit records say who acted.
/// Compared in constant time; never logged.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Arc<Vec<(String, Vec<u8>)>>,
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
                    (name.to_owned(), secret.as_bytes().to_vec())
                }
                _ => (format!("token#{}", i + 1), t.trim().as_bytes().to_vec()),
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

    /// The name of the token presented, if it is one of ours. Every token is compared in full,
    /// without an early exit, so timing does not reveal how much of one matched.
    pub fn identify(&self, presented: &[u8]) -> Option<&str> {
        let mut found = None;
        for (name, secret) in self.entries.iter() {
            if constant_time_eq(secret, presented) {
                found = Some(name.as_str());
            }
        }
        found
    }

    /// Checks an `Authorization: Bearer …` header value: `Ok(actor)` or 401. Open (no tokens
    /// configured) lets everyone in as `anonymous`.
    pub fn authorize(&self, authorization: Option<&str>) -> Result<String, ApiError> {
        if self.is_open() {
            return Ok("anonymous".to_owned());
        }
        let presented = authorization.and_then(|v| v.strip_prefix("Bearer ")).map(str::as_bytes);
        presented.and_then(|p| self.identify(p)).map(str::to_owned).ok_or_else(ApiError::unauthorized)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// A token-bucket rate limit for a whole HTTP surface: at most `per_second` requests per
/// second on average, bursts up to one second's worth. Over the limit: 429 with Retry-After.
#[derive(Clone)]
pub struct RateLimit {
    inner: Arc<std::sync::Mutex<Bucket>>,
    per_second: f64,
}

struct Bucket {
    tokens: f64,
    last: std::time::Instant,
}

impl RateLimit {
    /// `None` for 0 (unlimited).
    pub fn per_second(per_second: u32) -> Option<Self> {
        (per_second > 0).then(|| Self {
            inner: Arc::new(std::sync::Mutex::new(Bucket {
                tokens: per_second as f64,
                last: std::time::Instant::now(),
            })),
            per_second: per_second as f64,
        })
    }

    /// Takes one token if there is one.
    pub fn try_acquire(&self) -> bool {
        let mut b = self.inner.lock().expect("poisoned");
        let now = std::time::Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * self.per_second).min(self.per_second);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// axum middleware applying a [`RateLimit`].
pub async fn rate_limit(
    State(limit): State<RateLimit>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if limit.try_acquire() {
        next.run(request).await
    } else {
        metrics::counter!("memberlake_http_rate_limited_total").increment(1);
        let mut r = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many requests; slow down")
            .into_response();
        r.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        r
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
    fn rate_limit_allows_a_burst_then_refuses() {
        let limit = RateLimit::per_second(5).unwrap();
        let allowed = (0..20).filter(|_| limit.try_acquire()).count();
        assert_eq!(allowed, 5);
        assert!(RateLimit::per_second(0).is_none());
    }

    #[test]
    fn tokens_load_from_a_file() {
        let dir = std::env::temp_dir().join(format!("memberlake-tokens-{}", std::process::id()));
        std::fs::write(&dir, "# operators\nalice:alpha\n\nbob:bravo, carol:charlie\n").unwrap();
        let t = Tokens::load(&["env:echo".into()], Some(&dir)).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(t.identify(b"echo"), Some("env"));
        assert_eq!(t.identify(b"alpha"), Some("alice"));
        assert_eq!(t.identify(b"charlie"), Some("carol"));
        assert!(Tokens::load(&[], Some(std::path::Path::new("/nonexistent/tokens"))).is_err());
    }

    #[test]
    fn tokens_compare_whole_and_carry_names() {
        let tokens = Tokens::parse(&["alice:alpha".into(), "bravo-token".into(), "".into()]);
        assert_eq!(tokens.identify(b"alpha"), Some("alice"));
        assert_eq!(tokens.identify(b"bravo-token"), Some("token#2"));
        assert_eq!(tokens.identify(b"alph"), None);
        assert_eq!(tokens.identify(b"alphax"), None);
        assert_eq!(tokens.identify(b""), None);
        assert_eq!(tokens.authorize(Some("Bearer alpha")).unwrap(), "alice");
        assert!(tokens.authorize(Some("alpha")).is_err());
        assert!(tokens.authorize(None).is_err());
        assert_eq!(Tokens::parse(&[]).authorize(None).unwrap(), "anonymous");
        assert!(!format!("{tokens:?}").contains("alpha"));
    }
}
