//! The pipeline gauges an operator alerts on — queue depth and oldest queued age per lane, files
//! per state, files whose SLA is at risk (`memberlake::telemetry::catalogue`) — read from the
//! catalog ([`Catalog::pipeline_health`]) by the leader only, every `interval`.
//!
//! Why the leader: the values are the catalog's, the same from every process, so one exporter
//! is enough and `max`/`sum` over the splitters needs no deduplication. A standby exports none
//! of them until it leads; a splitter that stops leading sets them to zero (a Prometheus series,
//! once exported, stays until the process ends), so the leader's values are the only non-zero
//! ones. While no splitter leads the gauges are stale or zero: the leader-absent alert
//! (`memberlake_splitter_is_leader`) covers that.
//!
//! Cost: three index-backed read-only queries per refresh, each O(work in flight) (the query
//! files say which index), every `MEMBERLAKE_HEALTH_INTERVAL` (15 s by default).

use std::time::Duration;

use memberlake::catalog::{Catalog, HealthQuery, PipelineHealth};
use memberlake::telemetry::catalogue::{
    FILES, FILES_SLA_AT_RISK, HEALTH_REFRESH_ERRORS, LISTS_EXPIRED, LISTS_EXPIRING, QUEUE_OLDEST_AGE, QUEUE_UNITS,
};
use tokio::time::Instant;
use tracing::warn;

/// How far back `memberlake_files{state}` counts files that reached a terminal state (its help
/// text says 24 hours; the file-failed alert resolves this long after a failure).
pub const FINISHED_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// The leader's exporter of the pipeline gauges.
pub struct HealthGauges {
    query: HealthQuery,
    interval: Duration,
    /// When the gauges were last refreshed (or tried), while leading.
    last: Option<Instant>,
    /// The gauges were exported by this process, as leader.
    exported: Option<PipelineHealth>,
}

impl HealthGauges {
    pub fn new(query: HealthQuery, interval: Duration) -> Self {
        Self { query, interval, last: None, exported: None }
    }

    /// Called every splitter tick: while `leading`, refreshes the gauges once `interval` has
    /// passed since the last refresh; once not leading, zeroes what this process exported.
    pub async fn tick(&mut self, catalog: &Catalog, leading: bool) {
        if !leading {
            if let Some(exported) = self.exported.take() {
                publish(&zeroed(exported));
            }
            self.last = None;
            return;
        }
        if self.last.is_some_and(|t| t.elapsed() < self.interval) {
            return;
        }
        self.last = Some(Instant::now());
        match catalog.pipeline_health(&self.query).await {
            Ok(health) => {
                publish(&health);
                self.exported = Some(health);
            }
            Err(e) => {
                metrics::counter!(HEALTH_REFRESH_ERRORS).increment(1);
                warn!(error = %e, "could not read the pipeline's health from the catalog; the gauges keep their last values");
            }
        }
    }
}

fn publish(h: &PipelineHealth) {
    for lane in &h.lanes {
        metrics::gauge!(QUEUE_UNITS, "lane" => lane.lane.clone()).set(lane.units as f64);
        metrics::gauge!(QUEUE_OLDEST_AGE, "lane" => lane.lane.clone()).set(lane.oldest_seconds);
    }
    for (state, files) in &h.files {
        metrics::gauge!(FILES, "state" => state.as_str()).set(*files as f64);
    }
    metrics::gauge!(FILES_SLA_AT_RISK).set(h.sla_at_risk as f64);
    metrics::gauge!(LISTS_EXPIRING).set(h.lists_expiring as f64);
    metrics::gauge!(LISTS_EXPIRED).set(h.lists_expired as f64);
}

/// The same series, all zero.
fn zeroed(mut h: PipelineHealth) -> PipelineHealth {
    for lane in &mut h.lanes {
        lane.units = 0;
        lane.oldest_seconds = 0.0;
    }
    for (_, files) in &mut h.files {
        *files = 0;
    }
    h.sla_at_risk = 0;
    h.lists_expiring = 0;
    h.lists_expired = 0;
    h
}
