//! The catalog's types (the domain) as the admin API's views (the contract), in one place.
//!
//! A local trait rather than `From`: both sides are foreign to this crate, so the orphan rule
//! allows no `From` impl here. Each conversion destructures its source completely, so a field
//! added to a catalog type does not compile until someone decides whether operators see it.

use memberlake::catalog::{
    Erasure, FileDetail, FileRecord, MinuteRows, OperatorAction, Overview, RangeCounts, RangeError, ReasonCount,
    RejectionSample, VersionRecord,
};
use memberlake_admin::views::{
    ErasureState, ErasureView, FileDetailView, FileView, MinuteRowsView, OperatorActionView, OverviewView,
    RangeCountsView, RangeErrorView, ReasonCountView, RejectionSampleView, VersionView,
};

/// A catalog value as its admin API view.
pub trait IntoView {
    type View;
    fn into_view(self) -> Self::View;
}

impl<T: IntoView> IntoView for Vec<T> {
    type View = Vec<T::View>;
    fn into_view(self) -> Self::View {
        self.into_iter().map(IntoView::into_view).collect()
    }
}

impl IntoView for FileRecord {
    type View = FileView;
    fn into_view(self) -> FileView {
        let FileRecord {
            file_id,
            advertiser_id,
            object_key,
            etag,
            size_bytes,
            compression,
            state,
            priority,
            paused,
            ranges_total,
            ranges_done,
            rows_ingested,
            rows_rejected,
            failure_reason,
            registered_at,
            finished_at,
            retired_at,
            active,
            version,
        } = self;
        FileView {
            file_id,
            advertiser_id,
            object_key,
            etag,
            size_bytes,
            compression: compression.as_str().to_owned(),
            state,
            priority,
            paused,
            ranges_total,
            ranges_done,
            rows_ingested,
            rows_rejected,
            failure_reason,
            registered_at,
            finished_at,
            retired_at,
            active,
            version: version.into_view(),
        }
    }
}

impl IntoView for VersionRecord {
    type View = VersionView;
    fn into_view(self) -> VersionView {
        let unchanged = self.unchanged();
        let VersionRecord {
            store_format,
            base_version,
            superseded_by,
            bucket_bits,
            buckets_done,
            members,
            added,
            removed,
            rows_written,
            rows_deleted,
            erased,
            held_reason,
            activated_at,
            rollback_of,
            manifest_expired_at,
        } = self;
        VersionView {
            store_format,
            base_version,
            superseded_by,
            bucket_bits,
            buckets_done,
            members,
            added,
            removed,
            unchanged,
            rows_written,
            rows_deleted,
            erased,
            held_reason,
            activated_at,
            rollback_of,
            manifest_expired_at,
        }
    }
}

impl IntoView for FileDetail {
    type View = FileDetailView;
    fn into_view(self) -> FileDetailView {
        let FileDetail {
            file,
            effective_priority,
            ranges,
            rows_per_second,
            eta_seconds,
            last_errors,
            rejected_by_reason,
            rejection_samples,
        } = self;
        FileDetailView {
            file: file.into_view(),
            effective_priority,
            ranges: ranges.into_view(),
            rows_per_second,
            eta_seconds,
            last_errors: last_errors.into_view(),
            rejected_by_reason: rejected_by_reason
                .into_iter()
                .map(|ReasonCount { reason, rows }| ReasonCountView { reason, rows })
                .collect(),
            rejection_samples: rejection_samples.into_view(),
        }
    }
}

impl IntoView for RangeCounts {
    type View = RangeCountsView;
    fn into_view(self) -> RangeCountsView {
        let RangeCounts { queued, leased, done, failed } = self;
        RangeCountsView { queued, leased, done, failed }
    }
}

impl IntoView for RangeError {
    type View = RangeErrorView;
    fn into_view(self) -> RangeErrorView {
        let RangeError { stage, range_index, attempts, error } = self;
        RangeErrorView { stage: stage.as_str().to_owned(), range_index, attempts, error }
    }
}

impl IntoView for RejectionSample {
    type View = RejectionSampleView;
    fn into_view(self) -> RejectionSampleView {
        let RejectionSample { offset, reason } = self;
        RejectionSampleView { offset, reason }
    }
}

impl IntoView for OperatorAction {
    type View = OperatorActionView;
    fn into_view(self) -> OperatorActionView {
        let OperatorAction { action_id, at, actor, action, target, details } = self;
        OperatorActionView { action_id, at, actor, action, target, details }
    }
}

impl IntoView for MinuteRows {
    type View = MinuteRowsView;
    fn into_view(self) -> MinuteRowsView {
        let MinuteRows { minute, rows } = self;
        MinuteRowsView { minute, rows }
    }
}

impl IntoView for Overview {
    type View = OverviewView;
    fn into_view(self) -> OverviewView {
        let Overview { queued_express, queued_bulk, leased, files_in_flight, rows_per_minute, recent_failures } = self;
        OverviewView {
            queued_express,
            queued_bulk,
            leased,
            files_in_flight: files_in_flight.into_view(),
            rows_per_minute: rows_per_minute.into_view(),
            recent_failures: recent_failures.into_view(),
        }
    }
}

impl IntoView for Erasure {
    type View = ErasureView;
    /// `seq` is the matchers' polling order and `created` says how the request that returned it
    /// went (the status code says it on the wire): neither is the erasure's state.
    fn into_view(self) -> ErasureView {
        let Erasure {
            seq: _,
            email_hash,
            requested_at,
            requested_by,
            passes,
            last_pass_at,
            objects_rewritten,
            completed_at,
            created: _,
        } = self;
        ErasureView {
            email_hash,
            requested_at,
            requested_by,
            state: if completed_at.is_some() { ErasureState::Complete } else { ErasureState::Pending },
            passes,
            objects_rewritten,
            completed_at,
            last_pass_at,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The views keep the wire format the catalog types had when the server serialized them
    //! directly: each view serializes to the same JSON as its source, plus the fields views
    //! derive from it (a version's `unchanged`).

    use chrono::{TimeZone, Utc};
    use memberlake::catalog::FileState;
    use memberlake::ids::{AdvertiserId, FileId};
    use memberlake::lake::Compression;
    use memberlake::records::RejectReason;
    use serde::Serialize;

    use super::*;

    fn record(id: i64, state: FileState) -> FileRecord {
        FileRecord {
            file_id: FileId(id),
            advertiser_id: AdvertiserId::parse("acme").unwrap(),
            object_key: format!("advertisers/acme/{id}.csv.gz"),
            etag: "\"e\"".into(),
            size_bytes: 123_456,
            compression: Compression::Gzip,
            state,
            priority: -3,
            paused: true,
            ranges_total: 1,
            ranges_done: 0,
            rows_ingested: 10,
            rows_rejected: 1,
            failure_reason: Some("lake object not found".into()),
            registered_at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
            finished_at: Some(Utc.with_ymd_and_hms(2026, 1, 2, 3, 5, 0).unwrap()),
            retired_at: None,
            active: false,
            version: VersionRecord {
                store_format: "changes".into(),
                base_version: Some(FileId(id - 1)),
                bucket_bits: Some(3),
                buckets_done: 2,
                members: Some(100),
                added: 4,
                removed: 5,
                rows_written: 9,
                held_reason: Some("shrinks".into()),
                rollback_of: Some(FileId(id - 2)),
                ..Default::default()
            },
        }
    }

    /// `domain`'s JSON is its view's, less the derived fields (each checked against its source).
    fn same_json<T: Serialize + IntoView>(domain: T)
    where
        T::View: Serialize,
    {
        let before = serde_json::to_value(&domain).unwrap();
        let mut after = serde_json::to_value(domain.into_view()).unwrap();
        without_derived(&mut after);
        assert_eq!(after, before);
    }

    /// Removes each version's `unchanged` from a view's JSON, checking it is `members - added`.
    fn without_derived(view: &mut serde_json::Value) {
        match view {
            serde_json::Value::Object(fields) => {
                if let Some(unchanged) = fields.remove("unchanged") {
                    let expected = fields["members"].as_i64().map(|m| m - fields["added"].as_i64().unwrap());
                    assert_eq!(unchanged.as_i64(), expected, "{fields:?}");
                }
                fields.values_mut().for_each(without_derived);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(without_derived),
            _ => {}
        }
    }

    #[test]
    fn a_version_view_says_how_many_members_it_kept() {
        let merged = record(7, FileState::Held).version;
        assert_eq!((merged.members, merged.added, merged.into_view().unchanged), (Some(100), 4, Some(96)));
        let merging = VersionRecord { members: None, added: 3, ..Default::default() };
        assert_eq!(merging.into_view().unchanged, None, "unknown until every bucket merged");
    }

    #[test]
    fn an_erasure_is_complete_once_a_completing_pass_ended() {
        let at = |minute| Utc.with_ymd_and_hms(2026, 1, 2, 3, minute, 0).unwrap();
        let hash = memberlake::ids::EmailHash::from_hex(b"c160f8cc69a4f0bf2b0362752353d060").unwrap();
        let pending = Erasure {
            seq: 7,
            email_hash: hash,
            requested_at: at(4),
            requested_by: "ops".into(),
            passes: 1,
            last_pass_at: Some(at(5)),
            objects_rewritten: 3,
            completed_at: None,
            created: true,
        };
        let complete = Erasure { passes: 2, last_pass_at: Some(at(9)), completed_at: Some(at(9)), ..pending.clone() };
        assert_eq!(
            serde_json::to_value(pending.into_view()).unwrap(),
            serde_json::json!({
                "email_hash": "c160f8cc69a4f0bf2b0362752353d060", "requested_at": "2026-01-02T03:04:00Z",
                "requested_by": "ops", "state": "pending", "passes": 1, "objects_rewritten": 3,
                "completed_at": null, "last_pass_at": "2026-01-02T03:05:00Z"
            })
        );
        let complete = complete.into_view();
        assert_eq!((complete.state, complete.passes, complete.completed_at), (ErasureState::Complete, 2, Some(at(9))));
    }

    #[test]
    fn views_serialize_like_the_catalog_types() {
        same_json(record(7, FileState::Failed));
        same_json(FileDetail {
            file: record(8, FileState::Ingesting),
            effective_priority: 12.5,
            ranges: RangeCounts { queued: 1, leased: 2, done: 3, failed: 4 },
            rows_per_second: 99.5,
            eta_seconds: None,
            last_errors: vec![RangeError {
                stage: memberlake::catalog::WorkStage::Merge,
                range_index: 2,
                attempts: 3,
                error: "timed out".into(),
            }],
            rejected_by_reason: vec![ReasonCount { reason: "multiple_at".into(), rows: 7 }],
            rejection_samples: vec![RejectionSample { offset: 40, reason: RejectReason::MultipleAt }],
        });
        same_json(OperatorAction {
            action_id: 1,
            at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
            actor: "ops".into(),
            action: "weight".into(),
            target: "advertiser:acme".into(),
            details: serde_json::json!({"weight": 2.5}),
        });
        same_json(Overview {
            queued_express: 1,
            queued_bulk: 2,
            leased: 3,
            files_in_flight: vec![record(9, FileState::Ingesting)],
            rows_per_minute: vec![MinuteRows { minute: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 0).unwrap(), rows: 5 }],
            recent_failures: vec![record(10, FileState::Failed)],
        });
    }
}
