//! What a caller sends: query strings and bodies, each rejecting unknown fields (a misspelled
//! setting is a 400, not silently ignored), and the rules on their values as [`Validate`], so
//! that the server and [`AdminClient`](crate::AdminClient) check the same thing; a listing's
//! `limit` through [`Listing`]. The OpenAPI schemas of the values are built from the same
//! constants (the `*_schema` functions), so the document states what is checked.

use std::ops::RangeInclusive;

use memberlake_records::ids::{AdvertiserId, EmailHash, FileId};
use memberlake_records::records::{parse_line, Record, RejectReason, MAX_EMAIL_BYTES, MAX_LINE_BYTES};
use memberlake_records::states::FileState;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};

/// Listings return this many entries when no `limit` is given.
pub const DEFAULT_LIMIT: u32 = 100;
/// The accepted `limit` of a listing.
pub const LIMITS: RangeInclusive<u32> = 1..=1000;
/// The accepted operator priorities.
pub const PRIORITIES: RangeInclusive<i32> = -1_000_000..=1_000_000;
/// The largest advertiser weight; a weight must also be above 0 (1 is neutral).
pub const MAX_WEIGHT: f64 = 1e6;
/// The accepted list lifespans, in seconds: a second to a hundred years.
pub const LIFESPAN_SECS: RangeInclusive<u64> = 1..=100 * 365 * 86_400;

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
    #[error("lifespan_secs must be 1..=3153600000 (a hundred years), or null for unlimited")]
    Lifespan,
    /// An erasure names neither or both of `email` and `email_hash`.
    #[error("an erasure names exactly one of `email` or `email_hash`, not {}", if *.0 { "both" } else { "neither" })]
    EraseTarget(bool),
    /// The email is a line a list would reject, for this reason.
    #[error("email rejected as a member list would reject it: {}", .0.as_str())]
    EmailRejected(RejectReason),
    /// The email is blank: a list would skip the line.
    #[error("email is blank: a member list skips such a line")]
    EmailBlank,
    /// The email is valid in a list but not as the API takes one: ASCII, at most 254 characters.
    #[error(
        "email must be ASCII and at most 254 characters as sent; send any other list line as its email_hash \
         (`memberlake erase` hashes any line locally)"
    )]
    EmailForm,
}

/// The rules on a request's values, beyond its shape.
pub trait Validate {
    fn validate(&self) -> Result<(), InvalidRequest>;
}

/// A file id from a path segment or a command line: a positive integer.
pub fn parse_file_id(raw: &str) -> Result<FileId, InvalidRequest> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id >= FileId::MIN)
        .map(FileId)
        .ok_or_else(|| InvalidRequest::FileId(raw.to_owned()))
}

/// An integer of a body as the document's `type: integer` admits one (JSON Schema: a number with
/// no fractional part): `5` or `5.0`, which many JSON encoders cannot tell apart; not `5.5`.
/// Out of `T`'s range is an error, as it is for serde's own integers.
struct Integral<T>(T);

impl<'de, T: TryFrom<i64>> Deserialize<'de> for Integral<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{Error, Unexpected};
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = i64;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: Error>(self, v: i64) -> Result<i64, E> {
                Ok(v)
            }
            fn visit_u64<E: Error>(self, v: u64) -> Result<i64, E> {
                i64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
            }
            fn visit_f64<E: Error>(self, v: f64) -> Result<i64, E> {
                // No fraction, and in [-2^63, 2^63): an i64 exactly.
                let integral = v.fract() == 0.0 && (i64::MIN as f64..-(i64::MIN as f64)).contains(&v);
                integral.then_some(v as i64).ok_or_else(|| E::invalid_type(Unexpected::Float(v), &self))
            }
        }
        let v = d.deserialize_any(Visitor)?;
        T::try_from(v).map(Self).map_err(|_| D::Error::invalid_value(Unexpected::Signed(v), &"an integer in range"))
    }
}

fn integral<'de, D: Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<T, D::Error> {
    Integral::deserialize(d).map(|Integral(v)| v)
}

fn integral_file_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<FileId>, D::Error> {
    Ok(Option::<Integral<i64>>::deserialize(d)?.map(|Integral(v)| FileId(v)))
}

fn integer(format: KnownFormat) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Integer).format(Some(SchemaFormat::KnownFormat(format)))
}

/// A listing's `limit`: [`LIMITS`], default [`DEFAULT_LIMIT`].
fn limit_schema() -> ObjectBuilder {
    integer(KnownFormat::Int32)
        .minimum(Some(*LIMITS.start()))
        .maximum(Some(*LIMITS.end()))
        .default(Some(DEFAULT_LIMIT.into()))
        .description(Some(format!("At most this many entries, {}..={}", LIMITS.start(), LIMITS.end())))
}

/// An operator priority: [`PRIORITIES`].
fn priority_schema() -> ObjectBuilder {
    integer(KnownFormat::Int32)
        .minimum(Some(*PRIORITIES.start()))
        .maximum(Some(*PRIORITIES.end()))
        .description(Some(
            "Higher runs first; at or above `MEMBERLAKE_URGENT_PRIORITY` the file takes the express lane",
        ))
        .examples([5])
}

/// An advertiser weight: above 0, at most [`MAX_WEIGHT`].
fn weight_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Number)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Double)))
        .exclusive_minimum(Some(0.0))
        .maximum(Some(MAX_WEIGHT))
        .description(Some("The advertiser's weight in the effective priority; 1 is neutral"))
        .examples([2.0])
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
    #[param(example = "ingesting")]
    pub state: Option<FileState>,
    /// Only this advertiser's files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(example = "acme")]
    pub advertiser_id: Option<AdvertiserId>,
    /// 1..=1000, default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(schema_with = limit_schema)]
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
    #[param(schema_with = limit_schema)]
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
    #[serde(deserialize_with = "integral")]
    #[schema(schema_with = priority_schema)]
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
    #[schema(schema_with = weight_schema)]
    pub weight: f64,
}

impl Validate for SetWeight {
    fn validate(&self) -> Result<(), InvalidRequest> {
        let w = self.weight;
        (w.is_finite() && w > 0.0 && w <= MAX_WEIGHT).then_some(()).ok_or(InvalidRequest::Weight)
    }
}

/// A list lifespan in seconds: [`LIFESPAN_SECS`], or null.
fn lifespan_schema() -> ObjectBuilder {
    integer(KnownFormat::Int64)
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([Type::Integer, Type::Null]))
        .minimum(Some(*LIFESPAN_SECS.start()))
        .maximum(Some(*LIFESPAN_SECS.end()))
        .description(Some(format!(
            "Seconds an advertiser's list keeps matching after its upload, {}..={}; null: unlimited",
            LIFESPAN_SECS.start(),
            LIFESPAN_SECS.end()
        )))
}

/// Body of [`SET_LIFESPAN`](crate::routes::SET_LIFESPAN): how long an advertiser's list keeps
/// matching after its upload. Past it, every lookup of the list answers "not a member" until
/// the advertiser uploads a fresh one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetLifespan {
    /// Seconds (1 to a hundred years), or null for unlimited (the default). Required: a body
    /// without it is a 400 rather than a silent "unlimited".
    #[serde(deserialize_with = "integral_lifespan")]
    #[schema(schema_with = lifespan_schema, required = true)]
    pub lifespan_secs: Option<u64>,
}

fn integral_lifespan<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Option::<Integral<i64>>::deserialize(d)?.map(|Integral(v)| u64::try_from(v).unwrap_or(0)))
}

impl Validate for SetLifespan {
    fn validate(&self) -> Result<(), InvalidRequest> {
        match self.lifespan_secs {
            Some(secs) if !LIFESPAN_SECS.contains(&secs) => Err(InvalidRequest::Lifespan),
            _ => Ok(()),
        }
    }
}

/// Body of [`ROLLBACK`](crate::routes::ROLLBACK), which may be left out: no body, an empty one
/// or `{}` restores the version active before the current one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    /// The version (its file id) whose member set to restore; absent or null: the version that
    /// was active before the current one.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "integral_file_id")]
    pub to: Option<FileId>,
}

impl Validate for Rollback {
    fn validate(&self) -> Result<(), InvalidRequest> {
        match self.to {
            Some(FileId(id)) if id < FileId::MIN => Err(InvalidRequest::FileId(id.to_string())),
            _ => Ok(()),
        }
    }
}

/// The hash of one list line (an email, or 32 hex digits taken as an already-hashed email) by
/// the ingestion rule itself ([`parse_line`], not a first line, [`MAX_LINE_BYTES`]), so that an
/// erasure names exactly the hash ingestion stored for that line. Used by the server on an
/// [`EraseRequest`]'s `email` and by the CLI, which hashes locally so that the email never
/// leaves the operator's machine. An error names the reason, never the line.
pub fn hash_email(line: &str) -> Result<EmailHash, InvalidRequest> {
    if line.len() > MAX_LINE_BYTES {
        return Err(InvalidRequest::EmailRejected(RejectReason::LineTooLong));
    }
    match parse_line(line.as_bytes(), false) {
        Record::Member(hash) => Ok(hash),
        Record::Rejected(reason) => Err(InvalidRequest::EmailRejected(reason)),
        Record::Skipped => Err(InvalidRequest::EmailBlank),
    }
}

/// What the API takes as an [`EraseRequest`]'s `email`, as a regular expression (ECMAScript and
/// `regex` read it alike), with at most [`MAX_EMAIL_BYTES`] characters: exactly the ASCII lines
/// of that length that [`hash_email`] (the ingestion rule) takes as a member. So the document
/// admits no email the server refuses and the other way round (a property test holds them
/// equal); a line in any other form (not ASCII, or longer) is sent as its `email_hash`.
///
/// The rule, spelled out: ASCII whitespace (`\t \n \x0C \r` and space) around the line is
/// trimmed; one pair of double quotes around what is left is removed, and whitespace inside
/// them trimmed; the rest is 32 hex digits, or an address with exactly one `@` and something
/// that is not whitespace on each side of it. (Case does not matter: the rule lower-cases.)
pub fn email_pattern() -> String {
    const WS: &str = r"[\x09\x0A\x0C\x0D ]"; // trimmed around a line
    const ANY: &str = r"[\x00-?A-\x7F]"; // ASCII but `@`
    const SOLID: &str = r"[\x00-\x08\x0B\x0E-\x1F!-?A-\x7F]"; // ... and not whitespace
    const UNQUOTE: &str = r"[\x00-\x08\x0B\x0E-\x1F!#-?A-\x7F]"; // ... and not `"`
    let hex = format!("[0-9A-Fa-f]{{{}}}", EmailHash::hex_len());
    // Unquoted: an address whose first or last solid character is not a quote (one with quotes
    // at both ends is read as quoted).
    let bare = format!("{UNQUOTE}{ANY}*@{ANY}*{SOLID}|{SOLID}{ANY}*@{ANY}*{UNQUOTE}");
    // Quoted: whatever the quotes hold, trimmed, is a hash or an address.
    let inner = format!("{ANY}*{SOLID}{ANY}*@{ANY}*{SOLID}{ANY}*");
    format!("^(?:{WS}*(?:{hex}|{bare}){WS}*|{WS}*\"{WS}*(?:{hex}|{inner}){WS}*\"{WS}*)$")
}

/// Whether the API takes `email` as sent (its hash aside): [`email_pattern`]'s length and
/// alphabet. What is left of the pattern is [`hash_email`].
fn sendable_email(email: &str) -> bool {
    email.is_ascii() && email.len() <= MAX_EMAIL_BYTES
}

/// The `email` of an [`EraseRequest`]: [`email_pattern`], at most [`MAX_EMAIL_BYTES`].
fn email_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(email_pattern()))
        .max_length(Some(MAX_EMAIL_BYTES))
        .description(Some(
            "The email as an advertiser lists it (one line of a list: either case, whitespace and one pair of \
             quotes around it allowed; or the hash itself in hex), ASCII, at most 254 characters; hashed by the \
             ingestion rule. Never logged, stored or returned. A line in any other form: send its `email_hash`",
        ))
        .examples(["jane.doe@example.com"])
}

/// Body of [`ERASE`](crate::routes::ERASE): whom to erase, as exactly one of `email` or
/// `email_hash` (`{"email": "..."}` or `{"email_hash": "..."}`, no other field). Prefer the hash
/// ([`hash_email`] computes it as ingestion does): then the email never leaves the caller.
///
/// On the wire an object with one of two fields; in Rust the one that was sent. Its `Debug`
/// does not show an email.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "EraseBody", into = "EraseBody")]
pub enum EraseRequest {
    /// The email (or a list line of 32 hex digits) as an advertiser lists it; the server hashes
    /// it and forgets it.
    Email(String),
    /// The email's hash.
    EmailHash(EmailHash),
}

impl EraseRequest {
    /// The hash to erase: the given one, or the email's by the ingestion rule ([`hash_email`])
    /// if the API takes it as sent ([`email_pattern`]: ASCII, at most 254 characters).
    pub fn email_hash(&self) -> Result<EmailHash, InvalidRequest> {
        match self {
            EraseRequest::EmailHash(hash) => Ok(*hash),
            EraseRequest::Email(email) => {
                let hash = hash_email(email)?;
                sendable_email(email).then_some(hash).ok_or(InvalidRequest::EmailForm)
            }
        }
    }
}

impl std::fmt::Debug for EraseRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EraseRequest::Email(_) => f.write_str("EraseRequest::Email(<not shown>)"),
            EraseRequest::EmailHash(hash) => write!(f, "EraseRequest::EmailHash({hash})"),
        }
    }
}

impl Validate for EraseRequest {
    fn validate(&self) -> Result<(), InvalidRequest> {
        self.email_hash().map(drop)
    }
}

/// [`EraseRequest`] as sent: both fields optional, neither may be `null`, no other field.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EraseBody {
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    email_hash: Option<EmailHash>,
}

/// A field that may be left out but, when present, is a `T` (not `null`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

impl TryFrom<EraseBody> for EraseRequest {
    type Error = InvalidRequest;
    fn try_from(body: EraseBody) -> Result<Self, InvalidRequest> {
        match (body.email, body.email_hash) {
            (Some(email), None) => Ok(EraseRequest::Email(email)),
            (None, Some(hash)) => Ok(EraseRequest::EmailHash(hash)),
            (both, _) => Err(InvalidRequest::EraseTarget(both.is_some())),
        }
    }
}

impl From<EraseRequest> for EraseBody {
    fn from(request: EraseRequest) -> Self {
        match request {
            EraseRequest::Email(email) => EraseBody { email: Some(email), email_hash: None },
            EraseRequest::EmailHash(hash) => EraseBody { email: None, email_hash: Some(hash) },
        }
    }
}

/// `oneOf` two objects, each with its one required field and nothing else: a body the document
/// admits names exactly one, as the server requires.
impl utoipa::PartialSchema for EraseRequest {
    fn schema() -> RefOr<Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, OneOfBuilder};
        use utoipa::openapi::Ref;
        let only = |name: &str, schema: RefOr<Schema>, description: &str| {
            ObjectBuilder::new()
                .property(name, schema)
                .required(name)
                .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)))
                .description(Some(description))
        };
        OneOfBuilder::new()
            .item(only("email", email_schema().into(), "By email: the server hashes it as ingestion does"))
            .item(only(
                "email_hash",
                Ref::from_schema_name(<EmailHash as utoipa::ToSchema>::name()).into(),
                "By hash (preferred: the email never leaves the caller)",
            ))
            .description(Some("Whom to erase: exactly one of `email` or `email_hash`"))
            .into()
    }
}

impl utoipa::ToSchema for EraseRequest {
    fn name() -> std::borrow::Cow<'static, str> {
        "EraseRequest".into()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((<EmailHash as utoipa::ToSchema>::name().into(), <EmailHash as utoipa::PartialSchema>::schema()));
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
    fn lifespans() {
        let parse = |s: &str| serde_json::from_str::<SetLifespan>(s);
        assert_eq!(parse(r#"{"lifespan_secs": 86400}"#).unwrap(), SetLifespan { lifespan_secs: Some(86_400) });
        assert_eq!(parse(r#"{"lifespan_secs": 86400.0}"#).unwrap(), SetLifespan { lifespan_secs: Some(86_400) });
        assert_eq!(parse(r#"{"lifespan_secs": null}"#).unwrap(), SetLifespan { lifespan_secs: None });
        assert!(parse("{}").is_err(), "the field is required: unlimited must be asked for");
        assert!(parse(r#"{"lifespan_secs": 1.5}"#).is_err());
        assert!(parse(r#"{"lifespan_secs": 5, "x": 1}"#).is_err());
        for ok in [Some(1), Some(*LIFESPAN_SECS.end()), None] {
            assert_eq!(SetLifespan { lifespan_secs: ok }.validate(), Ok(()));
        }
        for bad in [0, LIFESPAN_SECS.end() + 1] {
            assert_eq!(SetLifespan { lifespan_secs: Some(bad) }.validate(), Err(InvalidRequest::Lifespan));
        }
        // A negative number is refused too (it deserializes to 0).
        assert_eq!(parse(r#"{"lifespan_secs": -5}"#).unwrap().validate(), Err(InvalidRequest::Lifespan));
    }

    #[test]
    fn an_erasure_names_exactly_one_of_email_or_hash() {
        const H: &str = "c160f8cc69a4f0bf2b0362752353d060";
        let parse = |s: &str| serde_json::from_str::<EraseRequest>(s);
        let hash = EmailHash::from_hex(H.as_bytes()).unwrap();
        assert_eq!(parse(&format!(r#"{{"email_hash": "{H}"}}"#)).unwrap(), EraseRequest::EmailHash(hash));
        assert_eq!(parse(r#"{"email": "Jane@Example.com"}"#).unwrap(), EraseRequest::Email("Jane@Example.com".into()));
        for (body, says) in [
            ("{}", "not neither"),
            (&format!(r#"{{"email": "a@b", "email_hash": "{H}"}}"#), "not both"),
            (r#"{"email": null}"#, "invalid type: null"),
            (r#"{"email_hash": null}"#, "invalid type: null"),
            (&format!(r#"{{"email_hash": "{H}", "advertiser_id": "acme"}}"#), "unknown field `advertiser_id`"),
            (r#"{"email_hash": "abc"}"#, "email_hash must be 32 hexadecimal digits"),
            (r#"{"email": 5}"#, "invalid type"),
            (r#"{"email": "a@b", "email": "c@d"}"#, "duplicate field `email`"),
        ] {
            let err = parse(body).unwrap_err().to_string();
            assert!(err.contains(says), "{body}: {err:?} should say {says:?}");
        }
        assert_eq!(
            InvalidRequest::EraseTarget(false).to_string(),
            "an erasure names exactly one of `email` or `email_hash`, not neither"
        );
        // Sent as the one field.
        assert_eq!(
            serde_json::to_string(&EraseRequest::EmailHash(hash)).unwrap(),
            format!(r#"{{"email_hash":"{H}"}}"#)
        );
        assert_eq!(serde_json::to_string(&EraseRequest::Email("a@b".into())).unwrap(), r#"{"email":"a@b"}"#);
    }

    #[test]
    fn an_email_is_hashed_by_the_ingestion_rule() {
        use memberlake_records::records::md5_hash;
        let jane = md5_hash(b"jane.doe@example.com");
        // As a list line: case, whitespace, quotes.
        for line in [
            "jane.doe@example.com",
            "Jane.Doe@Example.COM",
            "  \"jane.doe@example.com\"\r\n",
            "\" JANE.doe@example.com\t\"",
        ] {
            assert_eq!(hash_email(line), Ok(jane), "{line:?}");
            assert_eq!(EraseRequest::Email(line.into()).email_hash(), Ok(jane), "{line:?}");
        }
        // 32 hex digits are a hash already, as in a list.
        let hex = jane.to_hex().to_uppercase();
        assert_eq!(hash_email(&hex), Ok(jane));
        assert_eq!(EraseRequest::Email(hex).email_hash(), Ok(jane));
        assert_eq!(EraseRequest::EmailHash(jane).validate(), Ok(()));
        for (email, refused) in [
            ("jane", InvalidRequest::EmailRejected(RejectReason::MissingAt)),
            ("jane@doe@example.com", InvalidRequest::EmailRejected(RejectReason::MultipleAt)),
            ("@example.com", InvalidRequest::EmailRejected(RejectReason::EmptyLocalPart)),
            ("\"\"", InvalidRequest::EmailRejected(RejectReason::Empty)),
            (&format!("{}@example.com", "j".repeat(250)), InvalidRequest::EmailRejected(RejectReason::TooLong)),
            (&format!("{}@example.com", "j".repeat(5000)), InvalidRequest::EmailRejected(RejectReason::LineTooLong)),
            (" \t", InvalidRequest::EmailBlank),
            ("\"@example.com\"", InvalidRequest::EmailRejected(RejectReason::EmptyLocalPart)),
            ("\"jane@ \"", InvalidRequest::EmailRejected(RejectReason::EmptyDomain)),
            // Valid in a list, but not as the API takes it: the hash is sent then.
            ("jané@example.com", InvalidRequest::EmailForm),
            (&format!("{}jane.doe@example.com", " ".repeat(240)), InvalidRequest::EmailForm),
        ] {
            let request = EraseRequest::Email(email.to_owned());
            assert_eq!(request.validate(), Err(refused.clone()), "{email:?}");
            let message = refused.to_string();
            assert!(!message.contains("jane") && !message.contains("example"), "never the email: {message}");
            assert!(!format!("{request:?}").contains("jane"), "nor in Debug");
        }
        assert_eq!(
            InvalidRequest::EmailRejected(RejectReason::MissingAt).to_string(),
            "email rejected as a member list would reject it: missing_at"
        );
        // What a list holds in the middle of an address, it holds: quotes, spaces, a tab.
        for odd in ["ja\"ne@example.com", "ja ne@exa\tmple.com", "\"jane@example.com", "\"\"jane@example.com\"\""] {
            assert!(EraseRequest::Email(odd.into()).validate().is_ok(), "{odd:?}");
        }
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
        // JSON Schema's integers, as the document states them: no fractional part.
        assert_eq!(
            serde_json::from_str::<SetPriority>(r#"{"priority": -432.0}"#).unwrap(),
            SetPriority { priority: -432 }
        );
        for bad in ["5.5", "1e300", "2147483648", "-2147483649", "true", "null"] {
            assert!(serde_json::from_str::<SetPriority>(&format!(r#"{{"priority": {bad}}}"#)).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<SetPriority>(r#"{}"#).is_err());
        assert_eq!(serde_json::from_str::<SetWeight>(r#"{"weight": 2}"#).unwrap(), SetWeight { weight: 2.0 });
        let err = serde_json::from_str::<SetWeight>(r#"{"weight": 2, "advertiser": "x"}"#).unwrap_err().to_string();
        assert!(err.contains("unknown field `advertiser`"), "{err}");
    }

    #[test]
    fn a_rollback_names_a_version_or_none() {
        for (wire, to) in [
            ("{}", None),
            (r#"{"to": null}"#, None),
            (r#"{"to": 41}"#, Some(FileId(41))),
            (r#"{"to": 41.0}"#, Some(FileId(41))),
            // Read exactly (serde_json's `float_roundtrip`), not one unit in the last place off.
            (r#"{"to": 2251799813685247.0}"#, Some(FileId(2_251_799_813_685_247))),
        ] {
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
