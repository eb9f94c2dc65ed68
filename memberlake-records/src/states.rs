//! The lifecycle states of files and ranges: the catalog's Postgres enums (`file_state`,
//! `range_state`) as Rust enums, so that no state is ever a string literal in Rust. The same
//! names are the wire form in the admin API and the CLI (`snake_case`).
//!
//! ```text
//! file:  registered ──split──▶ ingesting ──all ranges done──▶ merging ──all buckets done──▶ ingested (active)
//!                                  │                               │      └──shrinks too much──▶ held ──approve──▶ ingested
//!                                  │  failed range / too many rejects / operator / superseded by a newer upload
//!                                  └────────────────────────────────┴──▶ failed, cancelled ──retry──▶ ingesting
//! unit:  queued ──claim──▶ leased ──complete──▶ done
//!          ▲                 │  └──out of attempts / file failed──▶ failed
//!          └──give back / lease expired──┘
//! ```
//!
//! A file's work units (rows of `ranges`) are of four [`WorkStage`]s: ingest (a byte range),
//! merge (a hash bucket), and the cleanup stages undo and retire (a bucket of a diff).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a registered lake object is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(type_name = "file_state", rename_all = "snake_case"))]
pub enum FileState {
    /// Seen in the lake, not yet cut into ranges.
    Registered,
    /// Ranges exist; workers lease them.
    Ingesting,
    /// Every range's run is written; workers merge them bucket by bucket, diff them against the
    /// active version and write the difference to the store.
    Merging,
    /// Every bucket is done, but the version shrinks the active list by more than the guard
    /// allows: an operator approves or rejects it.
    Held,
    /// Every unit done; activated unless a newer version already was.
    Ingested,
    /// A range failed for good, or too many rows were rejected; never activates.
    Failed,
    /// Cancelled by an operator; never activates.
    Cancelled,
}

impl FileState {
    pub const ALL: [FileState; 7] = [
        FileState::Registered,
        FileState::Ingesting,
        FileState::Merging,
        FileState::Held,
        FileState::Ingested,
        FileState::Failed,
        FileState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Registered => "registered",
            FileState::Ingesting => "ingesting",
            FileState::Merging => "merging",
            FileState::Held => "held",
            FileState::Ingested => "ingested",
            FileState::Failed => "failed",
            FileState::Cancelled => "cancelled",
        }
    }

    /// Still on its way to activation: an operator may pause, resume or cancel it.
    pub fn is_in_flight(self) -> bool {
        matches!(self, FileState::Registered | FileState::Ingesting | FileState::Merging | FileState::Held)
    }

    /// Finished for good: its rows may be retired once it is not the active version.
    pub fn is_finished(self) -> bool {
        !self.is_in_flight()
    }
}

/// Where one byte range of a file is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(type_name = "range_state", rename_all = "snake_case"))]
pub enum RangeState {
    /// Waiting for a worker.
    Queued,
    /// A worker holds a lease on it (fenced by the lease token).
    Leased,
    /// Its rows are in the store.
    Done,
    /// Out of attempts, or its file failed or was cancelled.
    Failed,
}

impl RangeState {
    pub const ALL: [RangeState; 4] = [RangeState::Queued, RangeState::Leased, RangeState::Done, RangeState::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            RangeState::Queued => "queued",
            RangeState::Leased => "leased",
            RangeState::Done => "done",
            RangeState::Failed => "failed",
        }
    }
}

/// What a work unit (a row of `ranges`) does; see `migrations/postgres/0006_change_versions.sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(type_name = "work_stage", rename_all = "snake_case"))]
pub enum WorkStage {
    /// One byte range: hash its lines, write its sorted run(s) to the work location.
    Ingest,
    /// One hash bucket: merge the runs into the manifest, diff against the base, write the
    /// difference to the store.
    Merge,
    /// One bucket of a version that wrote rows and will never be active: delete them.
    Undo,
    /// One bucket of the successor's diff: delete the rows of a superseded version that no
    /// longer answer anything.
    Retire,
}

impl WorkStage {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkStage::Ingest => "ingest",
            WorkStage::Merge => "merge",
            WorkStage::Undo => "undo",
            WorkStage::Retire => "retire",
        }
    }
}

impl fmt::Display for WorkStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown state name; the message lists the valid ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} state {given:?}: use one of {valid}")]
pub struct UnknownState {
    kind: &'static str,
    given: String,
    valid: String,
}

fn parse_state<T: Copy>(
    kind: &'static str,
    s: &str,
    all: &[T],
    name: fn(T) -> &'static str,
) -> Result<T, UnknownState> {
    all.iter().copied().find(|v| name(*v) == s).ok_or_else(|| UnknownState {
        kind,
        given: s.to_owned(),
        valid: all.iter().map(|v| name(*v)).collect::<Vec<_>>().join(", "),
    })
}

impl FromStr for FileState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_state("file", s, &Self::ALL, Self::as_str)
    }
}

impl FromStr for RangeState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_state("range", s, &Self::ALL, Self::as_str)
    }
}

impl fmt::Display for FileState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for RangeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_text_and_json() {
        for s in FileState::ALL {
            assert_eq!(s.as_str().parse::<FileState>().unwrap(), s);
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        for s in RangeState::ALL {
            assert_eq!(s.as_str().parse::<RangeState>().unwrap(), s);
            assert_eq!(serde_json::from_str::<RangeState>(&format!("\"{s}\"")).unwrap(), s);
        }
        let err = "done".parse::<FileState>().unwrap_err().to_string();
        assert!(err.contains("registered, ingesting, merging, held, ingested, failed, cancelled"), "{err}");
    }
}
