//! The operator API (`/admin/v1`), behind its own bearer tokens (`MEMBERLAKE_ADMIN_TOKENS`,
//! `name:secret` items name the actor in the audit log):
//!
//! | route | what |
//! |---|---|
//! | `GET  /admin/v1/files?state=&advertiser_id=&limit=` | files, newest first |
//! | `GET  /admin/v1/files/{id}` | one file with progress, throughput, ETA, errors, rejection samples |
//! | `POST /admin/v1/files/{id}/priority` `{"priority": n}` | set operator priority |
//! | `POST /admin/v1/files/{id}/pause` · `/resume` · `/cancel` · `/retry` | lifecycle |
//! | `PUT  /admin/v1/advertisers/{id}/weight` `{"weight": w}` | advertiser weight |
//! | `GET  /admin/v1/actions?limit=` | the audit log |
//! | `GET  /admin/v1/overview` | queue per lane, files in flight, throughput, failures |

use std::collections::HashMap;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use memberlake::catalog::{Catalog, CatalogError, FileFilter};
use memberlake::catalog::{FileState, PriorityKnobs};
use memberlake::config::LaneArgs;
use memberlake::http::{ApiError, Tokens};
use memberlake::ids::{AdvertiserId, FileId};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Clone)]
pub struct AdminState {
    pub catalog: Catalog,
    pub tokens: Tokens,
    pub knobs: PriorityKnobs,
    pub lanes: LaneArgs,
}

/// Who is calling, as the token check established it.
#[derive(Clone, Debug)]
pub struct Actor(pub String);

pub fn router(state: AdminState, limit: Option<memberlake::http::RateLimit>) -> Router {
    let mut api = Router::new()
        .route("/admin/v1/files", get(list_files))
        .route("/admin/v1/files/{id}", get(file_detail))
        .route("/admin/v1/files/{id}/priority", post(set_priority))
        .route("/admin/v1/files/{id}/pause", post(pause))
        .route("/admin/v1/files/{id}/resume", post(resume))
        .route("/admin/v1/files/{id}/cancel", post(cancel))
        .route("/admin/v1/files/{id}/retry", post(retry))
        .route("/admin/v1/advertisers/{id}/weight", put(set_weight))
        .route("/admin/v1/actions", get(actions))
        .route("/admin/v1/overview", get(overview))
        .route("/", get(crate::status_page::page))
        .route("/status", get(crate::status_page::page))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_operator));
    if let Some(limit) = limit {
        api = api.route_layer(axum::middleware::from_fn_with_state(limit, memberlake::http::rate_limit));
    }
    api.with_state(state).layer(axum::extract::DefaultBodyLimit::max(16 * 1024))
}

/// Checks the operator token (header, or `?token=` for the status page in a browser).
async fn require_operator(State(state): State<AdminState>, mut request: Request, next: Next) -> Response {
    let header_value = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let from_query = request.uri().query().and_then(|q| url_param(q, "token")).map(|t| format!("Bearer {t}"));
    match state.tokens.authorize(header_value.or(from_query).as_deref()) {
        Ok(actor) => {
            request.extensions_mut().insert(Actor(actor));
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

fn url_param(query: &str, name: &str) -> Option<String> {
    query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v.to_owned())
}

fn map_err(e: CatalogError) -> ApiError {
    match e {
        CatalogError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
        CatalogError::Conflict(msg) => ApiError::conflict(msg),
        CatalogError::Invalid(msg) => ApiError::bad_request(msg),
        CatalogError::Unavailable(e) => ApiError::unavailable(format!("catalog unavailable: {e}")),
        other => {
            tracing::error!(error = %other, "admin request failed");
            ApiError::internal("internal error; see the meta-service log")
        }
    }
}

fn file_id(raw: &str) -> Result<FileId, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .map(FileId)
        .ok_or_else(|| ApiError::bad_request(format!("file id must be a positive integer, got {raw:?}")))
}

/// `limit=` of a listing: 1..=1000, default 100.
fn parse_limit(params: &HashMap<String, String>) -> Result<i64, ApiError> {
    match params.get("limit") {
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::bad_request("limit must be 1..=1000")),
        None => Ok(100),
    }
}

async fn list_files(
    State(state): State<AdminState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if let Some(k) = params.keys().find(|k| !["state", "advertiser_id", "limit"].contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!("unknown query parameter {k:?}")));
    }
    let state_filter = params
        .get("state")
        .map(|s| s.parse::<FileState>().map_err(|e| ApiError::bad_request(e.to_string())))
        .transpose()?;
    let advertiser_id = params
        .get("advertiser_id")
        .map(|a| AdvertiserId::parse(a).map_err(|e| ApiError::bad_request(e.to_string())))
        .transpose()?;
    let limit = parse_limit(&params)?;
    let files =
        state.catalog.list_files(&FileFilter { state: state_filter, advertiser_id, limit }).await.map_err(map_err)?;
    Ok(Json(json!({ "files": files })))
}

async fn file_detail(State(state): State<AdminState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = file_id(&id)?;
    let detail = state.catalog.file_detail(id, &state.knobs).await.map_err(map_err)?;
    let detail = detail.ok_or_else(|| ApiError::not_found(format!("file {id} not found")))?;
    Ok(Json(serde_json::to_value(detail).map_err(|e| ApiError::internal(e.to_string()))?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriorityBody {
    priority: i32,
}

async fn set_priority(
    State(state): State<AdminState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: Result<Json<PriorityBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = file_id(&id)?;
    let Json(body) = body.map_err(|e| ApiError::from_rejection(e.status(), e.body_text()))?;
    if !(-1_000_000..=1_000_000).contains(&body.priority) {
        return Err(ApiError::bad_request("priority must be between -1000000 and 1000000"));
    }
    let file = state.catalog.set_priority(&actor.0, id, body.priority).await.map_err(map_err)?;
    tracing::info!(actor = %actor.0, file_id = id.0, priority = body.priority, "operator set priority");
    Ok(Json(json!({ "file": file })))
}

async fn pause(
    State(s): State<AdminState>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let file = s.catalog.set_paused(&a.0, file_id(&id)?, true).await.map_err(map_err)?;
    tracing::info!(actor = %a.0, file_id = file.file_id.0, "operator paused file");
    Ok(Json(json!({ "file": file })))
}

async fn resume(
    State(s): State<AdminState>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let file = s.catalog.set_paused(&a.0, file_id(&id)?, false).await.map_err(map_err)?;
    tracing::info!(actor = %a.0, file_id = file.file_id.0, "operator resumed file");
    Ok(Json(json!({ "file": file })))
}

async fn cancel(
    State(s): State<AdminState>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let file = s.catalog.cancel_file(&a.0, file_id(&id)?).await.map_err(map_err)?;
    tracing::info!(actor = %a.0, file_id = file.file_id.0, "operator cancelled file");
    Ok(Json(json!({ "file": file })))
}

async fn retry(
    State(s): State<AdminState>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (file, ranges) = s.catalog.retry_file(&a.0, file_id(&id)?).await.map_err(map_err)?;
    tracing::info!(actor = %a.0, file_id = file.file_id.0, ranges, "operator retried failed ranges");
    Ok(Json(json!({ "file": file, "ranges_requeued": ranges })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightBody {
    weight: f64,
}

async fn set_weight(
    State(s): State<AdminState>,
    Extension(a): Extension<Actor>,
    Path(advertiser): Path<String>,
    body: Result<Json<WeightBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let advertiser = AdvertiserId::parse(&advertiser).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let Json(body) = body.map_err(|e| ApiError::from_rejection(e.status(), e.body_text()))?;
    if !(body.weight.is_finite() && body.weight > 0.0 && body.weight <= 1e6) {
        return Err(ApiError::bad_request("weight must be a number in (0, 1000000]"));
    }
    s.catalog.set_weight(&a.0, &advertiser, body.weight).await.map_err(map_err)?;
    tracing::info!(actor = %a.0, %advertiser, weight = body.weight, "operator set advertiser weight");
    Ok(Json(json!({ "advertiser_id": advertiser, "weight": body.weight })))
}

async fn actions(
    State(s): State<AdminState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = parse_limit(&params)?;
    let actions = s.catalog.operator_actions(limit).await.map_err(map_err)?;
    Ok(Json(json!({ "actions": actions })))
}

async fn overview(State(s): State<AdminState>) -> Result<Json<Value>, ApiError> {
    let o = s.catalog.overview(s.lanes.express_max_file_size, s.lanes.urgent_priority, 15).await.map_err(map_err)?;
    Ok(Json(serde_json::to_value(o).map_err(|e| ApiError::internal(e.to_string()))?))
}
