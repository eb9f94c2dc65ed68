//! What a caller sends: query strings and bodies, each rejecting unknown fields (a misspelled
//! setting is a 400, not silently ignored), and the rules on their values as [`Validate`], so
//! that the server and [`AdminClient`](crate::AdminClient) check the same thing; a listing's
//! `limit` through [`Listing`].

use std::ops::RangeInclusive;

use memberlake_records::ids::{AdvertiserId, FileId};
use memberlake_records::states::FileState;
use serde::{Deserialize, Serialize};

/// Listings return this many entries when no `limit` is given.
pub const DEFAULT_LIMIT: u32 = 100;
/// The accepted `limit` of a listing.
pub const LIMITS: RangeInclusive<u32> = 1..=1000;
/// The accepted operator priorities.
pub const PRIORITIES: RangeInclusive<i32> = -1_000_000..=1_000_000;
/// The largest advertiser weight; a weight must also be above 0 (1 is neutral).
pub const MAX_WEIGHT: f64 = 1e6;

/// A request value out of its range; the message says what is accepted, never echoes input
/// other than an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    #[error("limit must be 1..=1000")]
    Limit,
    #[error("priority must be between -1000000 and 1000000")]
    Priority,
    #[error("weight must be a number in (0, 1000000]")]
    Weight,
    #[error("file id must be a positive integer, got {0:?}")]
    FileId(String),
}

/// The rules on a request's values, beyond its shape.
pub trait Validate {
    fn validate(&self) -> Result<(), InvalidRequest>;
}

/// A file id from a path segment or a command line: a positive integer.
pub fn parse_file_id(raw: &str) -> Result<FileId, InvalidRequest> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).map(FileId).ok_or_else(|| InvalidRequest::FileId(raw.to_owned()))
}

/// A listing's query: its `limit` is checked here, in one place.
pub trait Listing {
    /// The `limit` as given, if any.
    fn requested_limit(&self) -> Option<u32>;

    /// The limit to apply: the given one, or [`DEFAULT_LIMIT`], if in [`LIMITS`].
    fn limit(&self) -> Result<u32, InvalidRequest> {
        let limit = self.requested_limit().unwrap_or(DEFAULT_LIMIT);
        LIMITS.contains(&limit).then_some(limit).ok_or(InvalidRequest::Limit)
    }
}

impl<T: Listing> Validate for T {
    fn validate(&self) -> Result<(), InvalidRequest> {
        self.limit().map(drop)
    }
}

/// Query of [`FILES`](crate::routes::FILES): `?state=&advertiser_id=&limit=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListFilesQuery {
    /// Only files in this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<String>, example = "ingesting")]
    pub state: Option<FileState>,
    /// Only this advertiser's files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<String>, example = "acme")]
    pub advertiser_id: Option<AdvertiserId>,
    /// 1..=1000, default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

impl Listing for ListFilesQuery {
    fn requested_limit(&self) -> Option<u32> {
        self.limit
    }
}

/// Query of [`ACTIONS`](crate::routes::ACTIONS): `?limit=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// 1..=1000, default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

impl Listing for LimitQuery {
    fn requested_limit(&self) -> Option<u32> {
        self.limit
    }
}

/// Body of [`SET_PRIORITY`](crate::routes::SET_PRIORITY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPriority {
    /// Higher runs first; at or above `MEMBERLAKE_URGENT_PRIORITY` the file takes the express
    /// lane. -1000000..=1000000.
    #[schema(minimum = -1_000_000, maximum = 1_000_000, example = 5)]
    pub priority: i32,
}

impl Validate for SetPriority {
    fn validate(&self) -> Result<(), InvalidRequest> {
        PRIORITIES.contains(&self.priority).then_some(()).ok_or(InvalidRequest::Priority)
    }
}

/// Body of [`SET_WEIGHT`](crate::routes::SET_WEIGHT).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetWeight {
    /// The advertiser's weight in the effective priority: (0, 1000000], 1 = neutral.
    #[schema(exclusive_minimum = 0, maximum = 1_000_000, example = 2.0)]
    pub weight: f64,
}

impl Validate for SetWeight {
    fn validate(&self) -> Result<(), InvalidRequest> {
        let w = self.weight;
        (w.is_finite() && w > 0.0 && w <= MAX_WEIGHT).then_some(()).ok_or(InvalidRequest::Weight)
    }
}

/// Body of [`ROLLBACK`](crate::routes::ROLLBACK), which may be left out: no body, an empty one
/// or `{}` restores the version active before the current one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    /// The version (its file id) whose member set to restore; absent or null: the version that
    /// was active before the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>, minimum = 1, example = 41)]
    pub to: Option<FileId>,
}

impl Validate for Rollback {
    fn validate(&self) -> Result<(), InvalidRequest> {
        match self.to {
            Some(FileId(id)) if id <= 0 => Err(InvalidRequest::FileId(id.to_string())),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_and_stay_in_range() {
        assert_eq!(LimitQuery::default().limit(), Ok(100));
        assert_eq!(LimitQuery { limit: Some(1) }.limit(), Ok(1));
        assert_eq!(LimitQuery { limit: Some(1000) }.limit(), Ok(1000));
        assert_eq!(LimitQuery { limit: Some(0) }.validate(), Err(InvalidRequest::Limit));
        assert_eq!(LimitQuery { limit: Some(1001) }.validate(), Err(InvalidRequest::Limit));
        let files = ListFilesQuery { limit: Some(5000), ..Default::default() };
        assert_eq!(files.validate().unwrap_err().to_string(), "limit must be 1..=1000");
    }

    #[test]
    fn priority_and_weight_ranges() {
        for ok in [-1_000_000, -2, 0, 1_000_000] {
            assert_eq!(SetPriority { priority: ok }.validate(), Ok(()), "{ok}");
        }
        for bad in [-1_000_001, 1_000_001, i32::MIN, i32::MAX] {
            assert_eq!(SetPriority { priority: bad }.validate(), Err(InvalidRequest::Priority), "{bad}");
        }
        for ok in [1e-9, 0.5, 1.0, 1e6] {
            assert_eq!(SetWeight { weight: ok }.validate(), Ok(()), "{ok}");
        }
        for bad in [0.0, -1.0, 1e6 + 1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(SetWeight { weight: bad }.validate(), Err(InvalidRequest::Weight), "{bad}");
        }
    }

    #[test]
    fn file_ids_are_positive_integers() {
        assert_eq!(parse_file_id("7"), Ok(FileId(7)));
        for bad in ["0", "-3", "abc", "", "1.5"] {
            assert_eq!(parse_file_id(bad), Err(InvalidRequest::FileId(bad.to_owned())), "{bad}");
        }
        assert_eq!(parse_file_id("abc").unwrap_err().to_string(), "file id must be a positive integer, got \"abc\"");
    }

    #[test]
    fn bodies_reject_unknown_and_mistyped_fields() {
        assert_eq!(serde_json::from_str::<SetPriority>(r#"{"priority": -2}"#).unwrap(), SetPriority { priority: -2 });
        let err = serde_json::from_str::<SetPriority>(r#"{"priority": 1, "prio": 2}"#).unwrap_err().to_string();
        assert!(err.contains("unknown field `prio`"), "{err}");
        assert!(serde_json::from_str::<SetPriority>(r#"{"priority": "high"}"#).is_err());
        assert!(serde_json::from_str::<SetPriority>(r#"{}"#).is_err());
        assert_eq!(serde_json::from_str::<SetWeight>(r#"{"weight": 2}"#).unwrap(), SetWeight { weight: 2.0 });
        let err = serde_json::from_str::<SetWeight>(r#"{"weight": 2, "advertiser": "x"}"#).unwrap_err().to_string();
        assert!(err.contains("unknown field `advertiser`"), "{err}");
    }

    #[test]
    fn a_rollback_names_a_version_or_none() {
        for (wire, to) in [("{}", None), (r#"{"to": null}"#, None), (r#"{"to": 41}"#, Some(FileId(41)))] {
            let body: Rollback = serde_json::from_str(wire).unwrap();
            assert_eq!((body, body.validate()), (Rollback { to }, Ok(())), "{wire}");
        }
        // The default is sent as `{}`, not `{"to": null}`.
        assert_eq!(serde_json::to_string(&Rollback::default()).unwrap(), "{}");
        assert_eq!(serde_json::to_string(&Rollback { to: Some(FileId(3)) }).unwrap(), r#"{"to":3}"#);
        let err = serde_json::from_str::<Rollback>(r#"{"to": 3, "from": 2}"#).unwrap_err().to_string();
        assert!(err.contains("unknown field `from`"), "{err}");
        for bad in [r#"{"to": "41"}"#, r#"{"to": 1.5}"#, "41"] {
            assert!(serde_json::from_str::<Rollback>(bad).is_err(), "{bad}");
        }
        assert_eq!(Rollback { to: Some(FileId(0)) }.validate(), Err(InvalidRequest::FileId("0".into())));
        assert_eq!(Rollback { to: Some(FileId(-2)) }.validate(), Err(InvalidRequest::FileId("-2".into())));
    }

    #[test]
    fn queries_read_their_fields_and_reject_others() {
        let q: ListFilesQuery = serde_urlencoded::from_str("state=failed&advertiser_id=acme&limit=3").unwrap();
        assert_eq!(q.state, Some(FileState::Failed));
        assert_eq!(q.advertiser_id.as_ref().map(AdvertiserId::as_str), Some("acme"));
        assert_eq!(q.limit, Some(3));
        assert_eq!(serde_urlencoded::to_string(&q).unwrap(), "state=failed&advertiser_id=acme&limit=3");
        // Absent fields are not sent at all.
        assert_eq!(serde_urlencoded::to_string(ListFilesQuery::default()).unwrap(), "");
        assert_eq!(serde_urlencoded::from_str::<ListFilesQuery>("").unwrap(), ListFilesQuery::default());
        for bad in ["stat=failed", "state=done", "advertiser_id=not%20an%20id", "limit=many", "limit=-1"] {
            assert!(serde_urlencoded::from_str::<ListFilesQuery>(bad).is_err(), "{bad}");
        }
        let err = serde_urlencoded::from_str::<LimitQuery>("limit=5&token=x").unwrap_err().to_string();
        assert!(err.contains("unknown field `token`"), "{err}");
    }
}
