//! Every metric memberlake exports, in one place: name, type, unit, labels, and the `# HELP`
//! text Prometheus shows. Each process describes them all at start ([`describe_all`]); the
//! exporter prints a description with the metric once that metric has a value, so every metric
//! a service exports carries its help text. A unit test checks that each metric recorded
//! anywhere in the workspace (`metrics::counter!("…")` and the like) is listed here with its
//! type, so a new metric without a description fails the build's tests.
//!
//! Names follow Prometheus' conventions: the `memberlake_` prefix, the base unit in the name
//! (`_seconds`, `_bytes`), `_total` on counters, plain nouns on gauges of things (`_units`,
//! `_files`). The alert rules and the dashboard in `deploy/prometheus/` use these names.
//!
//! **Who exports what.** Most metrics come from the process that does the work (a worker's
//! ranges, a matcher's cache). The *pipeline gauges* ([`QUEUE_UNITS`], [`QUEUE_OLDEST_AGE`],
//! [`FILES`], [`FILES_SLA_AT_RISK`]) are computed from the catalog and exported by the splitter
//! leader only, refreshed every `MEMBERLAKE_HEALTH_INTERVAL` (`splitter::health`): a standby
//! exports none of them until it leads, and a splitter that stops leading sets them to zero, so
//! `max` (or `sum`) over all splitters is the leader's value.

use metrics::Unit;

/// What kind of Prometheus metric it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric's documentation.
#[derive(Debug, Clone, Copy)]
pub struct MetricDoc {
    pub name: &'static str,
    pub kind: Kind,
    /// `None` for dimensionless values (ratios, member counts in a histogram).
    pub unit: Option<Unit>,
    pub labels: &'static [&'static str],
    /// Which processes export it.
    pub exported_by: &'static str,
    pub help: &'static str,
}

/// `memberlake_build_info{service, version} 1`: which build each process runs.
pub const BUILD_INFO: &str = "memberlake_build_info";
/// Queued work units per lane (splitter leader).
pub const QUEUE_UNITS: &str = "memberlake_queue_units";
/// Age of the oldest queued unit per lane (splitter leader).
pub const QUEUE_OLDEST_AGE: &str = "memberlake_queue_oldest_age_seconds";
/// Files per state (splitter leader).
pub const FILES: &str = "memberlake_files";
/// Files whose SLA is at risk (splitter leader).
pub const FILES_SLA_AT_RISK: &str = "memberlake_files_sla_at_risk";
/// Active lists whose lifespan runs out within a week (splitter leader).
pub const LISTS_EXPIRING: &str = "memberlake_lists_expiring";
/// Active lists past their lifespan, matching nobody (splitter leader).
pub const LISTS_EXPIRED: &str = "memberlake_lists_expired";
/// Failed refreshes of the pipeline gauges (splitter leader).
pub const HEALTH_REFRESH_ERRORS: &str = "memberlake_health_refresh_errors_total";

const ALL: &str = "every service";
const LEADER: &str = "splitter (leader only)";
const SPLITTER: &str = "splitter";
const WORKER: &str = "compute-worker";
const MATCHER: &str = "matcher-api";
const META: &str = "meta-service";
const APIS: &str = "matcher-api, meta-service (admin API)";

macro_rules! doc {
    ($name:expr, $kind:ident, $unit:expr, [$($label:literal),*], $by:expr, $help:literal) => {
        MetricDoc { name: $name, kind: Kind::$kind, unit: $unit, labels: &[$($label),*], exported_by: $by, help: $help }
    };
}

const S: Option<Unit> = Some(Unit::Seconds);
const N: Option<Unit> = Some(Unit::Count);
const B: Option<Unit> = Some(Unit::Bytes);

/// Every metric, grouped by where it comes from.
pub const METRICS: &[MetricDoc] = &[
    // ---- every process
    doc!(BUILD_INFO, Gauge, None, ["service", "version"], ALL,
        "Always 1; its labels name the service and the version of the build this process runs."),
    doc!("memberlake_retries_total", Counter, N, ["what"], ALL,
        "Retries of a transient failure (database, store or lake unreachable), by what was retried."),
    // ---- the pipeline, as the splitter leader reads it from the catalog
    doc!(QUEUE_UNITS, Gauge, N, ["lane"], LEADER,
        "Work units a worker could claim now (queued, of a stage their file lets run, file not paused), by lane: \
         express = units of small or urgent files, which the express lane takes (and the bulk lane too); \
         bulk = units only the bulk lane takes. Exported by the splitter leader only; 0 from a splitter that stopped leading."),
    doc!(QUEUE_OLDEST_AGE, Gauge, S, ["lane"], LEADER,
        "Seconds the oldest claimable queued work unit of the lane has waited since it last became claimable \
         (0 when the lane is empty). Grows when no worker takes the lane's work. Splitter leader only."),
    doc!(FILES, Gauge, N, ["state"], LEADER,
        "Files per state: registered, ingesting, merging and held count every file in that state; ingested, failed \
         and cancelled count the files that reached that state in the last 24 hours. Splitter leader only."),
    doc!(FILES_SLA_AT_RISK, Gauge, N, [], LEADER,
        "Files in flight whose projected finish passes registration + the SLA (MEMBERLAKE_SLA, 2 h): the fraction of \
         their work units done lags the fraction of the SLA already spent; judged from SLA/10 after registration on; \
         held and paused files excluded. Splitter leader only."),
    doc!(LISTS_EXPIRING, Gauge, N, [], LEADER,
        "Active lists that stop matching within 7 days because their advertiser's lifespan runs out (the advertiser \
         must upload a fresh list, or an operator change the lifespan: memberlake lifespan). Splitter leader only."),
    doc!(LISTS_EXPIRED, Gauge, N, [], LEADER,
        "Active lists past their advertiser's lifespan: every lookup of them answers not-a-member until a fresh \
         upload. Splitter leader only."),
    doc!(HEALTH_REFRESH_ERRORS, Counter, N, [], LEADER,
        "Failed refreshes of the splitter leader's pipeline gauges (the catalog could not be read); the gauges keep \
         their last values meanwhile."),
    // ---- splitter
    doc!("memberlake_erasures_pending", Gauge, N, [], LEADER,
        "Erasures requested and not yet complete."),
    doc!("memberlake_erasures_oldest_pending_age_seconds", Gauge, S, [], LEADER,
        "Age of the oldest erasure not yet complete (0: none pending)."),
    doc!("memberlake_erasures_completed_total", Counter, N, [], SPLITTER,
        "Erasures completed: the hash is gone from the store and the work location."),
    doc!("memberlake_erasure_objects_rewritten_total", Counter, N, [], SPLITTER,
        "Work objects (manifest buckets, diffs, runs) rewritten without an erased hash."),
    doc!("memberlake_splitter_is_leader", Gauge, None, [], SPLITTER,
        "1 while this splitter holds the leader term, else 0. Exactly one splitter should report 1."),
    doc!("memberlake_leader_acquired_total", Counter, N, [], SPLITTER,
        "Times this splitter became the leader (a new term)."),
    doc!("memberlake_ranges_created_total", Counter, N, [], SPLITTER,
        "Ingest ranges the leader cut registered files into."),
    doc!("memberlake_leases_expired_total", Counter, N, [], SPLITTER,
        "Work-unit leases the leader reaped because their worker stopped heartbeating (requeued or failed)."),
    doc!("memberlake_versions_activated_total", Counter, N, [], SPLITTER,
        "List versions the leader activated (the matcher answers from them from then on)."),
    doc!("memberlake_versions_superseded_total", Counter, N, [], SPLITTER,
        "In-flight versions cancelled because a newer upload of the same advertiser supersedes them."),
    doc!("memberlake_versions_held_total", Counter, N, [], SPLITTER,
        "Versions held for an operator's decision (shrink guard, reject ratio)."),
    doc!("memberlake_files_failed_total", Counter, N, [], "splitter, compute-worker",
        "Files this process failed for good: the leader when a unit used all its attempts, a worker when the object \
         is gone, changed or corrupt. The catalog's count is memberlake_files{state=\"failed\"}."),
    doc!("memberlake_versions_cleaned_total", Counter, N, [], SPLITTER,
        "Versions whose rows left the store (undone or retired)."),
    doc!("memberlake_version_members_added_total", Counter, N, ["kind"], SPLITTER,
        "Members added by activated versions, by kind of version (first, diff, rollback)."),
    doc!("memberlake_version_members_removed_total", Counter, N, ["kind"], SPLITTER,
        "Members removed by activated versions, by kind of version (first, diff, rollback)."),
    doc!("memberlake_version_rows_written_total", Counter, N, ["kind"], SPLITTER,
        "Store rows written by activated versions, by kind of version (first, diff, rollback)."),
    doc!("memberlake_version_rows_rejected_total", Counter, N, [], SPLITTER,
        "Rows rejected by the parser in activated versions (by reason: memberlake_worker_rows_rejected_total)."),
    doc!("memberlake_version_members", Histogram, None, [], SPLITTER,
        "Members of each activated version."),
    doc!("memberlake_version_change_ratio", Histogram, None, [], SPLITTER,
        "(added + removed) / members of each activated version: how much of the list changed."),
    doc!("memberlake_version_registered_to_active_seconds", Histogram, S, [], SPLITTER,
        "Seconds from a file's registration to its version's activation: the time the SLA measures."),
    doc!("memberlake_work_objects_deleted_total", Counter, N, [], SPLITTER,
        "Objects the leader deleted at the work location (runs of active versions, expired manifests)."),
    doc!("memberlake_retirement_seconds", Histogram, S, [], SPLITTER,
        "Duration of each legacy retirement pass (token-ring scan of the store)."),
    // ---- compute-worker
    doc!("memberlake_worker_units_done_total", Counter, N, ["stage"], WORKER,
        "Work units this worker completed, by stage (ingest, merge, undo, retire)."),
    doc!("memberlake_worker_unit_seconds", Histogram, S, ["stage"], WORKER,
        "Seconds from claim to completion of each work unit, by stage."),
    doc!("memberlake_worker_ranges_failed_total", Counter, N, ["kind"], WORKER,
        "Work units this worker did not complete, by kind: transient (given back, attempt spent), permanent (file \
         failed), replica_fault (given back free: this worker cannot read the lake), lease_lost, shutdown."),
    doc!("memberlake_worker_ranges_done_total", Counter, N, [], WORKER,
        "Ingest ranges this worker completed."),
    doc!("memberlake_worker_filter_build_seconds", Histogram, S, [], WORKER,
        "Time to build one manifest bucket's membership filter."),
    doc!("memberlake_worker_range_seconds", Histogram, S, [], WORKER,
        "Seconds from claim to completion of each ingest range."),
    doc!("memberlake_worker_read_seconds", Histogram, S, [], WORKER,
        "Seconds an ingest range spent reading the lake (its stages overlap: they are pipelined)."),
    doc!("memberlake_worker_hash_seconds", Histogram, S, [], WORKER,
        "Seconds an ingest range spent parsing, normalizing and hashing."),
    doc!("memberlake_worker_write_seconds", Histogram, S, [], WORKER,
        "Seconds a merge unit spent writing its difference to the store."),
    doc!("memberlake_worker_bytes_read_total", Counter, B, [], WORKER,
        "Bytes read from the lake by ingest ranges (and memberlake check)."),
    doc!("memberlake_worker_rows_hashed_total", Counter, N, [], WORKER,
        "Valid rows hashed by ingest ranges."),
    doc!("memberlake_worker_rows_hashed_into_runs_total", Counter, N, [], WORKER,
        "Rows of completed ingest ranges written into sorted runs."),
    doc!("memberlake_worker_rows_rejected_total", Counter, N, ["reason"], WORKER,
        "Rows the parser rejected, by reason (not_utf8, empty, missing_at, multiple_at, empty_local_part, \
         empty_domain, too_long, line_too_long, wrong_hash_length)."),
    doc!("memberlake_worker_rows_written_total", Counter, N, [], WORKER,
        "Store rows written by merge units (the differences between versions)."),
    doc!("memberlake_worker_rows_deleted_total", Counter, N, [], WORKER,
        "Store rows deleted by undo and retire units."),
    doc!("memberlake_worker_hashes_erased_total", Counter, N, [], WORKER,
        "Hashes dropped from list versions because they are erased: rows by ingest units, distinct hashes by merge units."),
    // ---- the store (CQL), from the processes that use it
    doc!("memberlake_store_write_seconds", Histogram, S, [], WORKER,
        "Seconds per successful store write request (one row or one UNLOGGED batch)."),
    doc!("memberlake_store_read_seconds", Histogram, S, [], MATCHER,
        "Seconds per successful store read (one partition)."),
    doc!("memberlake_store_errors_total", Counter, N, ["request"], "compute-worker, matcher-api",
        "Store requests that failed (unreachable node, timeout, refused), by request: read or write."),
    doc!("memberlake_store_rows_written_total", Counter, N, ["op"], WORKER,
        "Rows written to the store, by operation (set, undo, retire)."),
    doc!("memberlake_store_batches_written_total", Counter, N, [], WORKER,
        "UNLOGGED batches written to the store."),
    doc!("memberlake_store_rows_retired_total", Counter, N, [], SPLITTER,
        "Legacy rows deleted by the token-ring retirement scan."),
    // ---- API surfaces (matcher, admin API)
    doc!("memberlake_http_requests_total", Counter, N, ["route", "status"], APIS,
        "API requests answered, by route and HTTP status: the matcher's outcomes are route=\"/v1/match\" and \
         \"/v1/suppress\" (503: store unavailable, overloaded or timed out)."),
    doc!("memberlake_http_request_duration_seconds", Histogram, S, ["route"], APIS,
        "Seconds to answer each API request, by route."),
    doc!("memberlake_http_rate_limited_total", Counter, N, ["caller"], APIS,
        "Requests refused with 429 because their caller exceeded its rate budget, by caller (token name)."),
    doc!("memberlake_http_shed_total", Counter, N, [], APIS,
        "Requests refused with 503 overloaded: the replica had its maximum of requests in flight."),
    doc!("memberlake_http_timeouts_total", Counter, N, [], APIS,
        "Requests abandoned with 503 timeout after the request timeout."),
    doc!("memberlake_http_replicas", Gauge, N, ["surface"], APIS,
        "Live replicas of this API surface as this replica last counted them; each enforces budget / replicas of a \
         caller's rate budget."),
    // ---- matcher-api
    doc!("memberlake_matcher_cache_hits_total", Counter, N, [], MATCHER,
        "Lookups answered from the partition cache."),
    doc!("memberlake_matcher_cache_misses_total", Counter, N, [], MATCHER,
        "Lookups that needed a store read (or joined one in flight)."),
    doc!("memberlake_matcher_store_reads_total", Counter, N, [], MATCHER,
        "Partition reads the matcher started (coalesced: concurrent misses of one hash share a read)."),
    doc!("memberlake_matcher_store_errors_total", Counter, N, [], MATCHER,
        "Partition reads that failed; their requests were answered 503 (never a false \"not a member\")."),
    doc!("memberlake_matcher_active_advertisers", Gauge, N, [], MATCHER,
        "Advertisers with an active version, as this matcher knows them."),
    doc!("memberlake_matcher_erased_hashes", Gauge, N, [], MATCHER,
        "Erased email hashes this matcher knows of (each answers \"not a member\" everywhere)."),
    doc!("memberlake_matcher_filter_bytes", Gauge, B, [], MATCHER,
        "Memory of the membership filters this matcher serves from (within MEMBERLAKE_MATCHER_FILTER_MEMORY)."),
    doc!("memberlake_matcher_filter_versions", Gauge, N, ["state"], MATCHER,
        "Active versions by filter state: loaded, over_budget (answered from the store: the memory budget is spent), unavailable (no filter objects: merged without filters, or a read failed), legacy."),
    doc!("memberlake_matcher_filter_loads_total", Counter, N, ["result"], MATCHER,
        "Filter loads of active versions, by result: ok, missing (no filter objects), error, over_budget (loaded but too large)."),
    doc!("memberlake_matcher_filter_load_seconds", Histogram, S, [], MATCHER,
        "Time to read and decode one version's filter."),
    doc!("memberlake_matcher_filter_activation_lag_seconds", Histogram, S, [], MATCHER,
        "From this matcher first serving a version to serving it with its filter."),
    doc!("memberlake_matcher_filter_probes_total", Counter, N, ["result"], MATCHER,
        "Lists probed in a filter, by result: absent (answered \"not a member\" without the store) or maybe (the store answers)."),
    doc!("memberlake_matcher_filter_false_positives_total", Counter, N, [], MATCHER,
        "Probes a filter let through that the store then answered \"not a member\": false positives (rate: this over this plus the absent probes)."),
    doc!("memberlake_matcher_version_refresh_errors_total", Counter, N, [], MATCHER,
        "Failed reloads of the active versions from the catalog; the last known versions keep answering."),
    // ---- meta-service
    doc!("memberlake_files_registered_total", Counter, N, [], META,
        "Lake objects registered as new files."),
    doc!("memberlake_lake_objects_ignored_total", Counter, N, [], META,
        "Lake objects newly seen outside advertisers/<advertiser_id>/ (ignored)."),
    doc!("memberlake_lake_objects_ignored", Gauge, N, [], META,
        "Objects outside advertisers/<advertiser_id>/ in the last listing of the lake."),
    doc!("memberlake_lake_objects_listed", Gauge, N, [], META,
        "Objects in the last listing of the lake."),
    doc!("memberlake_lake_poll_seconds", Histogram, S, [], META,
        "Seconds per poll of the lake (listing and registration)."),
    doc!("memberlake_lake_poll_errors_total", Counter, N, [], META,
        "Polls of the lake that failed (lake or catalog unreachable); retried next poll."),
];

/// Describes every metric of [`METRICS`] to the installed recorder, so its `# HELP` line is
/// rendered. Call after installing the recorder (descriptions go to the recorder of the moment).
pub fn describe_all() {
    for m in METRICS {
        match (m.kind, m.unit) {
            (Kind::Counter, Some(u)) => metrics::describe_counter!(m.name, u, m.help),
            (Kind::Counter, None) => metrics::describe_counter!(m.name, m.help),
            (Kind::Gauge, Some(u)) => metrics::describe_gauge!(m.name, u, m.help),
            (Kind::Gauge, None) => metrics::describe_gauge!(m.name, m.help),
            (Kind::Histogram, Some(u)) => metrics::describe_histogram!(m.name, u, m.help),
            (Kind::Histogram, None) => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

/// Records `memberlake_build_info{service, version} 1` for this process.
pub fn record_build_info(service: &str) {
    metrics::gauge!(BUILD_INFO, "service" => service.to_owned(), "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// Registers, at zero, the unlabelled counters of [`METRICS`] that `service` exports: a process
/// that has done no work yet (a worker that has taken no unit) still shows them, so a
/// dashboard's `rate()` and an alert's `absent()` see it at once rather than after its first
/// unit of work. Leader-only counters are left to the leader.
pub fn export_zero_counters(service: &str) {
    let zeroed =
        METRICS.iter().filter(|m| matches!(m.kind, Kind::Counter) && m.labels.is_empty() && m.exported_by == service);
    for m in zeroed {
        metrics::counter!(m.name).increment(0);
    }
}

/// The documentation of `name`, if it is a memberlake metric.
pub fn doc(name: &str) -> Option<&'static MetricDoc> {
    METRICS.iter().find(|m| m.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let mut seen = std::collections::HashSet::new();
        for m in METRICS {
            assert!(seen.insert(m.name), "{} is listed twice", m.name);
            assert!(m.name.starts_with("memberlake_"), "{}", m.name);
            assert!(m.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{}", m.name);
            assert!(!m.help.is_empty() && !m.help.contains('\n'), "{}", m.name);
            assert_eq!(m.kind == Kind::Counter, m.name.ends_with("_total"), "{}: `_total` marks counters only", m.name);
            if m.unit == S {
                assert!(m.name.ends_with("_seconds"), "{}: a duration is named in seconds", m.name);
            }
            if m.unit == B {
                assert!(m.name.contains("_bytes"), "{}: a size is named in bytes", m.name);
            }
        }
    }

    /// Every `metrics::counter!/gauge!/histogram!("memberlake_…"` in the workspace's sources is
    /// listed here with its type; every metric listed here is recorded somewhere.
    #[test]
    fn every_recorded_metric_is_described() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
        let mut recorded = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if path.is_dir() {
                    if !name.starts_with('.') && name != "target" && name != "tests" && name != "fuzz" {
                        stack.push(path);
                    }
                } else if name.ends_with(".rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for (kind, mac) in
                        [(Kind::Counter, "counter!("), (Kind::Gauge, "gauge!("), (Kind::Histogram, "histogram!(")]
                    {
                        for (i, _) in text.match_indices(&format!("metrics::{mac}")) {
                            let rest = text[i + "metrics::".len() + mac.len()..].trim_start();
                            if let Some(lit) = rest.strip_prefix('"') {
                                let name = &lit[..lit.find('"').unwrap()];
                                if !name.starts_with("memberlake_") {
                                    continue; // this file's own documentation
                                }
                                recorded.push((name.to_owned(), kind, path.display().to_string()));
                            }
                        }
                    }
                }
            }
        }
        assert!(recorded.len() > 40, "found only {} metric call sites under {}", recorded.len(), root.display());
        for (name, kind, file) in &recorded {
            let m = doc(name).unwrap_or_else(|| panic!("{name} ({file}) is not described in telemetry::catalogue"));
            assert_eq!(m.kind, *kind, "{name} ({file})");
        }
        let by_constant = [
            BUILD_INFO,
            QUEUE_UNITS,
            QUEUE_OLDEST_AGE,
            FILES,
            FILES_SLA_AT_RISK,
            LISTS_EXPIRING,
            LISTS_EXPIRED,
            HEALTH_REFRESH_ERRORS,
        ];
        for m in METRICS {
            assert!(
                by_constant.contains(&m.name) || recorded.iter().any(|(n, _, _)| n == m.name),
                "{} is described but never recorded",
                m.name
            );
        }
    }
}
