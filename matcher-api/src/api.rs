//! The matcher's HTTP API, versioned under `/v1`:
//! - `GET /v1/match?advertiser_id=A&email_hash=H` → `{"advertiser_id","email_hash","member"}`
//! - `POST /v1/suppress` `{"email_hash","advertiser_ids":[..]}` → `{"email_hash","members":[..]}`
//!   (one partition read whatever the number of advertisers)
//!
//! Bad input → 400 with a JSON error; missing/invalid token → 401; store unavailable → 503 with
//! `Retry-After`, never a "not a member".

use std::collections::HashSet;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use memberlake::http::{ApiError, Tokens};
use memberlake::ids::{AdvertiserId, EmailHash};
use serde::{Deserialize, Serialize};

use crate::active::{ActiveVersions, Snapshot};
use crate::lookup::Memberships;

/// Most advertisers one `/v1/suppress` call may ask about.
pub const MAX_SUPPRESS_ADVERTISERS: usize = 1000;
/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 128 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub active: ActiveVersions,
    pub memberships: Memberships,
    pub tokens: Tokens,
}

/// Query of `GET /v1/match`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the query; the handler parses it strictly by hand
pub struct MatchParams {
    /// `[A-Za-z0-9_-]{1,64}`
    #[param(example = "acme")]
    advertiser_id: String,
    /// MD5 of the normalized email: 32 hex digits, either case.
    #[param(example = "c160f8cc69a4f0bf2b0362752353d060")]
    email_hash: String,
}

#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct MatchResponse {
    #[schema(example = "acme")]
    pub advertiser_id: String,
    /// Lower-case hex.
    #[schema(value_type = String, example = "c160f8cc69a4f0bf2b0362752353d060")]
    pub email_hash: EmailHash,
    /// Whether the advertiser's active list contains this email hash. `false` also when the
    /// advertiser has no list yet.
    pub member: bool,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuppressRequest {
    #[schema(example = "c160f8cc69a4f0bf2b0362752353d060")]
    pub email_hash: String,
    /// At most 1,000 advertiser ids; duplicates are answered once.
    #[schema(example = json!(["acme", "globex"]))]
    pub advertiser_ids: Vec<String>,
}

#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct SuppressResponse {
    #[schema(value_type = String, example = "c160f8cc69a4f0bf2b0362752353d060")]
    pub email_hash: EmailHash,
    /// The requested advertisers whose active list contains the hash, in request order.
    #[schema(example = json!(["globex"]))]
    pub members: Vec<String>,
}

/// Every error: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// `bad_request`, `unauthorized` or `unavailable`.
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
    components(schemas(MatchResponse, SuppressRequest, SuppressResponse, ErrorBody, ErrorDetail)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    }
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(<ApiDoc as utoipa::OpenApi>::openapi())
}

pub fn router(state: AppState, limit: Option<memberlake::http::RateLimit>) -> Router {
    let mut api = Router::new()
        .route("/v1/match", get(match_one))
        .route("/v1/suppress", post(suppress))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_token));
    if let Some(limit) = limit {
        api = api.route_layer(axum::middleware::from_fn_with_state(limit, memberlake::http::rate_limit));
    }
    api
        .with_state(state)
        .route("/v1/openapi.json", get(openapi))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
}

fn parse_hash(raw: &str) -> Result<EmailHash, ApiError> {
    EmailHash::from_hex(raw.as_bytes()).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn parse_advertiser(raw: &str) -> Result<AdvertiserId, ApiError> {
    AdvertiserId::parse(raw).map_err(|e| ApiError::bad_request(format!("{e} (got {} bytes)", raw.len())))
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
        (status = 503, description = "Store unavailable; retry (Retry-After). Never a false `member: false`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn match_one(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Json<MatchResponse>, ApiError> {
    let (advertiser, hash) = parse_match_query(query.as_deref().unwrap_or(""))?;
    let active = snapshot(&state)?;
    let member = match active.get(advertiser.as_str()) {
        // No list ingested for this advertiser: nobody is a member.
        None => false,
        Some(av) => {
            let partition = state
                .memberships
                .partition(hash, av.observed_at)
                .await
                .map_err(|e| ApiError::unavailable(format!("membership store unavailable: {e}")))?;
            partition.contains(advertiser.as_str(), av.version)
        }
    };
    Ok(Json(MatchResponse { advertiser_id: advertiser.to_string(), email_hash: hash, member }))
}

/// Parses `advertiser_id=A&email_hash=H` strictly: both required, nothing else allowed.
pub fn parse_match_query(query: &str) -> Result<(AdvertiserId, EmailHash), ApiError> {
    let mut advertiser = None;
    let mut hash = None;
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let slot = match key.as_ref() {
            "advertiser_id" => &mut advertiser,
            "email_hash" => &mut hash,
            other => return Err(ApiError::bad_request(format!("unknown query parameter {:?}", truncate(other, 64)))),
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(ApiError::bad_request(format!("query parameter {key} given twice")));
        }
    }
    let advertiser = advertiser.ok_or_else(|| ApiError::bad_request("missing query parameter advertiser_id"))?;
    let hash = hash.ok_or_else(|| ApiError::bad_request("missing query parameter email_hash"))?;
    Ok((parse_advertiser(&advertiser)?, parse_hash(&hash)?))
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Parses and validates a `/v1/suppress` body: the hash, and the advertisers deduplicated in
/// request order.
pub fn parse_suppress_body(body: &[u8]) -> Result<(EmailHash, Vec<AdvertiserId>), ApiError> {
    let request: SuppressRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let hash = parse_hash(&request.email_hash)?;
    if request.advertiser_ids.len() > MAX_SUPPRESS_ADVERTISERS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_SUPPRESS_ADVERTISERS} advertiser_ids per call (got {})",
            request.advertiser_ids.len()
        )));
    }
    let mut seen = HashSet::with_capacity(request.advertiser_ids.len());
    let mut advertisers = Vec::with_capacity(request.advertiser_ids.len());
    for (i, raw) in request.advertiser_ids.iter().enumerate() {
        let adv = AdvertiserId::parse(raw).map_err(|e| ApiError::bad_request(format!("advertiser_ids[{i}]: {e}")))?;
        if seen.insert(adv.clone()) {
            advertisers.push(adv);
        }
    }
    Ok((hash, advertisers))
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
        (status = 413, description = "Body larger than 128 KiB", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry (Retry-After)", body = ErrorBody),
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
    let (hash, advertisers) = parse_suppress_body(&body)?;
    let active = snapshot(&state)?;
    let candidates: Vec<_> = advertisers.iter().filter_map(|a| active.get(a.as_str()).map(|av| (a, *av))).collect();
    let members = match candidates.iter().map(|(_, av)| av.observed_at).max() {
        None => Vec::new(),
        Some(needed_since) => {
            let partition = state
                .memberships
                .partition(hash, needed_since)
                .await
                .map_err(|e| ApiError::unavailable(format!("membership store unavailable: {e}")))?;
            candidates
                .iter()
                .filter(|(a, av)| partition.contains(a.as_str(), av.version))
                .map(|(a, _)| a.to_string())
                .collect()
        }
    };
    Ok(Json(SuppressResponse { email_hash: hash, members }))
}

/// Rejects requests without a configured bearer token (when tokens are configured).
async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let authorization = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match state.tokens.authorize(authorization) {
        Ok(_) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_document_describes_both_routes() {
        let doc = serde_json::to_value(<ApiDoc as utoipa::OpenApi>::openapi()).unwrap();
        assert!(doc["paths"]["/v1/match"]["get"].is_object());
        assert!(doc["paths"]["/v1/suppress"]["post"].is_object());
        assert!(doc["components"]["schemas"]["MatchResponse"].is_object());
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    }

}
