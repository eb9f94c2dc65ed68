//! Trace export: the process's `tracing` spans sent as OpenTelemetry spans over OTLP/HTTP
//! (protobuf) when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. Unset, nothing is built: no layer, no exporter,
//! no thread, no cost per span beyond the log subscriber's.
//!
//! The spans are the ones the logs already carry, with their fields as attributes: a worker's
//! `unit{file_id, stage, range, advertiser_id, attempt, token, slot, lane}` is the root of one
//! trace per leased range or bucket, from its claim to the end of its lease, with a child per
//! stage of its work; an API request's `http{request_id, method, route, caller}` is the root of
//! the request's trace (or joins the caller's, given a W3C `traceparent`). Events logged inside
//! a span become its span events. The log filter (`MEMBERLAKE_LOG`) selects the spans too.
//!
//! What is honoured of the standard variables: the endpoints, `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_EXPORTER_OTLP_COMPRESSION` (none: the `gzip-http` feature is
//! not built), `OTEL_SERVICE_NAME` (default: the binary's name), `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`, `OTEL_BSP_*` (batching), and
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` to turn export off. The protocol is
//! `http/protobuf` whatever `OTEL_EXPORTER_OTLP_PROTOCOL` says (gRPC would build tonic).
//!
//! Export never blocks the traced work: finished spans go to a bounded queue
//! (`OTEL_BSP_MAX_QUEUE_SIZE`, dropped when full) that the SDK's batch processor drains on a
//! thread of its own; what is still queued at exit is flushed by [`flush_on_exit`]'s guard.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Key, KeyValue};
use opentelemetry_http::{Bytes, HeaderExtractor, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{SpanExporter, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing::Subscriber;
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt};
use tracing_subscriber::registry::LookupSpan;

/// The exporting provider, kept to flush at exit; unset when export is off.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();
/// What [`layer`] decided, logged by [`flush_on_exit`] once the subscriber is installed
/// ([`layer`] runs before it is, so it cannot log).
static STATUS: OnceLock<Status> = OnceLock::new();

/// Longest wait for the last spans at exit: a collector that is down must not hold up a
/// shutdown (the orchestrator's grace period is shared with the work in hand).
const FLUSH_AT_EXIT: Duration = Duration::from_secs(5);
/// The OTLP default export timeout, when `OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT` does not say.
const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// A collector's answer is a small protobuf (a partial-success count); more is not read.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Why trace export could not be set up (the service runs on without it).
#[derive(Debug, thiserror::Error)]
pub enum TracesError {
    #[error("no Tokio runtime to send spans from (telemetry::init must run inside the runtime)")]
    NoRuntime,
    #[error("cannot build the HTTP client for trace export: {0}")]
    Client(#[source] reqwest::Error),
    #[error("cannot build the OTLP span exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// Whether this process exports its spans, and why not.
#[derive(Debug, Clone)]
enum Status {
    Off { why: &'static str },
    On { service: String, endpoint: String },
    Failed(String),
}

/// The OpenTelemetry layer for the process's subscriber when export is configured; `None`
/// otherwise (a `None` layer does nothing). Builds the exporter once: later calls (several
/// services in one test process) return `None`.
pub fn layer<S>() -> Option<OpenTelemetryLayer<S, SdkTracer>>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    if PROVIDER.get().is_some() || STATUS.get().is_some() {
        return None;
    }
    let endpoint = match configured_endpoint() {
        Ok(endpoint) => endpoint,
        Err(why) => {
            let _ = STATUS.set(Status::Off { why });
            return None;
        }
    };
    let service = service_name();
    match provider(&service) {
        Ok(provider) => {
            let tracer = provider.tracer("memberlake");
            let _ = PROVIDER.set(provider);
            let _ = STATUS.set(Status::On { service, endpoint: without_password(&endpoint) });
            Some(tracing_opentelemetry::layer().with_tracer(tracer))
        }
        Err(e) => {
            let _ = STATUS.set(Status::Failed(e.to_string()));
            None
        }
    }
}

/// Logs whether spans are exported; the returned guard flushes them when dropped. Call once
/// the subscriber is installed (after `service::start`) and hold the guard in `main`, so that a
/// graceful shutdown, or an error return, loses no span.
pub fn flush_on_exit() -> FlushOnExit {
    match STATUS.get() {
        Some(Status::On { service, endpoint }) => {
            tracing::info!(service, endpoint, "trace export on: OTLP/HTTP protobuf")
        }
        Some(Status::Failed(error)) => tracing::warn!(%error, "trace export off: it could not be set up"),
        Some(Status::Off { why }) => tracing::info!("trace export off: {why}"),
        None => tracing::info!("trace export off: not set up"),
    }
    FlushOnExit(())
}

/// Exports the spans still queued, within [`FLUSH_AT_EXIT`], when dropped; see [`flush_on_exit`].
#[must_use = "the spans are flushed when the guard is dropped"]
#[derive(Debug)]
pub struct FlushOnExit(());

impl Drop for FlushOnExit {
    fn drop(&mut self) {
        if let Some(provider) = PROVIDER.get() {
            if let Err(error) = provider.shutdown_with_timeout(FLUSH_AT_EXIT) {
                tracing::warn!(%error, "the last spans could not be exported");
            }
        }
    }
}

/// Makes `span` (a request's) a child of the caller's span when the request carries a W3C
/// `traceparent` (and `tracestate`): the request's spans then join the caller's trace, and the
/// caller's sampling decision holds (the default sampler is parent-based). Call before the span
/// is first entered. Nothing when export is off or the header is absent.
pub fn continue_remote_trace(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if PROVIDER.get().is_none() || !headers.contains_key("traceparent") {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(parent);
}

/// The traces endpoint if export is wanted, else why not.
fn configured_endpoint() -> Result<String, &'static str> {
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Err("OTEL_SDK_DISABLED=true");
    }
    if env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none")) {
        return Err("OTEL_TRACES_EXPORTER=none");
    }
    env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .ok_or("OTEL_EXPORTER_OTLP_ENDPOINT is not set")
}

/// `endpoint` as logged: a password in it masked.
fn without_password(endpoint: &str) -> String {
    match url::Url::parse(endpoint) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => endpoint.to_owned(),
    }
}

/// A non-empty environment variable.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The exporting provider: a batch processor (sampler from `OTEL_TRACES_SAMPLER`, batching from
/// `OTEL_BSP_*`, both read by the SDK) over the OTLP/HTTP exporter (endpoint, headers from the
/// `OTEL_EXPORTER_OTLP_*` variables, read by the exporter).
fn provider(service: &str) -> Result<SdkTracerProvider, TracesError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| TracesError::NoRuntime)?;
    let client = reqwest::Client::builder().timeout(export_timeout()).build().map_err(TracesError::Client)?;
    let exporter = SpanExporter::builder().with_http().with_http_client(OnRuntime { client, runtime }).build()?;
    let resource = Resource::builder()
        .with_service_name(service.to_owned())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
}

/// `OTEL_SERVICE_NAME` (or `service.name` in `OTEL_RESOURCE_ATTRIBUTES`), else the binary's name
/// (`compute-worker`, `matcher-api`, ...) rather than the SDK's `unknown_service:<binary>`.
fn service_name() -> String {
    let detected = Resource::builder().build().get(&Key::new("service.name")).map(|v| v.to_string());
    match detected {
        Some(name) if !name.starts_with("unknown_service") => name,
        _ => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.file_stem().and_then(|s| s.to_str()).map(str::to_owned))
            .unwrap_or_else(|| "memberlake".to_owned()),
    }
}

/// `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds), else
/// 10 s: the exporter reads them for its retries; the HTTP client is ours, so it applies them to
/// each request.
fn export_timeout() -> Duration {
    ["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"]
        .into_iter()
        .find_map(|name| env(name)?.trim().parse().ok())
        .map_or(DEFAULT_EXPORT_TIMEOUT, Duration::from_millis)
}

/// The exporter's HTTP client: the tree's reqwest (rustls, proxies), its requests run on
/// the service's Tokio runtime. The SDK's batch processor exports from a thread of its own,
/// outside any runtime, where reqwest's futures cannot make progress: each request is spawned
/// on the runtime and its answer awaited from that thread.
#[derive(Debug)]
struct OnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let (status, headers, body) = self
            .runtime
            .spawn(async move {
                let mut response = client.execute(request).await?;
                let (status, headers) = (response.status(), std::mem::take(response.headers_mut()));
                let mut body = Vec::new();
                while let Some(chunk) = response.chunk().await? {
                    if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                        return Err(HttpError::from("the collector's answer is too large"));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok::<_, HttpError>((status, headers, Bytes::from(body)))
            })
            .await??;
        let mut response = Response::builder().status(status).body(body)?;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_is_named_after_the_binary_by_default() {
        // OTEL_SERVICE_NAME is not set in the test environment of this crate.
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() && std::env::var_os("OTEL_RESOURCE_ATTRIBUTES").is_none() {
            let name = service_name();
            assert!(!name.starts_with("unknown_service"), "{name}");
            assert!(name.starts_with("memberlake"), "the unit-test binary is memberlake-<hash>: {name}");
        }
    }

    #[test]
    fn a_password_in_the_endpoint_is_not_logged() {
        assert_eq!(without_password("https://otel:s3cret@collector:4318"), "https://otel:***@collector:4318/");
        assert_eq!(without_password("http://127.0.0.1:4318"), "http://127.0.0.1:4318");
    }

    #[test]
    fn a_remote_parent_is_ignored_when_export_is_off() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".parse().unwrap());
        // No provider in this process: a no-op, whatever the header.
        continue_remote_trace(&tracing::Span::none(), &headers);
    }
}
