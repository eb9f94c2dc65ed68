//! The operator API (`/admin/v1`): the contract of `memberlake-admin` served over
//! `catalog::operator`. Routes, request types and views come from that crate; this module
//! decodes requests with them, calls the catalog and answers with views (mapped in
//! [`crate::views`]).
//!
//! | route | what |
//! |---|---|
//! | `GET  /admin/v1/files?state=&advertiser_id=&limit=` | files, newest first |
//! | `GET  /admin/v1/files/{id}` | one file with progress, throughput, ETA, errors, rejection samples, version report |
//! | `POST /admin/v1/files/{id}/priority` `{"priority": n}` | set operator priority |
//! | `POST /admin/v1/files/{id}/pause` · `/resume` · `/cancel` · `/retry` | lifecycle |
//! | `POST /admin/v1/files/{id}/approve` · `/reject` | decide on a held version (409 unless held) |
//! | `PUT  /admin/v1/advertisers/{id}/weight` `{"weight": w}` | advertiser weight |
//! | `PUT  /admin/v1/advertisers/{id}/lifespan` `{"lifespan_secs": s}` | how long its list keeps matching (null: unlimited) |
//! | `GET  /admin/v1/lifespans` | advertisers with a lifespan, and when their lists expire |
//! | `POST /admin/v1/erasures` `{"email_hash": h}` or `{"email": e}` | erase a person for good (202 recorded now, 200 already) |
//! | `GET  /admin/v1/erasures/{hash}` | one erasure and how far it has come |
//! | `POST /admin/v1/advertisers/{id}/rollback` `{"to": v}` (body optional) | restore version `v`, or the previous one, as a new version |
//! | `GET  /admin/v1/actions?limit=` | the audit log |
//! | `GET  /admin/v1/overview` | queue per lane, files in flight, throughput, failures |
//! | `GET  /admin/v1/openapi.json` | this API's OpenAPI document (no token needed) |
//!
//! An unknown query parameter or body field, or a value out of range, is a 400 saying which.

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{on, MethodFilter};
use axum::{Json, Router};
use memberlake::catalog::{CatalogError, FileFilter, FileRecord};
use memberlake::http::{ApiError, Caller};
use memberlake::ids::{AdvertiserId, EmailHash, FileId};
use memberlake_admin::routes::{self, Method, PathId, Route};
use memberlake_admin::FileState;
use memberlake_admin::{
    parse_file_id, ActionsResponse, EraseRequest, ErasureView, ErrorBody, FileDetailView, FileResponse, FilesResponse,
    InvalidRequest, LifespanView, LifespansResponse, LimitQuery, ListFilesQuery, Listing, OverviewView, RetryResponse,
    Rollback, RollbackResponse, SetLifespan, SetPriority, SetWeight, Validate, WeightResponse,
};
use serde::de::DeserializeOwned;

use crate::state::AdminState;
use crate::views::IntoView;

/// The API's routes, each mounted at its [`Route`] (method and path spelled once, in
/// `memberlake-admin`). The token check and limits are added by [`crate::surface`].
pub fn api() -> Router<AdminState> {
    Router::new()
        .mount(routes::FILES, list_files)
        .mount(routes::FILE, file_detail)
        .mount(routes::SET_PRIORITY, set_priority)
        .mount(routes::PAUSE, pause)
        .mount(routes::RESUME, resume)
        .mount(routes::CANCEL, cancel)
        .mount(routes::RETRY, retry)
        .mount(routes::APPROVE, approve)
        .mount(routes::REJECT, reject)
        .mount(routes::SET_WEIGHT, set_weight)
        .mount(routes::SET_LIFESPAN, set_lifespan)
        .mount(routes::LIFESPANS, lifespans)
        .mount(routes::ERASE, erase)
        .mount(routes::ERASURE, erasure)
        .mount(routes::ROLLBACK, rollback)
        .mount(routes::ACTIONS, actions)
        .mount(routes::OVERVIEW, overview)
}

/// The OpenAPI document's route, served without the operator token: it describes the API
/// and holds no data.
pub fn document() -> Router<AdminState> {
    Router::new().mount(routes::OPENAPI, openapi)
}

trait Mount {
    /// Routes `route`'s method on its path to `handler`.
    fn mount<H: Handler<T, AdminState>, T: 'static>(self, route: Route, handler: H) -> Self;
}

impl Mount for Router<AdminState> {
    fn mount<H: Handler<T, AdminState>, T: 'static>(self, route: Route, handler: H) -> Self {
        let filter = match route.method {
            Method::Get => MethodFilter::GET,
            Method::Post => MethodFilter::POST,
            Method::Put => MethodFilter::PUT,
        };
        self.route(route.template, on(filter, handler))
    }
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

fn invalid(e: InvalidRequest) -> ApiError {
    ApiError::bad_request(e.to_string())
}

/// A query string as `T`: unknown parameters and malformed values are 400s that name them.
fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query.map(|Query(q)| q).map_err(|e| ApiError::bad_request(e.body_text()))
}

/// A JSON body as `T`, checked by its [`Validate`] rules: unknown fields, wrong types and
/// out-of-range values are 400s saying which (a body over the limit stays a 413, one sent without
/// a JSON content type a 415).
///
/// The body must be a JSON *object*: serde's derived `Deserialize` also reads a struct from an
/// array of its fields in order (`[5]` as `{"priority": 5}`), which no document allows — a
/// client sending one has a bug this 400 shows it (fuzzing found it).
struct JsonBody<T>(T);

impl<T: DeserializeOwned + Validate, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let (headers, bytes) = read_body(request, state).await?;
        json_object(headers, bytes, state).await.map(Self)
    }
}

/// A request's headers and its whole body (a body over the limit is a 413).
async fn read_body<S: Send + Sync>(request: Request, state: &S) -> Result<(HeaderMap, Bytes), ApiError> {
    let headers = request.headers().clone();
    let bytes =
        Bytes::from_request(request, state).await.map_err(|e| ApiError::from_rejection(e.status(), e.body_text()))?;
    Ok((headers, bytes))
}

/// `bytes` (sent with `headers`) as [`JsonBody`] reads them.
async fn json_object<T: DeserializeOwned + Validate, S: Send + Sync>(
    headers: HeaderMap,
    bytes: Bytes,
    state: &S,
) -> Result<T, ApiError> {
    let is_object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let mut request = Request::new(Body::from(bytes));
    *request.headers_mut() = headers;
    // Content type and syntax first, so that their 415s and 400s read as axum words them.
    let Json(body) = Json::<T>::from_request(request, state)
        .await
        .map_err(|e| ApiError::from_rejection(e.status(), e.body_text()))?;
    if !is_object {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    body.validate().map_err(invalid)?;
    Ok(body)
}

/// A JSON body that may be left out: no bytes (or only whitespace) is `T::default()`; any other
/// body is read as [`JsonBody`] reads one (JSON content type, an object, no unknown field,
/// [`Validate`]d values). Not axum's `Option<Json<T>>`, which ignores a body sent without a
/// content type: a rollback's `{"to": v}` sent that way would silently restore the previous
/// version instead.
struct OptionalBody<T>(T);

impl<T: DeserializeOwned + Validate + Default, S: Send + Sync> FromRequest<S> for OptionalBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let (headers, bytes) = read_body(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        json_object(headers, bytes, state).await.map(Self)
    }
}

/// The `{id}` of a route's path as its type ([`PathId`] says which route has which), parsed
/// once for every route: an invalid id is a 400 saying what is expected.
trait FromPathId: Sized {
    fn from_path(raw: &str) -> Result<Self, ApiError>;
}

impl FromPathId for FileId {
    fn from_path(raw: &str) -> Result<Self, ApiError> {
        parse_file_id(raw).map_err(invalid)
    }
}

impl FromPathId for AdvertiserId {
    fn from_path(raw: &str) -> Result<Self, ApiError> {
        AdvertiserId::parse(raw).map_err(|e| ApiError::bad_request(e.to_string()))
    }
}

impl FromPathId for EmailHash {
    fn from_path(raw: &str) -> Result<Self, ApiError> {
        EmailHash::from_hex(raw.as_bytes()).map_err(|e| ApiError::bad_request(e.to_string()))
    }
}

/// A call on one file's, advertiser's or erasure's route: the state, the caller (as the token
/// check established it) and the id from the path, parsed.
struct Call<Id> {
    state: AdminState,
    actor: Caller,
    id: Id,
}

/// A call on a file's route ([`PathId::File`]).
type FileCall = Call<FileId>;
/// A call on an advertiser's route ([`PathId::Advertiser`]).
type AdvertiserCall = Call<AdvertiserId>;
/// A call on an erasure's route ([`PathId::EmailHash`]).
type ErasureCall = Call<EmailHash>;

impl<Id: FromPathId + Send> FromRequestParts<AdminState> for Call<Id> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AdminState) -> Result<Self, ApiError> {
        let Path(raw) =
            Path::<String>::from_request_parts(parts, state).await.map_err(|e| ApiError::bad_request(e.body_text()))?;
        let actor = parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            tracing::error!("admin route without the token check");
            ApiError::internal("internal error; see the meta-service log")
        })?;
        Ok(Self { state: state.clone(), actor, id: Id::from_path(&raw)? })
    }
}

impl FileCall {
    /// Logs an operator's action on the file (pause, resume, cancel, approve, reject) and
    /// answers with the file.
    fn changed(&self, action: &'static str, file: FileRecord) -> Json<FileResponse> {
        tracing::info!(actor = %self.actor, file_id = self.id.0, action, "operator changed a file");
        Json(FileResponse { file: file.into_view() })
    }
}

/// The `{id}` of a file's routes, for the document (added by [`OperatorAuth`]); handlers
/// parse it with [`parse_file_id`].
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct FileIdParam {
    /// File id: a positive integer.
    id: FileId,
}

/// The `{id}` of an advertiser's routes, for the document (added by [`OperatorAuth`]);
/// handlers parse it with [`AdvertiserId::parse`].
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct AdvertiserIdParam {
    /// Advertiser id: `[A-Za-z0-9_-]{1,64}`.
    id: AdvertiserId,
}

/// The `{hash}` of an erasure's route, for the document (added by [`OperatorAuth`]); handlers
/// parse it with [`EmailHash::from_hex`].
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct EmailHashParam {
    /// Email hash: the deployment's hex digits (32 for MD5, 64 for SHA-256), either case.
    hash: EmailHash,
}

/// Files, newest first.
#[utoipa::path(
    get,
    path = routes::FILES.template,
    params(ListFilesQuery),
    responses(
        (status = 200, description = "Files, newest first", body = FilesResponse),
        (status = 400, description = "Unknown parameter, unknown state, invalid advertiser id or limit", body = ErrorBody),
    )
)]
async fn list_files(
    State(state): State<AdminState>,
    q: Result<Query<ListFilesQuery>, QueryRejection>,
) -> Result<Json<FilesResponse>, ApiError> {
    let q = query(q)?;
    let filter =
        FileFilter { limit: q.limit().map_err(invalid)?.into(), state: q.state, advertiser_id: q.advertiser_id };
    let files = state.catalog.list_files(&filter).await.map_err(map_err)?;
    Ok(Json(FilesResponse { files: files.into_view() }))
}

/// One file with its progress, throughput, ETA, last errors and rejection samples.
#[utoipa::path(
    get,
    path = routes::FILE.template,
    responses(
        (status = 200, description = "The file", body = FileDetailView),
    )
)]
async fn file_detail(call: FileCall) -> Result<Json<FileDetailView>, ApiError> {
    let FileCall { state, id, .. } = call;
    let detail = state.catalog.file_detail(id, &state.knobs).await.map_err(map_err)?;
    let detail = detail.ok_or_else(|| ApiError::not_found(format!("file {id} not found")))?;
    Ok(Json(detail.into_view()))
}

/// Sets a file's operator priority (higher runs first).
#[utoipa::path(
    post,
    path = routes::SET_PRIORITY.template,
    request_body = SetPriority,
    responses(
        (status = 200, description = "The file with its new priority", body = FileResponse),
        (status = 400, description = "Invalid file id or body", body = ErrorBody),
    )
)]
async fn set_priority(
    call: FileCall,
    JsonBody(SetPriority { priority }): JsonBody<SetPriority>,
) -> Result<Json<FileResponse>, ApiError> {
    let file = call.state.catalog.set_priority(call.actor.name(), call.id, priority).await.map_err(map_err)?;
    tracing::info!(actor = %call.actor, file_id = call.id.0, priority, "operator set priority");
    Ok(Json(FileResponse { file: file.into_view() }))
}

/// Stops leasing the file's ranges (leases in flight finish).
#[utoipa::path(
    post,
    path = routes::PAUSE.template,
    responses(
        (status = 200, description = "The paused file", body = FileResponse),
        (status = 409, description = "The file is not registered or ingesting", body = ErrorBody),
    )
)]
async fn pause(call: FileCall) -> Result<Json<FileResponse>, ApiError> {
    let file = call.state.catalog.set_paused(call.actor.name(), call.id, true).await.map_err(map_err)?;
    Ok(call.changed("pause", file))
}

/// Resumes a paused file.
#[utoipa::path(
    post,
    path = routes::RESUME.template,
    responses(
        (status = 200, description = "The resumed file", body = FileResponse),
        (status = 409, description = "The file is not registered or ingesting", body = ErrorBody),
    )
)]
async fn resume(call: FileCall) -> Result<Json<FileResponse>, ApiError> {
    let file = call.state.catalog.set_paused(call.actor.name(), call.id, false).await.map_err(map_err)?;
    Ok(call.changed("resume", file))
}

/// Cancels a file: it never activates; its leases are revoked and its rows retired.
#[utoipa::path(
    post,
    path = routes::CANCEL.template,
    responses(
        (status = 200, description = "The cancelled file", body = FileResponse),
        (status = 409, description = "The file is not registered or ingesting", body = ErrorBody),
    )
)]
async fn cancel(call: FileCall) -> Result<Json<FileResponse>, ApiError> {
    let file = call.state.catalog.cancel_file(call.actor.name(), call.id).await.map_err(map_err)?;
    Ok(call.changed("cancel", file))
}

/// Requeues a failed file's failed ranges (attempts reset).
#[utoipa::path(
    post,
    path = routes::RETRY.template,
    responses(
        (status = 200, description = "The file and the ranges requeued", body = RetryResponse),
        (status = 409, description = "The file has no failed ranges to retry", body = ErrorBody),
    )
)]
async fn retry(call: FileCall) -> Result<Json<RetryResponse>, ApiError> {
    let (file, ranges) = call.state.catalog.retry_file(call.actor.name(), call.id).await.map_err(map_err)?;
    tracing::info!(actor = %call.actor, file_id = call.id.0, ranges, "operator retried failed ranges");
    Ok(Json(RetryResponse { file: file.into_view(), ranges_requeued: ranges }))
}

/// Approves a held version: held by the shrink guard, it activates without asking the guard
/// again; held for too many rejected rows (before merging), it merges and still meets the
/// shrink guard.
#[utoipa::path(
    post,
    path = routes::APPROVE.template,
    responses(
        (status = 200, description = "The approved file, on its way to activation", body = FileResponse),
        (status = 409, description = "The file is not held", body = ErrorBody),
    )
)]
async fn approve(call: FileCall) -> Result<Json<FileResponse>, ApiError> {
    let file = call.state.catalog.approve_file(call.actor.name(), call.id).await.map_err(map_err)?;
    Ok(call.changed("approve", file))
}

/// Rejects a held version: it is cancelled, never activates, and any rows it wrote are undone.
#[utoipa::path(
    post,
    path = routes::REJECT.template,
    responses(
        (status = 200, description = "The rejected (cancelled) file", body = FileResponse),
        (status = 409, description = "The file is not held", body = ErrorBody),
    )
)]
async fn reject(call: FileCall) -> Result<Json<FileResponse>, ApiError> {
    let file = call.state.catalog.reject_file(call.actor.name(), call.id).await.map_err(map_err)?;
    Ok(call.changed("reject", file))
}

/// Sets an advertiser's weight in the effective priority (1 = neutral).
#[utoipa::path(
    put,
    path = routes::SET_WEIGHT.template,
    request_body = SetWeight,
    responses(
        (status = 200, description = "The weight now in force", body = WeightResponse),
        (status = 400, description = "Invalid advertiser id or body", body = ErrorBody),
    )
)]
async fn set_weight(
    call: AdvertiserCall,
    JsonBody(SetWeight { weight }): JsonBody<SetWeight>,
) -> Result<Json<WeightResponse>, ApiError> {
    let Call { state, actor, id: advertiser } = call;
    state.catalog.set_weight(actor.name(), &advertiser, weight).await.map_err(map_err)?;
    tracing::info!(actor = %actor, %advertiser, weight, "operator set advertiser weight");
    Ok(Json(WeightResponse { advertiser_id: advertiser, weight }))
}

/// Sets how long an advertiser's list keeps matching after its upload (null: unlimited). Past
/// it, every lookup of the list answers "not a member" (within the matchers' refresh, 1 s by
/// default) until the advertiser uploads a fresh list. Audited.
#[utoipa::path(
    put,
    path = routes::SET_LIFESPAN.template,
    request_body = SetLifespan,
    responses(
        (status = 200, description = "The lifespan now in force, and when the active list stops matching", body = LifespanView),
        (status = 400, description = "Invalid advertiser id or body", body = ErrorBody),
    )
)]
async fn set_lifespan(
    call: AdvertiserCall,
    JsonBody(SetLifespan { lifespan_secs }): JsonBody<SetLifespan>,
) -> Result<Json<LifespanView>, ApiError> {
    let Call { state, actor, id: advertiser } = call;
    let lifespan = lifespan_secs.map(std::time::Duration::from_secs);
    let expires_at = state.catalog.set_lifespan(actor.name(), &advertiser, lifespan).await.map_err(map_err)?;
    tracing::info!(actor = %actor, %advertiser, ?lifespan_secs, "operator set advertiser list lifespan");
    let expired = memberlake::catalog::list_expired(expires_at, chrono::Utc::now());
    Ok(Json(LifespanView { advertiser_id: advertiser, lifespan_secs, expires_at, expired }))
}

/// Every advertiser with a lifespan, by id, with when its active list stops (or stopped)
/// matching.
#[utoipa::path(
    get,
    path = routes::LIFESPANS.template,
    responses(
        (status = 200, description = "Advertisers with a lifespan", body = LifespansResponse),
    )
)]
async fn lifespans(State(s): State<AdminState>) -> Result<Json<LifespansResponse>, ApiError> {
    let now = chrono::Utc::now();
    let lifespans = s.catalog.lifespans().await.map_err(map_err)?;
    Ok(Json(LifespansResponse {
        lifespans: lifespans
            .into_iter()
            .map(|l| LifespanView {
                expired: l.is_expired_at(now),
                advertiser_id: l.advertiser_id,
                lifespan_secs: Some(l.lifespan_secs.round() as u64),
                expires_at: l.expires_at,
            })
            .collect(),
    }))
}

/// Erases a person from every advertiser's list, for good.
///
/// By `email_hash`, or by `email`, which is hashed here by the ingestion rule and then
/// forgotten (never logged, stored or returned). From the matchers' next refresh (1 s by
/// default) every lookup of the hash answers "not a member"; no later upload brings it back;
/// the splitter leader's passes delete it from the store and rewrite the work objects that hold
/// it, and complete the erasure. Idempotent: a repeat answers the erasure already recorded,
/// with 200. Audited (`erase`, `email_hash:<hash>`).
#[utoipa::path(
    post,
    path = routes::ERASE.template,
    request_body = EraseRequest,
    responses(
        (status = 202, description = "Recorded by this request: the erasure, pending", body = ErasureView),
        (status = 200, description = "Requested before: the erasure as it stands (nothing changed)", body = ErasureView),
        (
            status = 400,
            description = "Neither or both of `email` and `email_hash`, an unknown field, an invalid hash, or an email \
                           a list would reject (the reason named) or not ASCII or longer than 254 characters (the \
                           email is never echoed)",
            body = ErrorBody
        ),
    )
)]
async fn erase(
    State(state): State<AdminState>,
    actor: Caller,
    JsonBody(request): JsonBody<EraseRequest>,
) -> Result<(StatusCode, Json<ErasureView>), ApiError> {
    // The email, if one was sent, goes no further than this: only its hash does.
    let hash = request.email_hash().map_err(invalid)?;
    let erasure = state.catalog.request_erasure(actor.name(), hash).await.map_err(map_err)?;
    let created = erasure.created;
    tracing::info!(actor = %actor, email_hash = %hash, created, "operator requested an erasure");
    let status = if created { StatusCode::ACCEPTED } else { StatusCode::OK };
    Ok((status, Json(erasure.into_view())))
}

/// One erasure, by email hash.
///
/// When and by whom it was requested, the leader's passes over it, and whether it is complete.
#[utoipa::path(
    get,
    path = routes::ERASURE.template,
    responses(
        (status = 200, description = "The erasure and how far it has come", body = ErasureView),
    )
)]
async fn erasure(call: ErasureCall) -> Result<Json<ErasureView>, ApiError> {
    let Call { state, id: hash, .. } = call;
    let erasure = state.catalog.erasure(hash).await.map_err(map_err)?;
    let erasure =
        erasure.ok_or_else(|| ApiError::not_found(format!("no erasure of email hash {hash} was requested")))?;
    Ok(Json(erasure.into_view()))
}

/// Rolls an advertiser back to version `to`, or by default to the version active before the
/// current one. The rollback is a new version (no lake object) that merges the restored member
/// set against the active one, so it costs the difference; it is never held (an operator asked).
#[utoipa::path(
    post,
    path = routes::ROLLBACK.template,
    // Optional ([`OperatorAuth`] says so: `Option<Rollback>` would also make JSON `null` a
    // valid body, which the server rightly refuses).
    request_body(
        content = Rollback,
        description = "Optional: no body, an empty one or `{}` restores the previous version"
    ),
    responses(
        (status = 200, description = "The rollback version, merging until it activates", body = RollbackResponse),
        (status = 400, description = "Invalid advertiser id or body", body = ErrorBody),
        (status = 404, description = "The advertiser or the version `to` is unknown", body = ErrorBody),
        (
            status = 409,
            description = "Nothing to roll back to (no earlier version, or its manifest expired), another version \
                           in flight, or a legacy active version",
            body = ErrorBody
        ),
    )
)]
async fn rollback(
    call: AdvertiserCall,
    OptionalBody(Rollback { to }): OptionalBody<Rollback>,
) -> Result<Json<RollbackResponse>, ApiError> {
    let Call { state, actor, id: advertiser } = call;
    let file = state.catalog.rollback(actor.name(), &advertiser, to).await.map_err(map_err)?;
    tracing::info!(
        actor = %actor,
        %advertiser,
        to = ?to.map(|v| v.0),
        file_id = file.file_id.0,
        "operator rolled an advertiser back"
    );
    Ok(Json(RollbackResponse { file: file.into_view() }))
}

/// The audit log, newest first.
#[utoipa::path(
    get,
    path = routes::ACTIONS.template,
    params(LimitQuery),
    responses(
        (status = 200, description = "Operator actions, newest first", body = ActionsResponse),
        (status = 400, description = "Unknown parameter or invalid limit", body = ErrorBody),
    )
)]
async fn actions(
    State(s): State<AdminState>,
    q: Result<Query<LimitQuery>, QueryRejection>,
) -> Result<Json<ActionsResponse>, ApiError> {
    let limit = query(q)?.limit().map_err(invalid)?;
    let actions = s.catalog.operator_actions(limit.into()).await.map_err(map_err)?;
    Ok(Json(ActionsResponse { actions: actions.into_view() }))
}

/// Queued ranges per lane, files in flight, rows per minute (15 minutes), recent failures.
#[utoipa::path(
    get,
    path = routes::OVERVIEW.template,
    responses((status = 200, description = "What the status page shows", body = OverviewView))
)]
async fn overview(State(s): State<AdminState>) -> Result<Json<OverviewView>, ApiError> {
    Ok(Json(s.overview().await.map_err(map_err)?.into_view()))
}

/// This document.
#[utoipa::path(
    get,
    path = routes::OPENAPI.template,
    responses((status = 200, description = "The OpenAPI document of the admin API", content_type = "application/json"))
)]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(<ApiDoc as utoipa::OpenApi>::openapi())
}

/// The admin API's OpenAPI document, generated from the handlers above and the types of
/// `memberlake-admin`.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "memberlake admin API", description = "Operate ingestion: files, priorities, lifecycle, held versions, rollbacks, advertiser weights, list lifespans, erasures, the audit log."),
    paths(
        list_files, file_detail, set_priority, pause, resume, cancel, retry, approve, reject, set_weight, set_lifespan,
        lifespans, erase, erasure, rollback, actions, overview, openapi
    ),
    // The ids and states parameters use (bodies and views bring their own).
    components(schemas(ErrorBody, AdvertiserId, FileId, FileState, EmailHash)),
    modifiers(&OperatorAuth)
)]
pub struct ApiDoc;

/// What routes share, added once: the bearer scheme; on every route but the document itself
/// the token requirement with its 401 and the 503 of an unavailable catalog; on a route with a
/// path parameter ([`Route::id`]) that parameter and the 400 of an invalid one, and on a file's
/// or an erasure's route the 404 of a missing one; on a route with a body the 413 of one over
/// [`MAX_BODY_BYTES`](crate::surface::MAX_BODY_BYTES). Every route may answer 429 over the
/// operator's `MEMBERLAKE_ADMIN_RATE_LIMIT`, and 503 when the surface is overloaded or the
/// request times out (`memberlake::http::surface`); both carry `Retry-After`.
struct OperatorAuth;

impl utoipa::Modify for OperatorAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::header::Header;
        use utoipa::openapi::path::ParameterIn;
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
        use utoipa::openapi::{ContentBuilder, Ref, Required, ResponseBuilder};
        use utoipa::IntoParams;
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        let error = |description: &str| {
            ResponseBuilder::new().description(description).content(
                "application/json",
                ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
            )
        };
        let seconds = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1));
        let mut retry_after = Header::new(seconds);
        retry_after.description = Some("Seconds to wait before retrying".into());
        let retry = |description: &str| error(description).header("Retry-After", retry_after.clone()).build();
        let mut challenge = Header::default();
        challenge.description = Some("`Bearer`".into());
        let too_large = format!("Body larger than {} KiB", crate::surface::MAX_BODY_BYTES / 1024);
        for (path, item) in doc.paths.paths.iter_mut() {
            let route = routes::ALL.iter().find(|r| r.template == path);
            let open = route == Some(&routes::OPENAPI);
            for op in [&mut item.get, &mut item.post, &mut item.put].into_iter().flatten() {
                let responses = &mut op.responses.responses;
                responses.insert("429".into(), retry("Over MEMBERLAKE_ADMIN_RATE_LIMIT; retry (Retry-After)").into());
                if open {
                    responses.insert("503".into(), retry("Overloaded or timed out; retry (Retry-After)").into());
                } else {
                    op.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
                    let unauthorized =
                        error("Missing or invalid operator token").header("WWW-Authenticate", challenge.clone());
                    responses.insert("401".into(), unauthorized.build().into());
                    let unavailable = "Catalog unavailable, overloaded or timed out; retry (Retry-After)";
                    responses.insert("503".into(), retry(unavailable).into());
                }
                if let Some(body) = &mut op.request_body {
                    responses.insert("413".into(), error(&too_large).build().into());
                    if route == Some(&routes::ROLLBACK) {
                        body.required = Some(Required::False);
                    }
                }
                let in_path = || Some(ParameterIn::Path);
                let (id, invalid) = match route.and_then(|r| r.id) {
                    Some(PathId::File) => {
                        responses.insert("404".into(), error("No such file").build().into());
                        (FileIdParam::into_params(in_path), "Invalid file id")
                    }
                    Some(PathId::Advertiser) => (AdvertiserIdParam::into_params(in_path), "Invalid advertiser id"),
                    Some(PathId::EmailHash) => {
                        responses
                            .insert("404".into(), error("No erasure of this email hash was requested").build().into());
                        (EmailHashParam::into_params(in_path), "Invalid email hash")
                    }
                    None => continue,
                };
                op.parameters.get_or_insert_with(Vec::new).splice(0..0, id);
                responses.entry("400".into()).or_insert_with(|| error(invalid).build().into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The document states what the server checks: each value a schema admits is one the
    //! server's parser or [`Validate`] rule accepts, and the other way round.

    use memberlake_admin::requests::{LIMITS, PRIORITIES};
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;

    fn doc() -> Value {
        serde_json::to_value(<ApiDoc as utoipa::OpenApi>::openapi()).unwrap()
    }

    /// `schema` with a `$ref` to a component resolved; of a nullable one (`oneOf` null or a
    /// schema), the schema.
    fn resolve(doc: &Value, schema: &Value) -> Value {
        if let Some(one_of) = schema["oneOf"].as_array() {
            let not_null: Vec<_> = one_of.iter().filter(|s| s["type"] != "null").collect();
            assert_eq!(not_null.len(), 1, "{schema}");
            return resolve(doc, not_null[0]);
        }
        match schema["$ref"].as_str() {
            Some(r) => doc["components"]["schemas"][r.trim_start_matches("#/components/schemas/")].clone(),
            None => schema.clone(),
        }
    }

    fn operation(doc: &Value, route: Route) -> Value {
        doc["paths"][route.template][route.method.as_str().to_ascii_lowercase()].clone()
    }

    fn parameter(doc: &Value, route: Route, name: &str) -> Value {
        let op = operation(doc, route);
        let param = op["parameters"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap().clone();
        resolve(doc, &param["schema"])
    }

    fn body_property(doc: &Value, route: Route, name: &str) -> Value {
        let body = operation(doc, route)["requestBody"]["content"]["application/json"]["schema"].clone();
        resolve(doc, &resolve(doc, &body)["properties"][name])
    }

    /// Whether a numeric schema admits `x`, by the facets the document uses.
    fn admits_number(schema: &Value, x: f64) -> bool {
        let bound = |k: &str| schema[k].as_f64();
        bound("minimum").is_none_or(|m| x >= m)
            && bound("maximum").is_none_or(|m| x <= m)
            && bound("exclusiveMinimum").is_none_or(|m| x > m)
            && bound("exclusiveMaximum").is_none_or(|m| x < m)
    }

    /// Whether a string schema admits `s`.
    fn admits_string(schema: &Value, s: &str) -> bool {
        let len = s.chars().count() as u64;
        regex::Regex::new(schema["pattern"].as_str().expect("a pattern")).unwrap().is_match(s)
            && schema["minLength"].as_u64().is_none_or(|min| len >= min)
            && schema["maxLength"].as_u64().is_none_or(|max| len <= max)
    }

    /// The object of the erasure body's `oneOf` that names `field`, with the field's schema
    /// resolved.
    fn erase_branch(doc: &Value, field: &str) -> Value {
        let body = operation(doc, routes::ERASE)["requestBody"]["content"]["application/json"]["schema"].clone();
        let one_of = resolve_ref(doc, &body)["oneOf"].as_array().expect("a oneOf").clone();
        let branch = one_of.iter().find(|b| b["properties"].get(field).is_some()).expect("a branch naming it");
        resolve(doc, &branch["properties"][field])
    }

    /// A `$ref` resolved, without reading a `oneOf` as nullable ([`resolve`] does).
    fn resolve_ref(doc: &Value, schema: &Value) -> Value {
        match schema["$ref"].as_str() {
            Some(r) => doc["components"]["schemas"][r.trim_start_matches("#/components/schemas/")].clone(),
            None => schema.clone(),
        }
    }

    /// Strings near the email rule: either side of each part of it (whitespace and quotes
    /// around the line or inside it, control characters, none, one or two `@`, 254 characters,
    /// 32 hex digits, ASCII or not), and any.
    fn emails() -> impl Strategy<Value = String> {
        let re = |r: &str| proptest::string::string_regex(r).unwrap();
        // Around a line: whitespace the rule trims, and what it does not (\x0B, \x00).
        let pad = "[ \t\n\r\x0B\x0C\x00\"]{0,3}";
        prop_oneof![
            re(&format!("{pad}[!-~]{{0,5}}@[!-~]{{0,5}}{pad}")),
            re(&format!("{pad}[a-z\" \t]{{0,4}}[@\"]?[a-z ]{{0,3}}@[a-z.\" ]{{0,4}}{pad}")),
            re(&format!("{pad}[\x00-\x7F]{{0,6}}{pad}")),
            re(&format!("{pad}\"?[0-9A-Fa-f]{{31,33}}\"?{pad}")),
            re("[a-z]{1,8}[é@]?[a-z]{0,3}@[a-z]{1,8}"),
            re(&format!("{pad}[a-z]{{236,246}}@example\\.com{pad}")),
            any::<String>(),
        ]
    }

    /// Integers near `bounds`' ends, and any.
    fn near(lo: i64, hi: i64) -> impl Strategy<Value = i64> {
        prop_oneof![lo - 3..lo + 3, hi - 3..hi + 3, any::<i64>()]
    }

    proptest! {
        #[test]
        fn file_ids(id in near(FileId::MIN, i64::MAX - 3)) {
            let schema = parameter(&doc(), routes::FILE, "id");
            prop_assert_eq!(admits_number(&schema, id as f64), parse_file_id(&id.to_string()).is_ok(), "{}", id);
        }

        #[test]
        fn advertiser_ids(s in prop_oneof![proptest::string::string_regex("[A-Za-z0-9_-]{0,66}").unwrap(), any::<String>()]) {
            let doc = doc();
            let accepted = AdvertiserId::from_path(&s).is_ok();
            prop_assert_eq!(admits_string(&parameter(&doc, routes::SET_WEIGHT, "id"), &s), accepted, "{:?}", &s);
            prop_assert_eq!(admits_string(&parameter(&doc, routes::FILES, "advertiser_id"), &s), accepted, "{:?}", &s);
        }

        #[test]
        fn limits(n in near(i64::from(*LIMITS.start()), i64::from(*LIMITS.end()))) {
            let doc = doc();
            let accepted = u32::try_from(n).is_ok_and(|n| LimitQuery { limit: Some(n) }.validate().is_ok());
            prop_assert_eq!(admits_number(&parameter(&doc, routes::ACTIONS, "limit"), n as f64), accepted, "{}", n);
            prop_assert_eq!(admits_number(&parameter(&doc, routes::FILES, "limit"), n as f64), accepted, "{}", n);
        }

        #[test]
        fn priorities(p in near(i64::from(*PRIORITIES.start()), i64::from(*PRIORITIES.end()))) {
            let schema = body_property(&doc(), routes::SET_PRIORITY, "priority");
            let accepted = serde_json::from_value::<SetPriority>(json!({"priority": p})).is_ok_and(|b| b.validate().is_ok());
            prop_assert_eq!(admits_number(&schema, p as f64), accepted, "{}", p);
        }

        #[test]
        fn weights(w in prop_oneof![-1.0..2.0f64, 999_999.0..1_000_001.0f64, any::<f64>()]) {
            let schema = body_property(&doc(), routes::SET_WEIGHT, "weight");
            prop_assert_eq!(admits_number(&schema, w) && w.is_finite(), SetWeight { weight: w }.validate().is_ok(), "{}", w);
        }

        #[test]
        fn erasure_hashes(s in prop_oneof![proptest::string::string_regex("[0-9A-Fa-fg]{30,34}").unwrap(), any::<String>()]) {
            let schema = parameter(&doc(), routes::ERASURE, "hash");
            prop_assert_eq!(admits_string(&schema, &s), EmailHash::from_path(&s).is_ok(), "{:?}", &s);
        }

        #[test]
        fn erasure_emails(s in emails()) {
            let schema = erase_branch(&doc(), "email");
            let accepted = serde_json::from_value::<EraseRequest>(json!({"email": &s})).is_ok_and(|b| b.validate().is_ok());
            prop_assert_eq!(admits_string(&schema, &s), accepted, "{:?}", &s);
        }

        #[test]
        fn rollback_targets(to in near(FileId::MIN, i64::MAX - 3)) {
            let schema = body_property(&doc(), routes::ROLLBACK, "to");
            let accepted = serde_json::from_value::<Rollback>(json!({"to": to})).is_ok_and(|b| b.validate().is_ok());
            prop_assert_eq!(admits_number(&schema, to as f64), accepted, "{}", to);
        }
    }

    #[test]
    fn bodies_refuse_unknown_fields_and_say_so() {
        let doc = doc();
        for (route, schema) in
            [(routes::SET_PRIORITY, "SetPriority"), (routes::SET_WEIGHT, "SetWeight"), (routes::ROLLBACK, "Rollback")]
        {
            let op = operation(&doc, route);
            let body = &op["requestBody"]["content"]["application/json"]["schema"];
            assert_eq!(body["$ref"], format!("#/components/schemas/{schema}"), "{route}");
            assert_eq!(doc["components"]["schemas"][schema]["additionalProperties"], false, "{route}");
            assert_eq!(op["requestBody"]["required"], route != routes::ROLLBACK, "{route}");
            assert!(op["responses"]["413"].is_object(), "{route}: a body over the limit");
        }
        let states = parameter(&doc, routes::FILES, "state");
        assert_eq!(states["enum"], json!(FileState::ALL.map(FileState::as_str)));
    }

    #[test]
    fn an_erasure_body_is_one_of_two_objects_each_with_one_field() {
        let doc = doc();
        let op = operation(&doc, routes::ERASE);
        let body = &op["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(body["$ref"], "#/components/schemas/EraseRequest");
        assert_eq!(op["requestBody"]["required"], true);
        assert!(op["responses"]["413"].is_object(), "a body over the limit");
        let schema = &doc["components"]["schemas"]["EraseRequest"];
        let branches = schema["oneOf"].as_array().unwrap();
        let mut fields = Vec::new();
        for branch in branches {
            let properties: Vec<&String> = branch["properties"].as_object().unwrap().keys().collect();
            assert_eq!(properties.len(), 1, "{branch}");
            assert_eq!(branch["required"], json!([properties[0]]), "{branch}");
            assert_eq!(branch["additionalProperties"], false, "{branch}");
            fields.push(properties[0].clone());
        }
        assert_eq!(fields, ["email", "email_hash"]);
        assert_eq!(branches[1]["properties"]["email_hash"]["$ref"], "#/components/schemas/EmailHash");
        // What the document admits, the server accepts, and the other way round: one field, not
        // null, nothing else.
        let h = "C160F8CC69A4F0BF2B0362752353D060";
        for (body, admitted) in [
            (json!({"email_hash": h}), true),
            (json!({"email": "jane.doe@example.com"}), true),
            (json!({"email": h}), true),
            (json!({}), false),
            (json!({"email": "jane.doe@example.com", "email_hash": h}), false),
            (json!({"email": null}), false),
            (json!({"email_hash": h, "note": "x"}), false),
            (json!([{"email_hash": h}]), false),
        ] {
            let accepted = serde_json::from_value::<EraseRequest>(body.clone()).is_ok_and(|b| b.validate().is_ok());
            assert_eq!(accepted, admitted, "{body}");
        }
        let responses = &op["responses"];
        for status in ["200", "202"] {
            assert_eq!(
                responses[status]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErasureView"
            );
        }
        let view = &doc["components"]["schemas"]["ErasureView"];
        assert_eq!(doc["components"]["schemas"]["ErasureState"]["enum"], json!(["pending", "complete"]));
        assert_eq!(view["properties"]["email_hash"]["$ref"], "#/components/schemas/EmailHash");
        let get = operation(&doc, routes::ERASURE);
        assert_eq!(get["responses"]["404"]["description"], "No erasure of this email hash was requested");
    }

    #[test]
    fn retryable_answers_say_when() {
        let doc = doc();
        for route in routes::ALL {
            let op = operation(&doc, route);
            for status in ["429", "503"] {
                assert!(op["responses"][status]["headers"]["Retry-After"].is_object(), "{route} {status}");
            }
        }
    }
}
