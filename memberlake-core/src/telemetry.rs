//! Logs (tracing, text or JSON) and Prometheus metrics, set up once per process. Every metric's
//! name, type, unit and help text: [`catalogue`].

pub mod catalogue;
/// OTLP export of the spans when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
pub mod traces;

use std::sync::OnceLock;

use clap::{Args, ValueEnum};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets in seconds, fine-grained below 10 ms where the matcher's target lies.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0,
];

/// How logs look and how much of them there is.
#[derive(Args, Debug, Clone)]
pub struct LogArgs {
    /// Log format: `text` for people, `json` for log pipelines.
    #[arg(long, env = "MEMBERLAKE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// tracing filter directives, e.g. `info` or `info,memberlake=debug`.
    #[arg(long, env = "MEMBERLAKE_LOG", default_value = "info")]
    pub log_filter: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the tracing subscriber and the Prometheus recorder. Call once, first thing in main.
pub fn init(log: &LogArgs) {
    let filter = EnvFilter::try_new(&log.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter).with(traces::layer());
    let _ = match log.log_format {
        LogFormat::Json => {
            registry.with(fmt::layer().json().with_current_span(true).with_writer(std::io::stderr)).try_init()
        }
        LogFormat::Text => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            registry.with(fmt::layer().with_target(false).with_ansi(ansi).with_writer(std::io::stderr)).try_init()
        }
    };
    init_metrics();
}

/// Installs the Prometheus recorder if none is; returns the handle that renders `/metrics`.
pub fn init_metrics() -> &'static PrometheusHandle {
    PROMETHEUS.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .expect("valid buckets");
        match builder.install_recorder() {
            Ok(handle) => {
                catalogue::describe_all();
                spawn_upkeep(handle.clone());
                handle
            }
            // Another recorder is installed (tests running several services in one process):
            // render an empty registry rather than failing.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
}

/// Drains recorded histogram samples into their buckets every few seconds. The recorder keeps
/// every raw sample until the next upkeep or render: without this, a process nobody scrapes
/// grows without bound (a worker records one store-latency sample per row: ~25 MB a minute).
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || loop {
        std::thread::sleep(UPKEEP_INTERVAL);
        handle.run_upkeep();
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the metrics upkeep thread; histograms are drained only by scrapes");
    }
}

const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The text exposition of every metric recorded by this process.
pub fn render_metrics() -> String {
    init_metrics().render()
}
