//! The protection every public API surface gets (the matcher's API and the operator API),
//! assembled in one place, [`ApiSurface::wrap`], from well-kept layers rather than hand code, so
//! that the two surfaces cannot drift apart. Outermost first:
//!
//! 1. **request id**: a sane incoming `x-request-id` is kept, anything else (missing, too long,
//!    odd characters that could forge log lines) is replaced by a fresh UUID; it is echoed in the
//!    response and carried by the request's span, so a caller's report meets the log line
//!    (tower-http `SetRequestId` and `PropagateRequestId`);
//! 2. **the request's span** `http{request_id, method, route, caller, status}` (tower-http
//!    `Trace`), exported with its children when traces are ([`crate::telemetry::traces`]; a W3C
//!    `traceparent` makes it a child of the caller's span): every event a handler logs carries
//!    it; each answer is logged at `debug`
//!    (`MEMBERLAKE_LOG=info,memberlake::http=debug`: at 10K requests/s a line per request is a
//!    choice, not a default). The route is the matched template, never the raw URI, whose query
//!    may hold a token (`?token=` of the status page);
//! 3. **request metrics** ([`record_metrics`](super::record_metrics)): refusals below are counted
//!    by route and status like any answer;
//! 4. **the caller and its rate limit**: the bearer token identified in constant time
//!    ([`Tokens`]) and the caller's budget checked (governor, a GCRA limiter keyed by the token's
//!    *name*, never the token): over it, 429 `rate_limited` with the `Retry-After` the limiter
//!    computes. The budget is the service's: each replica enforces its share, budget / live
//!    replicas ([`super::fleet`]). Requests without a valid token share one budget of their own, so a flood of bad
//!    tokens cannot spend a real caller's, and the keys are the configured names plus that one:
//!    the limiter's memory is bounded whatever callers send;
//! 5. **overload**: at most `max_concurrency` requests in flight on the replica; one more is
//!    refused at once with 503 `overloaded` (tower `LoadShed` over a `ConcurrencyLimit` shared by
//!    every route): nothing waits in a queue, so latency and memory stay bounded and the client
//!    can retry elsewhere;
//! 6. **timeout**: a request not answered within `request_timeout`, its body's arrival included
//!    (a client that sends slowly holds a slot no longer), is abandoned with 503 `timeout`
//!    (tower `Timeout`; why a 503 and not a 504: [`ApiError::timed_out`]).
//!
//! Every refusal is an [`ApiError`], the one JSON error body of the APIs. Routes that need a
//! caller add [`require_caller`] (401); the rate limit applies to every route of the surface,
//! the open OpenAPI documents included. `/readyz` and `/metrics` are not part of an API surface:
//! they are served on the operations port ([`super::ops_router`]).

use std::num::{NonZeroU32, NonZeroUsize};
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderName};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{BoxError, Router};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::timeout::TimeoutLayer;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::Span;

use super::fleet::LiveReplicas;
use super::{ApiError, Caller, Tokens};

/// The request id header: taken from the caller when sane, answered always.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id kept from a caller (a UUID is 36, a W3C trace id 32).
const MAX_REQUEST_ID_BYTES: usize = 128;

/// How many requests one caller may make of the service: `N` per second, or `N/<duration>`
/// (`600/1m`, `1/1h`), in bursts of up to `N`; `0` for no limit.
///
/// The budget is per caller (the token's name; all requests without a valid token share one;
/// everyone shares `anonymous` on a surface without tokens) and the service's, whatever the
/// replicas: each of `n` live replicas enforces [`share`](Self::share)`(n)`. Before issue 18 the
/// limit was one budget per replica shared by all callers, so one caller could starve the
/// others, and a caller's ceiling grew with the autoscaler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerRate {
    Unlimited,
    Limited { requests: NonZeroU32, per: Duration },
}

impl CallerRate {
    /// One replica's share when `replicas` serve the surface: `N / replicas` requests (at least
    /// one) in the same period, so that the replicas together admit at most `N` (or one each,
    /// when there are more replicas than requests in the budget).
    pub fn share(self, replicas: NonZeroU32) -> Self {
        match self {
            Self::Unlimited => Self::Unlimited,
            Self::Limited { requests, per } => {
                let requests = NonZeroU32::new(requests.get() / replicas.get()).unwrap_or(NonZeroU32::MIN);
                Self::Limited { requests, per }
            }
        }
    }

    /// The limiter's quota: one request replenished every `per / requests`, bursts of `requests`.
    fn quota(self) -> Option<Quota> {
        match self {
            Self::Unlimited => None,
            Self::Limited { requests, per } => {
                Quota::with_period(per / requests.get()).map(|quota| quota.allow_burst(requests))
            }
        }
    }
}

impl FromStr for CallerRate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let expected = || format!("invalid rate {s:?}: expected N (per second) or N/<duration>, e.g. 100 or 1/1h");
        let (requests, per) = match s.trim().split_once('/') {
            Some((requests, per)) => (requests, crate::config::parse_duration(per)?),
            None => (s.trim(), Duration::from_secs(1)),
        };
        let requests: u32 = requests.trim().parse().map_err(|_| expected())?;
        let Some(requests) = NonZeroU32::new(requests) else {
            return Ok(Self::Unlimited);
        };
        let rate = Self::Limited { requests, per };
        match rate.quota() {
            Some(_) => Ok(rate),
            None => Err(format!("invalid rate {s:?}: the period must be at least a nanosecond per request")),
        }
    }
}

/// The limits of one API surface (each service declares its own settings for them).
#[derive(Debug, Clone, Copy)]
pub struct SurfaceLimits {
    /// Longest time a request may take, its body's arrival included; beyond it: 503 `timeout`.
    pub request_timeout: Duration,
    /// Requests handled at once by the replica; one more: 503 `overloaded`, at once.
    pub max_concurrency: NonZeroUsize,
    /// Each caller's budget; beyond it: 429 `rate_limited`.
    pub per_caller: CallerRate,
}

/// An API surface's protection: its tokens, where a token may come from, its limits; it
/// [`wrap`](Self::wrap)s the surface's routes.
pub struct ApiSurface {
    gate: Gate,
    limits: SurfaceLimits,
}

/// Identifies callers and keeps their budgets.
struct Gate {
    tokens: Tokens,
    /// A query parameter that may carry the token when no `Authorization` header is sent (a
    /// browser following a link cannot send one).
    token_query_param: Option<&'static str>,
    /// Budgets by caller, if the surface limits callers.
    budgets: Option<Budgets>,
}

/// Each caller's budget on this replica: its share of the service's.
struct Budgets {
    rate: CallerRate,
    replicas: LiveReplicas,
    /// The limiter for the share of the replica count it was built for; rebuilt (budgets start
    /// afresh) when the count changes. Read on every request: an uncontended read lock.
    share: RwLock<Share>,
}

struct Share {
    replicas: NonZeroU32,
    /// Keyed by caller; `None` is every request without a valid token.
    limiter: Arc<DefaultKeyedRateLimiter<Option<Caller>>>,
}

impl Budgets {
    fn new(rate: CallerRate, replicas: LiveReplicas) -> Option<Self> {
        let share = Share::of(rate, replicas.get())?;
        Some(Self { rate, replicas, share: RwLock::new(share) })
    }

    /// The limiter for the current replica count.
    fn limiter(&self) -> Arc<DefaultKeyedRateLimiter<Option<Caller>>> {
        let replicas = self.replicas.get();
        {
            let share = self.share.read().unwrap_or_else(|e| e.into_inner());
            if share.replicas == replicas {
                return share.limiter.clone();
            }
        }
        let mut share = self.share.write().unwrap_or_else(|e| e.into_inner());
        if share.replicas != replicas {
            if let Some(fresh) = Share::of(self.rate, replicas) {
                *share = fresh;
            }
        }
        share.limiter.clone()
    }
}

impl Share {
    fn of(rate: CallerRate, replicas: NonZeroU32) -> Option<Self> {
        let quota = rate.share(replicas).quota()?;
        Some(Self { replicas, limiter: Arc::new(DefaultKeyedRateLimiter::keyed(quota)) })
    }
}

impl ApiSurface {
    /// A surface whose callers' budgets are this replica's alone (see [`Self::shared_by`]).
    pub fn new(tokens: Tokens, limits: SurfaceLimits) -> Self {
        let budgets = Budgets::new(limits.per_caller, LiveReplicas::alone());
        Self { gate: Gate { tokens, token_query_param: None, budgets }, limits }
    }

    /// Each caller's budget is shared by the `replicas` of this surface: this replica admits
    /// its share ([`CallerRate::share`]), following the count as it changes.
    pub fn shared_by(mut self, replicas: LiveReplicas) -> Self {
        self.gate.budgets = Budgets::new(self.limits.per_caller, replicas);
        self
    }

    /// Also accepts the token as `?<param>=` when no `Authorization` header is sent.
    pub fn token_in_query(mut self, param: &'static str) -> Self {
        self.gate.token_query_param = Some(param);
        self
    }

    /// `routes` behind every layer of this module, with JSON 404 and 405 answers. `routes` must
    /// not have a fallback of its own; routes merged afterwards (`/healthz`) are outside.
    pub fn wrap(self, routes: Router) -> Router {
        let timeout = self.limits.request_timeout;
        let overload = ServiceBuilder::new()
            .layer(HandleErrorLayer::new(move |error: BoxError| async move { refusal(error, timeout) }))
            .layer(LoadShedLayer::new())
            // Shared by every route (a per-route layer would limit each route separately).
            .layer(GlobalConcurrencyLimitLayer::new(self.limits.max_concurrency.get()))
            .layer(TimeoutLayer::new(timeout));
        let request_id_and_span = ServiceBuilder::new()
            .layer(middleware::map_request(keep_sane_request_id))
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(request_span)
                    .on_request(())
                    .on_response(log_response)
                    .on_failure(()),
            );
        routes
            .fallback(|| async { ApiError::not_found("no such route") })
            .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
            .layer(overload)
            .layer(middleware::from_fn_with_state(Arc::new(self.gate), admit))
            .layer(middleware::from_fn(super::record_metrics))
            .layer(request_id_and_span)
    }
}

/// Route layer of the routes that need a caller: 401 unless the token check found one.
pub async fn require_caller(request: Request, next: Next) -> Response {
    if request.extensions().get::<Caller>().is_some() {
        next.run(request).await
    } else {
        ApiError::unauthorized().into_response()
    }
}

impl Gate {
    /// The caller presenting a token: the `Authorization` header if sent, else the query
    /// parameter if this surface takes one.
    fn identify(&self, request: &Request) -> Option<Caller> {
        let authorization = request.headers().get(header::AUTHORIZATION);
        match (authorization, self.token_query_param) {
            (None, Some(param)) if !self.tokens.is_open() => {
                let token = request.uri().query().and_then(|q| query_value(q, param))?;
                self.tokens.identify(token.as_bytes())
            }
            _ => self.tokens.caller(authorization.and_then(|v| v.to_str().ok())),
        }
    }
}

/// Identifies the caller (recorded in the request's span and, if any, in the request's
/// extensions for [`require_caller`] and handlers) and spends one request of its budget.
async fn admit(State(gate): State<Arc<Gate>>, mut request: Request, next: Next) -> Response {
    let caller = gate.identify(&request);
    let name = caller.as_ref().map_or("unidentified", Caller::name);
    Span::current().record("caller", tracing::field::display(name));
    if let Some(budgets) = &gate.budgets {
        let limiter = budgets.limiter();
        if let Err(not_until) = limiter.check_key(&caller) {
            metrics::counter!("memberlake_http_rate_limited_total", "caller" => name.to_owned()).increment(1);
            return ApiError::rate_limited(not_until.wait_time_from(limiter.clock().now())).into_response();
        }
    }
    if let Some(caller) = caller {
        request.extensions_mut().insert(caller);
    }
    next.run(request).await
}

/// The answer to a request the overload or timeout layer refused.
fn refusal(error: BoxError, timeout: Duration) -> ApiError {
    if error.is::<tower::load_shed::error::Overloaded>() {
        // Not logged one by one: under overload that would add work at the worst moment.
        metrics::counter!("memberlake_http_shed_total").increment(1);
        ApiError::overloaded()
    } else if error.is::<tower::timeout::error::Elapsed>() {
        metrics::counter!("memberlake_http_timeouts_total").increment(1);
        tracing::warn!(?timeout, "request timed out; abandoned");
        ApiError::timed_out(timeout)
    } else {
        tracing::error!(%error, "request failed in the HTTP layers");
        ApiError::internal("internal error")
    }
}

/// Removes a caller's `x-request-id` unless there is exactly one and it is sane (bounded, and
/// characters that cannot forge or break a log line), so that one is generated instead.
async fn keep_sane_request_id(mut request: Request) -> Request {
    let mut ids = request.headers().get_all(&REQUEST_ID).iter();
    let sane = matches!((ids.next(), ids.next()), (Some(id), None) if is_sane_request_id(id.as_bytes()));
    if !sane {
        request.headers_mut().remove(&REQUEST_ID);
    }
    request
}

fn is_sane_request_id(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_BYTES).contains(&id.len())
        && id.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
}

fn request_span(request: &Request) -> Span {
    let request_id = request.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
    let span = tracing::info_span!(
        "http",
        request_id = %request_id,
        method = %request.method(),
        route = %route,
        caller = tracing::field::Empty,
        status = tracing::field::Empty
    );
    crate::telemetry::traces::continue_remote_trace(&span, request.headers());
    span
}

fn log_response(response: &Response, latency: Duration, span: &Span) {
    span.record("status", response.status().as_u16());
    tracing::debug!(status = response.status().as_u16(), latency_us = latency.as_micros() as u64, "answered");
}

/// The value of `name` in a query string (not percent-decoded: tokens are URL-safe).
fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    //! The layers in process, with handlers that hold a request until the test lets it go or
    //! never answer: nothing here depends on how fast the machine is.

    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use serde_json::Value;
    use tokio::sync::Semaphore;
    use tower::ServiceExt;

    use super::*;

    fn limits(per_caller: &str) -> SurfaceLimits {
        SurfaceLimits {
            request_timeout: Duration::from_secs(10),
            max_concurrency: NonZeroUsize::new(64).unwrap(),
            per_caller: per_caller.parse().unwrap(),
        }
    }

    async fn send(app: &Router, request: axum::http::Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
        let response = app.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (parts.status, parts.headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    fn get_with(uri: &str, token: Option<&str>) -> axum::http::Request<Body> {
        let mut request = axum::http::Request::get(uri);
        if let Some(t) = token {
            request = request.header("authorization", format!("Bearer {t}"));
        }
        request.body(Body::empty()).unwrap()
    }

    fn guarded(surface: ApiSurface) -> Router {
        let routes = Router::new()
            .route("/private", get(|caller: Caller| async move { caller.name().to_owned() }))
            .route_layer(middleware::from_fn(require_caller))
            .route("/open", get(|| async { "open" }));
        surface.wrap(routes)
    }

    #[test]
    fn rates_parse() {
        let limited = |requests, per| CallerRate::Limited { requests: NonZeroU32::new(requests).unwrap(), per };
        assert_eq!("50000".parse(), Ok(limited(50_000, Duration::from_secs(1))));
        assert_eq!("1/1h".parse(), Ok(limited(1, Duration::from_secs(3600))));
        assert_eq!(" 600 / 1m ".parse(), Ok(limited(600, Duration::from_secs(60))));
        assert_eq!("0".parse(), Ok(CallerRate::Unlimited));
        for bad in ["", "x", "-1", "5/soon", "1/0s", "10/5ns"] {
            assert!(bad.parse::<CallerRate>().is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn each_caller_has_its_own_budget() {
        let tokens = Tokens::parse(&["alice:a-secret".into(), "bob:b-secret".into()]);
        let app = guarded(ApiSurface::new(tokens, limits("2/1h")));
        for _ in 0..2 {
            let (status, _, _) = send(&app, get_with("/private", Some("a-secret"))).await;
            assert_eq!(status, StatusCode::OK);
        }
        let (status, headers, body) = send(&app, get_with("/private", Some("a-secret"))).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(body["error"]["code"], "rate_limited");
        let retry: u64 = headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!((1_000..=1_800).contains(&retry), "half an hour until alice's next request: {retry}");
        // The open route spends alice's budget too.
        assert_eq!(send(&app, get_with("/open", Some("a-secret"))).await.0, StatusCode::TOO_MANY_REQUESTS);
        // Bob's budget is his own, and so is the one of requests without a valid token.
        assert_eq!(send(&app, get_with("/private", Some("b-secret"))).await.0, StatusCode::OK);
        assert_eq!(send(&app, get_with("/private", Some("wrong"))).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(send(&app, get_with("/open", None)).await.0, StatusCode::OK);
        assert_eq!(send(&app, get_with("/open", None)).await.0, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(send(&app, get_with("/private", Some("b-secret"))).await.0, StatusCode::OK);
    }

    #[test]
    fn a_share_never_admits_more_than_the_budget() {
        let limited = |requests, per| CallerRate::Limited { requests: NonZeroU32::new(requests).unwrap(), per };
        let n = |n| NonZeroU32::new(n).unwrap();
        let hour = Duration::from_secs(3600);
        assert_eq!(limited(50_000, hour).share(n(1)), limited(50_000, hour));
        assert_eq!(limited(50_000, hour).share(n(3)), limited(16_666, hour));
        assert_eq!(limited(2, hour).share(n(5)), limited(1, hour), "at least one request each");
        assert_eq!(CallerRate::Unlimited.share(n(4)), CallerRate::Unlimited);
    }

    #[tokio::test]
    async fn a_callers_budget_is_shared_by_the_replicas() {
        let tokens = Tokens::parse(&["alice:a-secret".into()]);
        let replicas = LiveReplicas::alone();
        replicas.set(2);
        let app = guarded(ApiSurface::new(tokens, limits("4/1h")).shared_by(replicas.clone()));
        let ask = || send(&app, get_with("/private", Some("a-secret")));
        for _ in 0..2 {
            assert_eq!(ask().await.0, StatusCode::OK);
        }
        assert_eq!(ask().await.0, StatusCode::TOO_MANY_REQUESTS, "half of 4 on each of 2 replicas");
        // The other replica left: this one's share is the whole budget, afresh.
        replicas.set(1);
        for _ in 0..4 {
            assert_eq!(ask().await.0, StatusCode::OK);
        }
        assert_eq!(ask().await.0, StatusCode::TOO_MANY_REQUESTS);
    }

    #[tokio::test]
    async fn the_caller_is_who_the_token_names() {
        let tokens = Tokens::parse(&["alice:a-secret".into()]);
        let app = guarded(ApiSurface::new(tokens.clone(), limits("0")));
        let (status, headers, body) = send(&app, get_with("/private", None)).await;
        assert_eq!((status, &body["error"]["code"]), (StatusCode::UNAUTHORIZED, &Value::from("unauthorized")));
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(send(&app, get_with("/private?token=a-secret", None)).await.0, StatusCode::UNAUTHORIZED);
        let app = guarded(ApiSurface::new(tokens, limits("0")).token_in_query("token"));
        let response = app.clone().oneshot(get_with("/private?token=a-secret", None)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let name = axum::body::to_bytes(response.into_body(), 100).await.unwrap();
        assert_eq!(&name[..], b"alice");
        // A header, when sent, is the one that counts.
        assert_eq!(send(&app, get_with("/private?token=a-secret", Some("wrong"))).await.0, StatusCode::UNAUTHORIZED);
        let open = guarded(ApiSurface::new(Tokens::default(), limits("0")));
        assert_eq!(send(&open, get_with("/private", None)).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn over_the_concurrency_limit_is_refused_at_once() {
        // One slot; the handler holds it until the test adds a permit to `gate`.
        let gate = Arc::new(Semaphore::new(0));
        let entered = Arc::new(Semaphore::new(0));
        let (held_gate, held_entered) = (gate.clone(), entered.clone());
        let routes = Router::new().route(
            "/hold",
            get(move || async move {
                held_entered.add_permits(1);
                let _permit = held_gate.acquire().await.unwrap();
                "done"
            }),
        );
        let surface = ApiSurface::new(
            Tokens::default(),
            SurfaceLimits { max_concurrency: NonZeroUsize::new(1).unwrap(), ..limits("0") },
        );
        let app = surface.wrap(routes).merge(super::super::health_router());
        let held = tokio::spawn(app.clone().oneshot(get_with("/hold", None)));
        entered.acquire().await.unwrap().forget();
        let (status, headers, body) = send(&app, get_with("/hold", None)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "overloaded");
        assert_eq!(headers[header::RETRY_AFTER], "1");
        // Unknown routes count against the limit as well; /healthz, outside the surface, does not.
        assert_eq!(send(&app, get_with("/nowhere", None)).await.0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(send(&app, get_with("/healthz", None)).await.0, StatusCode::OK);
        gate.add_permits(1);
        assert_eq!(held.await.unwrap().unwrap().status(), StatusCode::OK);
        let (status, _, body) = send(&app, get_with("/nowhere", None)).await;
        assert_eq!((status, &body["error"]["code"]), (StatusCode::NOT_FOUND, &Value::from("not_found")));
    }

    #[tokio::test]
    async fn a_slow_request_times_out_with_the_json_body() {
        // The handler never answers: whenever the timeout fires, it is what answers.
        let routes = Router::new().route("/slow", get(std::future::pending::<&'static str>));
        let limits = SurfaceLimits { request_timeout: Duration::from_millis(100), ..limits("0") };
        let app = ApiSurface::new(Tokens::default(), limits).wrap(routes);
        let (status, headers, body) = send(&app, get_with("/slow", None)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "timeout");
        assert!(body["error"]["message"].as_str().unwrap().contains("100ms"), "{body}");
        assert_eq!(headers[header::RETRY_AFTER], "1");
        assert!(headers.contains_key(&REQUEST_ID), "refusals carry the request id too");
    }

    #[tokio::test]
    async fn request_ids_are_kept_when_sane_and_made_otherwise() {
        let app = guarded(ApiSurface::new(Tokens::default(), limits("0")));
        let with_id = |id: &str| axum::http::Request::get("/open").header(REQUEST_ID, id).body(Body::empty()).unwrap();
        let (_, headers, _) = send(&app, with_id("req-42.a:b_c")).await;
        assert_eq!(headers[&REQUEST_ID], "req-42.a:b_c");
        let (_, headers, _) = send(&app, get_with("/open", None)).await;
        let made = headers[&REQUEST_ID].to_str().unwrap().to_owned();
        assert_eq!(made.len(), 36, "a UUID: {made}");
        let long = "x".repeat(MAX_REQUEST_ID_BYTES + 1);
        for insane in ["has space", "tab\there", long.as_str(), "a\"b", "<script>"] {
            let (_, headers, _) = send(&app, with_id(insane)).await;
            let answered = headers[&REQUEST_ID].to_str().unwrap();
            assert!(answered != insane && answered.len() == 36, "{insane:?} replaced by {answered}");
        }
        let two = axum::http::Request::get("/open")
            .header(REQUEST_ID, "first")
            .header(REQUEST_ID, "second")
            .body(Body::empty())
            .unwrap();
        let (_, headers, _) = send(&app, two).await;
        assert_eq!(headers[&REQUEST_ID].len(), 36);
    }
}
