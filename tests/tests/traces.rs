//! Trace export (issue 19): real services send their spans over OTLP/HTTP (protobuf) to a
//! receiver in this test process when `OTEL_EXPORTER_OTLP_ENDPOINT` names it, and nothing
//! without it. A worker's unit is one trace, its `unit` span the root of its stages'; a matcher
//! request's `http` span carries the request id and route, has the store read as a child, joins
//! the caller's trace given a W3C `traceparent`, and reaches the receiver at shutdown (its batch
//! delay is longer than the test).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use memberlake::states::FileState;
use memberlake_tests::*;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::Message;

/// One exported span, flattened.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    trace_id: String,
    span_id: String,
    /// Empty for a root span.
    parent_span_id: String,
    name: String,
    attributes: HashMap<String, String>,
}

impl Exported {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// A local OTLP/HTTP receiver: `POST /v1/traces` with an `ExportTraceServiceRequest`.
struct Receiver {
    url: String,
    spans: Arc<Mutex<Vec<Exported>>>,
}

impl Receiver {
    async fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().route("/v1/traces", post(receive)).with_state(spans.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", free_port())).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, spans }
    }

    fn spans(&self) -> Vec<Exported> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits until `found` finds something in what was received.
    async fn wait<T>(&self, what: &str, found: impl Fn(&[Exported]) -> Option<T>) -> T {
        wait_for(Duration::from_secs(60), what, || async { found(&self.spans()) }).await
    }
}

async fn receive(State(spans): State<Arc<Mutex<Vec<Exported>>>>, body: Bytes) -> (StatusCode, Vec<u8>) {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans.resource.map(|r| attributes(&r.attributes)).unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            received.push(Exported {
                service: service.clone(),
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                name: span.name,
                attributes: attributes(&span.attributes),
            });
        }
    }
    spans.lock().unwrap().extend(received);
    (StatusCode::OK, ExportTraceServiceResponse::default().encode_to_vec())
}

fn attributes(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map(text).unwrap_or_default())).collect()
}

fn text(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The children of `parent` (same trace, parent span id).
fn children<'a>(spans: &'a [Exported], parent: &Exported) -> Vec<&'a Exported> {
    spans.iter().filter(|s| s.trace_id == parent.trace_id && s.parent_span_id == parent.span_id).collect()
}

/// The names of `parent`'s children, sorted and deduplicated.
fn child_names(spans: &[Exported], parent: &Exported) -> Vec<String> {
    let mut names: Vec<String> = children(spans, parent).iter().map(|s| s.name.clone()).collect();
    names.sort();
    names.dedup();
    names
}

/// `root` and its descendants, one per line, indented by depth: for failure messages.
fn tree(spans: &[Exported], root: &Exported) -> String {
    fn walk(spans: &[Exported], span: &Exported, depth: usize, out: &mut String) {
        let mut attributes: Vec<_> = span.attributes.iter().filter(|(k, _)| !k.contains('.')).collect();
        attributes.sort();
        out.push_str(&format!("{}{} {attributes:?}\n", "  ".repeat(depth), span.name));
        for child in children(spans, span) {
            walk(spans, child, depth + 1, out);
        }
    }
    let mut out = String::new();
    walk(spans, root, 0, &mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_and_requests_are_exported_as_traces_only_when_an_endpoint_is_set() {
    let world = TestWorld::new().await;
    let receiver = Receiver::start().await;
    let export = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url.as_str()),
        // Batches every 200 ms: the worker's units arrive while it runs.
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ];
    // The meta-service and the splitter export nothing: no endpoint.
    let meta =
        world.spawn("meta-service", "meta-a", &[("MEMBERLAKE_ADMIN_ADDR", &format!("127.0.0.1:{}", free_port()))]);
    let splitter = world.spawn("splitter", "splitter-a", &[("MEMBERLAKE_RANGE_SIZE", "16KiB")]);
    let worker = world.spawn("compute-worker", "worker-0", &export);
    // The matcher batches every 10 minutes: its spans can only arrive by the flush at shutdown.
    let (mut matcher, matcher_url) = world
        .start_matcher(&[("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "600000")])
        .await;

    let members = emails(0, 2_000);
    let key = world.upload("acme", "list.csv", list(&members)).await;
    let file = world.wait_finished(&key, Duration::from_secs(120)).await;
    assert_eq!(file.state, FileState::Ingested, "{file:?}");
    assert!(file.ranges_total >= 2, "a file of several ranges: {file:?}");
    let file_id = file.file_id.0.to_string();

    // Every ingest range of the file is one trace rooted at its `unit` span, with the stages
    // of its work and the end of its lease as children.
    let units = receiver
        .wait("every ingest unit of the file", |spans| {
            let units: Vec<Exported> = spans
                .iter()
                .filter(|s| s.service == "compute-worker" && s.name == "unit")
                .filter(|s| s.attr("file_id") == Some(&file_id) && s.attr("stage") == Some("ingest"))
                .filter(|u| child_names(spans, u).contains(&"end_lease".to_owned()))
                .cloned()
                .collect();
            (units.len() >= file.ranges_total as usize).then_some(units)
        })
        .await;
    let spans = receiver.spans();
    let mut traces: Vec<&str> = units.iter().map(|u| u.trace_id.as_str()).collect();
    traces.sort();
    traces.dedup();
    assert_eq!(traces.len(), units.len(), "one trace per unit");
    for unit in &units {
        assert!(unit.parent_span_id.is_empty(), "a unit is a root span: {unit:?}");
        assert_eq!(unit.attr("advertiser_id"), Some("acme"), "{unit:?}");
        for field in ["range", "attempt", "token", "slot", "lane"] {
            assert!(unit.attr(field).is_some(), "the unit span carries {field}: {unit:?}");
        }
        assert_eq!(child_names(&spans, unit), ["end_lease", "hash", "read", "write_runs"], "{}", tree(&spans, unit));
        let end = children(&spans, unit).into_iter().find(|s| s.name == "end_lease").unwrap();
        assert_eq!(end.attr("result"), Some("done"), "{end:?}");
    }
    // The merge units too: the merge and the store writes, under their unit.
    let merge = receiver
        .wait("a merge unit writing rows", |spans| {
            spans
                .iter()
                .filter(|s| s.service == "compute-worker" && s.name == "unit")
                .filter(|s| s.attr("file_id") == Some(&file_id) && s.attr("stage") == Some("merge"))
                .find(|u| child_names(spans, u) == ["end_lease", "merge", "write_rows"])
                .cloned()
        })
        .await;
    assert!(merge.parent_span_id.is_empty(), "{merge:?}");
    eprintln!("an ingest unit:\n{}a merge unit:\n{}", tree(&spans, &units[0]), tree(&receiver.spans(), &merge));

    // A matcher request with a request id and a W3C traceparent: its span joins the caller's
    // trace, carries the request id and the route, and has the store read as a child.
    let client = reqwest::Client::new();
    wait_for(Duration::from_secs(30), "the version to answer", || async {
        is_member(&client, &matcher_url, "acme", md5_email(&members[0])).await.then_some(())
    })
    .await;
    let (caller_trace, caller_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let r = client
        .get(format!("{matcher_url}/v1/match?advertiser_id=acme&email_hash={}", md5_email(&members[1])))
        .header("x-request-id", "traced-request-1")
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        !receiver.spans().iter().any(|s| s.service == "matcher-api"),
        "the matcher's batch delay is 10 minutes: nothing before its shutdown"
    );
    assert!(matcher.terminate().await.success());
    let request = receiver
        .wait("the matcher's request span, flushed at shutdown", |spans| {
            spans
                .iter()
                .find(|s| {
                    s.service == "matcher-api" && s.name == "http" && s.attr("request_id") == Some("traced-request-1")
                })
                .cloned()
        })
        .await;
    assert_eq!(request.attr("route"), Some("/v1/match"), "{request:?}");
    assert_eq!(request.attr("method"), Some("GET"), "{request:?}");
    assert_eq!(request.attr("status"), Some("200"), "{request:?}");
    assert_eq!(request.attr("caller"), Some("anonymous"), "{request:?}");
    assert_eq!((request.trace_id.as_str(), request.parent_span_id.as_str()), (caller_trace, caller_span));
    let spans = receiver.spans();
    assert_eq!(
        child_names(&spans, &request),
        ["store_read"],
        "a cache miss reads the store: {}",
        tree(&spans, &request)
    );
    eprintln!("a request:\n{}", tree(&spans, &request));
    // Requests without a traceparent are roots of their own traces.
    assert!(spans.iter().any(|s| s.service == "matcher-api"
        && s.name == "http"
        && s.parent_span_id.is_empty()
        && s.trace_id != caller_trace));

    // Without an endpoint: nothing sent, and the log says so.
    let services: std::collections::BTreeSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(services, ["compute-worker", "matcher-api"].into_iter().collect());
    for service in [&meta, &splitter] {
        let log = service.log_text();
        assert!(log.contains("trace export off: OTEL_EXPORTER_OTLP_ENDPOINT is not set"), "{}: {log}", service.name);
    }
    assert!(worker.log_text().contains("trace export on"), "{}", worker.log_text());
}
