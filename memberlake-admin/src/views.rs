//! What the admin API answers. Each view is the wire form of one response; meta-service maps
//! its catalog types into them and clients decode them. Views accept fields they do not know,
//! so that a server may add one without breaking older clients.

use chrono::{DateTime, Utc};
use memberlake_records::ids::{AdvertiserId, EmailHash, FileId};
use memberlake_records::records::RejectReason;
use memberlake_records::states::FileState;
use serde::{Deserialize, Serialize};

/// A registered lake object and its progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FileView {
    pub file_id: FileId,
    pub advertiser_id: AdvertiserId,
    #[schema(example = "advertisers/acme/members.csv")]
    pub object_key: String,
    pub etag: String,
    pub size_bytes: i64,
    /// `none`, `gzip` or `zstd` (a compressed file is one range).
    #[schema(example = "none")]
    pub compression: String,
    pub state: FileState,
    /// Operator priority (higher runs first).
    pub priority: i32,
    /// Paused files take no new leases.
    pub paused: bool,
    pub ranges_total: i32,
    pub ranges_done: i32,
    pub rows_ingested: i64,
    pub rows_rejected: i64,
    /// Why the file failed or was cancelled.
    pub failure_reason: Option<String>,
    pub registered_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// When its rows were deleted from the store (superseded, failed or cancelled).
    pub retired_at: Option<DateTime<Utc>>,
    /// Whether this file is its advertiser's active list.
    pub active: bool,
    /// The file as a list version: what it changed, what it wrote.
    pub version: VersionView,
}

/// A file as a list version (`docs/versions.md`): its member count, its difference from the
/// version it was diffed against, and the store rows it wrote and deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionView {
    /// `changes` (writes only what changed) or `rows` (a legacy version, ingested before).
    pub store_format: String,
    /// The version it was diffed against (`null`: written in full).
    pub base_version: Option<FileId>,
    /// The version that replaced it as active.
    pub superseded_by: Option<FileId>,
    /// Its manifest has `2^bucket_bits` hash buckets.
    pub bucket_bits: Option<i16>,
    /// Buckets merged.
    pub buckets_done: i32,
    /// Distinct members, once every bucket merged.
    pub members: Option<i64>,
    /// Members added and removed against the base version.
    pub added: i64,
    pub removed: i64,
    /// Members kept from the base version (`members - added`), once every bucket merged. Sent
    /// so that each reader does not redo the arithmetic; absent (null) from servers before it.
    pub unchanged: Option<i64>,
    /// Store rows written by merging, and deleted by undoing or retiring it.
    pub rows_written: i64,
    pub rows_deleted: i64,
    /// Rows of the list dropped because their hash is erased (an erasure outlives every
    /// upload); absent (0) from servers before erasures.
    #[serde(default)]
    pub erased: i64,
    /// Why it is held for an operator (e.g. the shrink guard's reason); once approved, how
    /// (`approved`, as every rollback is: an operator asked for it).
    pub held_reason: Option<String>,
    pub activated_at: Option<DateTime<Utc>>,
    /// A rollback: the earlier version whose member set it restores.
    pub rollback_of: Option<FileId>,
    /// When its manifest passed its retention: from then on it can be neither restored by a
    /// rollback nor retried.
    pub manifest_expired_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FileDetailView {
    #[serde(flatten)]
    pub file: FileView,
    /// The score workers claim by (operator priority, advertiser weight, age, size).
    pub effective_priority: f64,
    pub ranges: RangeCountsView,
    /// Rows per second since the file was split.
    pub rows_per_second: f64,
    /// Estimated seconds to completion at the current pace (null before any range is done).
    pub eta_seconds: Option<f64>,
    pub last_errors: Vec<RangeErrorView>,
    /// Rejected rows by reason, most frequent first (absent from servers before it existed).
    #[serde(default)]
    pub rejected_by_reason: Vec<ReasonCountView>,
    /// Byte offsets and reasons of rejected rows, never their contents.
    pub rejection_samples: Vec<RejectionSampleView>,
}

/// Rows rejected for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReasonCountView {
    #[schema(example = "missing_at")]
    pub reason: String,
    pub rows: i64,
}

/// How many of a file's ranges are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RangeCountsView {
    pub queued: i64,
    pub leased: i64,
    pub done: i64,
    pub failed: i64,
}

/// The latest error of one range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RangeErrorView {
    /// `ingest` (a byte range), `merge`, `undo` or `retire` (a hash bucket).
    pub stage: String,
    pub range_index: i32,
    pub attempts: i32,
    pub error: String,
}

/// A rejected row: where it was and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RejectionSampleView {
    /// Byte offset in the (decompressed) object.
    pub offset: u64,
    pub reason: RejectReason,
}

/// [`FILES`](crate::routes::FILES): newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FilesResponse {
    pub files: Vec<FileView>,
}

/// The file an action changed (priority, pause, resume, cancel, approve, reject).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FileResponse {
    pub file: FileView,
}

/// [`RETRY`](crate::routes::RETRY): the file and how many failed ranges were queued again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RetryResponse {
    pub file: FileView,
    pub ranges_requeued: u64,
}

/// [`ROLLBACK`](crate::routes::ROLLBACK): the rollback version it created. Not the
/// restored version (that is its `version.rollback_of`): a rollback is a new version of its own
/// that merges the restored member set against the active one and activates like any other;
/// follow it with [`FILE`](crate::routes::FILE).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RollbackResponse {
    pub file: FileView,
}

/// [`SET_WEIGHT`](crate::routes::SET_WEIGHT): the weight now in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WeightResponse {
    pub advertiser_id: AdvertiserId,
    pub weight: f64,
}

/// An advertiser's list lifespan ([`SET_LIFESPAN`](crate::routes::SET_LIFESPAN),
/// [`LIFESPANS`](crate::routes::LIFESPANS)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LifespanView {
    pub advertiser_id: AdvertiserId,
    /// Seconds the list keeps matching after its upload; null: unlimited.
    pub lifespan_secs: Option<u64>,
    /// When the active list stops (or stopped) matching; null: never, or no active list.
    pub expires_at: Option<DateTime<Utc>>,
    /// The active list is past its lifespan: every lookup answers "not a member".
    pub expired: bool,
}

/// [`LIFESPANS`](crate::routes::LIFESPANS): every advertiser with a lifespan, by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LifespansResponse {
    pub lifespans: Vec<LifespanView>,
}

/// Where an erasure stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErasureState {
    /// Recorded: every matcher answers "not a member" for the hash (within its refresh) and no
    /// merge brings it back, while the leader's passes remove it from the store and the work
    /// location.
    Pending,
    /// A pass that started once no merge unit could still write the hash found and removed it
    /// everywhere.
    Complete,
}

impl ErasureState {
    pub fn as_str(self) -> &'static str {
        match self {
            ErasureState::Pending => "pending",
            ErasureState::Complete => "complete",
        }
    }
}

impl std::fmt::Display for ErasureState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An erasure and how far it has come ([`ERASE`](crate::routes::ERASE),
/// [`ERASURE`](crate::routes::ERASURE)). It names the hash, never an email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErasureView {
    pub email_hash: EmailHash,
    pub requested_at: DateTime<Utc>,
    /// Who asked first (a repeated request changes nothing): the token's name.
    #[schema(example = "ops")]
    pub requested_by: String,
    /// `complete` once `completed_at` is set.
    pub state: ErasureState,
    /// The leader's passes over it so far (store partitions deleted, work objects rewritten).
    pub passes: i32,
    /// Work objects (manifest buckets, diffs, runs) rewritten without the hash.
    pub objects_rewritten: i64,
    /// When the pass that completed it finished.
    pub completed_at: Option<DateTime<Utc>>,
    pub last_pass_at: Option<DateTime<Utc>>,
}

/// [`ACTIONS`](crate::routes::ACTIONS): the audit log, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ActionsResponse {
    pub actions: Vec<OperatorActionView>,
}

/// One audited operator action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OperatorActionView {
    pub action_id: i64,
    pub at: DateTime<Utc>,
    /// The token's name (`name:secret` in `MEMBERLAKE_ADMIN_TOKENS`).
    #[schema(example = "ops")]
    pub actor: String,
    /// `prioritize`, `pause`, `resume`, `cancel`, `retry`, `approve`, `reject`, `rollback`,
    /// `weight`, `lifespan` or `erase`.
    #[schema(example = "prioritize")]
    pub action: String,
    /// `file:<id>`, `advertiser:<id>` or `email_hash:<hash>`.
    #[schema(example = "file:42")]
    pub target: String,
    /// The action's parameters, e.g. `{"priority": 5}`.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// [`OVERVIEW`](crate::routes::OVERVIEW): what the status page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OverviewView {
    /// Queued ranges an express lane may take (small or urgent files).
    pub queued_express: i64,
    /// The other queued ranges.
    pub queued_bulk: i64,
    pub leased: i64,
    /// Files split and on their way to activation: ingesting, merging or held.
    pub files_in_flight: Vec<FileView>,
    /// Rows ingested per minute over the last 15 minutes, oldest first.
    pub rows_per_minute: Vec<MinuteRowsView>,
    /// Files failed in the last 24 hours.
    pub recent_failures: Vec<FileView>,
}

/// Rows ingested in one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MinuteRowsView {
    pub minute: DateTime<Utc>,
    pub rows: i64,
}

/// Every error: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// `bad_request`, `unauthorized`, `not_found`, `method_not_allowed`, `conflict`,
    /// `payload_too_large`, `rate_limited` (429), `unavailable`, `overloaded` or `timeout`
    /// (503s), or `internal`.
    #[schema(example = "conflict")]
    pub code: String,
    /// Safe to show the caller.
    #[schema(
        example = "file 42 is cancelled: only registered, ingesting, merging or held files can be paused or resumed"
    )]
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn file_json() -> serde_json::Value {
        json!({
            "file_id": 42,
            "advertiser_id": "acme",
            "object_key": "advertisers/acme/members.csv",
            "etag": "\"abc\"",
            "size_bytes": 1024,
            "compression": "none",
            "state": "ingesting",
            "priority": 5,
            "paused": false,
            "ranges_total": 4,
            "ranges_done": 1,
            "rows_ingested": 100,
            "rows_rejected": 2,
            "failure_reason": null,
            "registered_at": "2026-01-02T03:04:05Z",
            "finished_at": null,
            "retired_at": null,
            "active": false,
            "version": {
                "store_format": "changes", "base_version": 41, "superseded_by": null, "bucket_bits": 3,
                "buckets_done": 8, "members": 1000, "added": 10, "removed": 12, "unchanged": 990, "rows_written": 22,
                "rows_deleted": 0, "erased": 0, "held_reason": null, "activated_at": "2026-01-02T03:05:00Z",
                "rollback_of": 40, "manifest_expired_at": null
            }
        })
    }

    /// Decodes `wire` as `T` and encodes it again: the same JSON, field for field.
    fn round_trip<T: Serialize + serde::de::DeserializeOwned>(wire: serde_json::Value) -> T {
        let view: T = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(serde_json::to_value(&view).unwrap(), wire);
        view
    }

    #[test]
    fn a_file_keeps_the_servers_field_names() {
        let f: FileView = round_trip(file_json());
        assert_eq!((f.file_id, f.state, f.advertiser_id.as_str()), (FileId(42), FileState::Ingesting, "acme"));
        let fields: Vec<String> = file_json().as_object().unwrap().keys().cloned().collect();
        assert_eq!(fields.len(), 19);
        assert_eq!((f.version.members, f.version.added, f.version.removed), (Some(1000), 10, 12));
        assert_eq!((f.version.unchanged, f.version.rollback_of), (Some(990), Some(FileId(40))));
    }

    #[test]
    fn a_version_from_a_server_before_rollbacks_still_decodes() {
        let mut wire = file_json();
        for added_later in ["unchanged", "rollback_of", "manifest_expired_at"] {
            wire["version"].as_object_mut().unwrap().remove(added_later);
        }
        let f: FileView = serde_json::from_value(wire).unwrap();
        assert_eq!((f.version.unchanged, f.version.rollback_of), (None, None));
    }

    #[test]
    fn a_file_detail_is_the_file_flattened_with_its_progress() {
        let mut wire = file_json();
        let extra = json!({
            "effective_priority": 5012.5,
            "ranges": {"queued": 2, "leased": 1, "done": 1, "failed": 0},
            "rows_per_second": 33.3,
            "eta_seconds": 9.0,
            "last_errors": [{"stage": "ingest", "range_index": 3, "attempts": 2, "error": "lake unavailable"}],
            "rejected_by_reason": [{"reason": "missing_at", "rows": 2}],
            "rejection_samples": [{"offset": 17, "reason": "missing_at"}, {"offset": 90, "reason": "line_too_long"}]
        });
        wire.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let d: FileDetailView = round_trip(wire);
        assert_eq!(d.file.file_id, FileId(42));
        assert_eq!(d.rejection_samples[0].reason, RejectReason::MissingAt);
        assert_eq!(d.ranges, RangeCountsView { queued: 2, leased: 1, done: 1, failed: 0 });
    }

    #[test]
    fn action_responses_round_trip() {
        let _: FilesResponse = round_trip(json!({"files": [file_json()]}));
        let _: FileResponse = round_trip(json!({"file": file_json()}));
        let r: RetryResponse = round_trip(json!({"file": file_json(), "ranges_requeued": 3}));
        assert_eq!(r.ranges_requeued, 3);
        let r: RollbackResponse = round_trip(json!({"file": file_json()}));
        assert_eq!(r.file.file_id, FileId(42));
        let w: WeightResponse = round_trip(json!({"advertiser_id": "acme", "weight": 2.5}));
        assert_eq!(w.weight, 2.5);
        let a: ActionsResponse = round_trip(json!({"actions": [{
            "action_id": 7, "at": "2026-01-02T03:04:05.123456Z", "actor": "ops", "action": "prioritize",
            "target": "file:42", "details": {"priority": 5}
        }]}));
        assert_eq!(a.actions[0].details["priority"], 5);
        let o: OverviewView = round_trip(json!({
            "queued_express": 1, "queued_bulk": 2, "leased": 3,
            "files_in_flight": [file_json()],
            "rows_per_minute": [{"minute": "2026-01-02T03:04:00Z", "rows": 600}],
            "recent_failures": []
        }));
        assert_eq!(o.rows_per_minute[0].rows, 600);
        let e: ErrorBody = round_trip(json!({"error": {"code": "bad_request", "message": "limit must be 1..=1000"}}));
        assert_eq!(e.error.code, "bad_request");
    }

    #[test]
    fn erasures_round_trip() {
        let pending: ErasureView = round_trip(json!({
            "email_hash": "c160f8cc69a4f0bf2b0362752353d060", "requested_at": "2026-01-02T03:04:05.123456Z",
            "requested_by": "ops", "state": "pending", "passes": 0, "objects_rewritten": 0,
            "completed_at": null, "last_pass_at": null
        }));
        assert_eq!(
            (pending.state, pending.email_hash.to_hex().as_str()),
            (ErasureState::Pending, "c160f8cc69a4f0bf2b0362752353d060")
        );
        let complete: ErasureView = round_trip(json!({
            "email_hash": "c160f8cc69a4f0bf2b0362752353d060", "requested_at": "2026-01-02T03:04:05Z",
            "requested_by": "ops", "state": "complete", "passes": 2, "objects_rewritten": 17,
            "completed_at": "2026-01-02T03:09:00Z", "last_pass_at": "2026-01-02T03:09:00Z"
        }));
        assert_eq!((complete.state, complete.passes, complete.objects_rewritten), (ErasureState::Complete, 2, 17));
        for state in [ErasureState::Pending, ErasureState::Complete] {
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
        let mut wire = serde_json::to_value(&complete).unwrap();
        wire["state"] = json!("done");
        assert!(serde_json::from_value::<ErasureView>(wire).is_err(), "a state outside the contract");
    }

    #[test]
    fn views_tolerate_fields_added_later() {
        let mut wire = file_json();
        wire["added_in_v2"] = json!(true);
        let f: FileView = serde_json::from_value(wire).unwrap();
        assert_eq!(f.file_id, FileId(42));
    }

    #[test]
    fn views_reject_values_outside_the_contract() {
        let mut wire = file_json();
        wire["state"] = json!("done");
        assert!(serde_json::from_value::<FileView>(wire).is_err());
        let bad_reason = json!({"offset": 1, "reason": "too_short"});
        assert!(serde_json::from_value::<RejectionSampleView>(bad_reason).is_err());
    }
}
