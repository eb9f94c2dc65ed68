//! The matcher's HTTP API, versioned under `/v1`:
//! - `GET /v1/match?advertiser_id=A&email_hash=H` → `{"advertiser_id","email_hash","member"}`
//! - `POST /v1/suppress` `{"email_hash","advertiser_ids":[..]}` → `{"email_hash","members":[..]}`
//!   (one partition read whatever the number of advertisers)
//!
//! Bad input → 400 with a JSON error; missing/invalid token → 401; over the caller's rate limit →
//! 429; store unavailable → 503 with `Retry-After`, never a "not a member". That holds for every
//! store error, whatever its [`memberlake::error::ErrorClass`]: a permanent one (a dropped table,
//! revoked credentials) is the operator's to fix, and the client's answer is still "ask again
//! later". Tokens, rate limits, overload (503) and timeouts (503) are the API surface's layers
//! (`memberlake::http::surface`), added by `run`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap};
use axum::routing::{get, post};
use axum::{Json, Router};
use memberlake::http::surface::require_caller;
use memberlake::http::ApiError;
use memberlake::ids::{AdvertiserId, EmailHash};
pub use memberlake_records::requests::MAX_SUPPRESS_ADVERTISERS;
use memberlake_records::requests::{parse_match_query, parse_suppress_body};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::ArrayBuilder;
use utoipa::openapi::Ref;
use utoipa::ToSchema;

use crate::active::{ActiveVersions, FilterTally, Snapshot};
use crate::lookup::Memberships;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 128 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub active: ActiveVersions,
    pub memberships: Memberships,
}

/// Query of `GET /v1/match`. The schemas of both values are their parsers' rules
/// (`memberlake_records::openapi`).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the query; the handler parses it strictly by hand
pub struct MatchParams {
    /// The advertiser whose active list to ask.
    #[param(example = "acme")]
    advertiser_id: AdvertiserId,
    /// The email's hash, either case.
    #[param(example = "c160f8cc69a4f0bf2b0362752353d060")]
    email_hash: EmailHash,
}

#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct MatchResponse {
    #[schema(value_type = AdvertiserId)]
    pub advertiser_id: String,
    /// Lower-case hex.
    pub email_hash: EmailHash,
    /// Whether the advertiser's active list contains this email hash. `false` also when the
    /// advertiser has no list yet.
    pub member: bool,
}

/// Body of `POST /v1/suppress`: both fields, no other (the grammar `parse_suppress_body`
/// enforces).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct SuppressRequest {
    pub email_hash: EmailHash,
    #[schema(schema_with = advertiser_ids_schema)]
    pub advertiser_ids: Vec<AdvertiserId>,
}

/// Advertiser ids, at most [`MAX_SUPPRESS_ADVERTISERS`] (none is a valid, empty question).
fn advertiser_ids_schema() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(Ref::from_schema_name(AdvertiserId::name()))
        .max_items(Some(MAX_SUPPRESS_ADVERTISERS))
        .description(Some(format!(
            "The candidate advertisers, at most {MAX_SUPPRESS_ADVERTISERS}; duplicates are answered once"
        )))
        .examples([serde_json::json!(["acme", "globex"])])
}

#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct SuppressResponse {
    pub email_hash: EmailHash,
    /// The requested advertisers whose active list contains the hash, in request order.
    #[schema(value_type = Vec<AdvertiserId>, example = json!(["globex"]))]
    pub members: Vec<String>,
}

/// Every error: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// `bad_request`, `unauthorized`, `payload_too_large`, `rate_limited` (429), `unavailable`
    /// (the store), `overloaded` or `timeout` (503s).
    #[schema(example = "bad_request")]
    code: String,
    #[schema(example = "email_hash must be 32 hexadecimal digits")]
    message: String,
}

/// The OpenAPI document, generated from the handlers and types above.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "memberlake matcher-api", description = "Is this email hash a member of these advertisers' active lists?"),
    paths(match_one, suppress),
    components(schemas(
        MatchResponse, SuppressRequest, SuppressResponse, ErrorBody, ErrorDetail, AdvertiserId, EmailHash
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// The bearer scheme, and the headers of the answers every route may give: `Retry-After` on
/// a 429 or 503, `WWW-Authenticate` on a 401 (`memberlake::http::ApiError`).
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::header::Header;
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        use utoipa::openapi::RefOr;
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        let mut retry_after = Header::new(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)));
        retry_after.description = Some("Seconds to wait before retrying".into());
        let mut challenge = Header::default();
        challenge.description = Some("`Bearer`".into());
        for item in openapi.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.post].into_iter().flatten() {
                for (status, response) in op.responses.responses.iter_mut() {
                    let RefOr::T(response) = response else { continue };
                    match status.as_str() {
                        "429" | "503" => response.headers.insert("Retry-After".into(), retry_after.clone()),
                        "401" => response.headers.insert("WWW-Authenticate".into(), challenge.clone()),
                        _ => None,
                    };
                }
            }
        }
    }
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(<ApiDoc as utoipa::OpenApi>::openapi())
}

/// The API's routes: `/v1/match` and `/v1/suppress` for callers with a token, the document
/// open. The caller's identity, rate limit, overload and timeout come from the surface's layers.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/match", get(match_one))
        .route("/v1/suppress", post(suppress))
        .route_layer(axum::middleware::from_fn(require_caller))
        .with_state(state)
        .route("/v1/openapi.json", get(openapi))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
}

fn snapshot(state: &AppState) -> Result<Snapshot, ApiError> {
    state.active.snapshot().ok_or_else(|| ApiError::unavailable("active list versions not loaded yet"))
}

/// Whether one advertiser's active list contains the email hash.
#[utoipa::path(
    get,
    path = "/v1/match",
    params(MatchParams),
    responses(
        (status = 200, description = "Answer from the active list", body = MatchResponse),
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 429, description = "Over the caller's rate limit; retry after Retry-After", body = ErrorBody),
        (status = 503, description = "Store unavailable, replica overloaded or request timed out; retry (Retry-After). Never a false `member: false`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn match_one(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Json<MatchResponse>, ApiError> {
    let (advertiser, hash) =
        parse_match_query(query.as_deref().unwrap_or("")).map_err(|e| ApiError::bad_request(e.0))?;
    let active = snapshot(&state)?;
    let mut tally = FilterTally::default();
    let member = match active.list(advertiser.as_str(), &hash, &mut tally) {
        // No list ingested for this advertiser (or it expired, the hash is erased, or the
        // version's filter rules it out): not a member, without a store read.
        None => Ok(false),
        Some(av) => {
            let read = state.memberships.partition(hash, av.observed_at, av.legacy).await;
            let answer = read
                .map_err(|e| ApiError::unavailable(format!("membership store unavailable: {e}")))
                .and_then(|partition| partition.contains(advertiser.as_str(), av).ok_or_else(stale_partition));
            tally.false_positives += u64::from(av.filter.is_some() && matches!(answer, Ok(false)));
            answer
        }
    };
    // Counted whatever the store says: the filter was probed either way.
    tally.record();
    let member = member?;
    Ok(Json(MatchResponse { advertiser_id: advertiser.to_string(), email_hash: hash, member }))
}

/// Which of these advertisers' offers to suppress for this email hash: one store read whatever
/// the number of advertisers.
#[utoipa::path(
    post,
    path = "/v1/suppress",
    request_body = SuppressRequest,
    responses(
        (status = 200, description = "The advertisers whose active list contains the hash", body = SuppressResponse),
        (status = 400, description = "Invalid body (or more than 1,000 advertiser ids)", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 413, description = "Body larger than MAX_BODY_BYTES (128 KiB)", body = ErrorBody),
        (status = 429, description = "Over the caller's rate limit; retry after Retry-After", body = ErrorBody),
        (status = 503, description = "Store unavailable, replica overloaded or request timed out; retry (Retry-After)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn suppress(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SuppressResponse>, ApiError> {
    let body = body.map_err(|e| ApiError::from_rejection(e.status(), e.body_text()))?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")));
    if !json {
        return Err(ApiError::bad_request("expected request with `Content-Type: application/json`"));
    }
    let (hash, advertisers) = parse_suppress_body(&body).map_err(|e| ApiError::bad_request(e.0))?;
    let active = snapshot(&state)?;
    let mut tally = FilterTally::default();
    let candidates: Vec<_> =
        advertisers.iter().filter_map(|a| active.list(a.as_str(), &hash, &mut tally).map(|av| (a, av))).collect();
    let members = match candidates.iter().map(|(_, av)| av.observed_at).max() {
        // No list may hold the hash (none asked has one, or their filters rule it out): no read.
        None => Ok(Vec::new()),
        Some(needed_since) => {
            let with_legacy = candidates.iter().any(|(_, av)| av.legacy);
            let read = state.memberships.partition(hash, needed_since, with_legacy).await;
            read.map_err(|e| ApiError::unavailable(format!("membership store unavailable: {e}"))).and_then(
                |partition| {
                    let mut members = Vec::new();
                    for (a, av) in &candidates {
                        if partition.contains(a.as_str(), av).ok_or_else(stale_partition)? {
                            members.push(a.to_string());
                        } else if av.filter.is_some() {
                            tally.false_positives += 1;
                        }
                    }
                    Ok(members)
                },
            )
        }
    };
    // Counted whatever the store says: the filters were probed either way.
    tally.record();
    let members = members?;
    Ok(Json(SuppressResponse { email_hash: hash, members }))
}

/// A partition read without the legacy rows it was asked for: never expected (the cache
/// re-reads such an entry), answered as unavailable rather than guessed.
fn stale_partition() -> ApiError {
    ApiError::unavailable("membership partition read without its legacy rows; retry")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;

    fn doc() -> Value {
        serde_json::to_value(<ApiDoc as utoipa::OpenApi>::openapi()).unwrap()
    }

    /// `schema` with a `$ref` to a component resolved.
    fn resolve(doc: &Value, schema: &Value) -> Value {
        match schema["$ref"].as_str() {
            Some(r) => doc["components"]["schemas"][r.trim_start_matches("#/components/schemas/")].clone(),
            None => schema.clone(),
        }
    }

    /// Whether a string schema admits `s`, by the facets the document uses.
    fn admits(schema: &Value, s: &str) -> bool {
        let len = s.chars().count() as u64;
        regex::Regex::new(schema["pattern"].as_str().expect("a pattern")).unwrap().is_match(s)
            && schema["minLength"].as_u64().is_none_or(|min| len >= min)
            && schema["maxLength"].as_u64().is_none_or(|max| len <= max)
    }

    fn query_param(doc: &Value, name: &str) -> Value {
        let params = doc["paths"]["/v1/match"]["get"]["parameters"].as_array().unwrap();
        let param = params.iter().find(|p| p["name"] == name).unwrap();
        assert_eq!((&param["in"], &param["required"]), (&json!("query"), &json!(true)), "{name}");
        resolve(doc, &param["schema"])
    }

    const H: &str = "c160f8cc69a4f0bf2b0362752353d060";

    fn query(advertiser: &str, hash: &str) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("advertiser_id", advertiser)
            .append_pair("email_hash", hash)
            .finish()
    }

    #[test]
    fn openapi_document_describes_both_routes() {
        let doc = doc();
        assert!(doc["paths"]["/v1/match"]["get"].is_object());
        assert!(doc["paths"]["/v1/suppress"]["post"].is_object());
        assert!(doc["components"]["schemas"]["MatchResponse"].is_object());
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
        let retry = &doc["paths"]["/v1/match"]["get"]["responses"]["503"]["headers"]["Retry-After"];
        assert!(retry.is_object(), "a 503 says when to retry");
    }

    /// The suppress body as documented: both fields, nothing else, at most
    /// [`MAX_SUPPRESS_ADVERTISERS`] ids of the advertiser id schema.
    #[test]
    fn the_suppress_body_states_the_grammar() {
        let doc = doc();
        let body = &doc["paths"]["/v1/suppress"]["post"]["requestBody"];
        assert_eq!(body["required"], true);
        let schema = resolve(&doc, &body["content"]["application/json"]["schema"]);
        assert_eq!(schema["additionalProperties"], false, "unknown fields are refused");
        assert_eq!(schema["required"], json!(["email_hash", "advertiser_ids"]));
        let ids = &schema["properties"]["advertiser_ids"];
        assert_eq!(ids["maxItems"], MAX_SUPPRESS_ADVERTISERS);
        assert_eq!(resolve(&doc, &ids["items"]), query_param(&doc, "advertiser_id"));
        assert_eq!(resolve(&doc, &schema["properties"]["email_hash"]), query_param(&doc, "email_hash"));
    }

    proptest! {
        /// A value the document's `advertiser_id` admits is one the server parses, and the other
        /// way round.
        #[test]
        fn the_documented_advertiser_id_is_the_parsed_one(
            s in prop_oneof![proptest::string::string_regex("[A-Za-z0-9_-]{0,70}").unwrap(), any::<String>()]
        ) {
            let schema = query_param(&doc(), "advertiser_id");
            let parsed = parse_match_query(&query(&s, H));
            prop_assert_eq!(admits(&schema, &s), parsed.is_ok(), "{:?}: {:?}", s, parsed);
        }

        #[test]
        fn the_documented_email_hash_is_the_parsed_one(
            s in prop_oneof![proptest::string::string_regex("[0-9A-Fa-f]{30,34}").unwrap(), any::<String>()]
        ) {
            let schema = query_param(&doc(), "email_hash");
            let parsed = parse_match_query(&query("acme", &s));
            prop_assert_eq!(admits(&schema, &s), parsed.is_ok(), "{:?}: {:?}", s, parsed);
        }

        /// The array bound: at most `maxItems` advertisers, and none is a valid question.
        #[test]
        fn the_documented_bound_of_advertiser_ids_is_the_parsed_one(
            n in prop_oneof![0..3usize, MAX_SUPPRESS_ADVERTISERS - 2..MAX_SUPPRESS_ADVERTISERS + 3]
        ) {
            let doc = doc();
            let max = doc["components"]["schemas"]["SuppressRequest"]["properties"]["advertiser_ids"]["maxItems"]
                .as_u64().unwrap() as usize;
            let ids: Vec<String> = (0..n).map(|i| format!("a{i}")).collect();
            let body = json!({"email_hash": H, "advertiser_ids": ids}).to_string();
            prop_assert_eq!(n <= max, parse_suppress_body(body.as_bytes()).is_ok(), "{} ids", n);
        }
    }
}
