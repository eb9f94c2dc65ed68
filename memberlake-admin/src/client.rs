//! [`AdminClient`]: the admin API as typed async calls. It checks a request's values
//! ([`Validate`]) before sending, so an out-of-range value fails here with the message the
//! server would give, and decodes every answer into its view.

use std::time::Duration;

use std::fmt::Display;

use memberlake_records::ids::{AdvertiserId, EmailHash, FileId};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::requests::{
    EraseRequest, InvalidRequest, LimitQuery, ListFilesQuery, Rollback, SetLifespan, SetPriority, SetWeight, Validate,
};
use crate::routes::{self, Method, Route};
use crate::views::{
    ActionsResponse, ErasureView, ErrorBody, FileDetailView, FileResponse, FilesResponse, LifespanView,
    LifespansResponse, OverviewView, RetryResponse, RollbackResponse, WeightResponse,
};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Nothing was sent: a value is out of range.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// meta-service could not be reached, or the connection broke or timed out.
    #[error("cannot reach meta-service at {base}")]
    Transport {
        base: String,
        #[source]
        source: reqwest::Error,
    },
    /// meta-service answered with an error (`{"error": {"code", "message"}}`).
    #[error("{status} {code}: {message}")]
    Api { status: u16, code: String, message: String },
    /// A success whose body is not the expected view (client and server disagree on the contract).
    #[error("unexpected answer to {route}")]
    Decode {
        route: Route,
        #[source]
        source: serde_json::Error,
    },
}

impl AdminError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            AdminError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A client of meta-service's admin API. Cheap to clone.
#[derive(Clone)]
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl AdminClient {
    /// How long one call may take, answer included.
    pub const TIMEOUT: Duration = Duration::from_secs(30);

    /// `base` is `host:port` or a URL (`http://host:port`); `token` one of meta-service's
    /// `MEMBERLAKE_ADMIN_TOKENS` secrets, or `None` for an open server.
    pub fn new(base: &str, token: Option<String>) -> Self {
        let base = base.trim_end_matches('/');
        let base = if base.starts_with("http://") || base.starts_with("https://") {
            base.to_owned()
        } else {
            format!("http://{base}")
        };
        Self { http: reqwest::Client::new(), base, token }
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Files, newest first.
    pub async fn files(&self, query: &ListFilesQuery) -> Result<FilesResponse, AdminError> {
        query.validate()?;
        self.call(routes::FILES, self.request(routes::FILES, routes::FILES.template).query(query)).await
    }

    /// One file with its progress; a missing file is a 404 [`AdminError::Api`].
    pub async fn file(&self, id: FileId) -> Result<FileDetailView, AdminError> {
        self.call(routes::FILE, self.request(routes::FILE, &routes::FILE.path(id))).await
    }

    pub async fn set_priority(&self, id: FileId, priority: i32) -> Result<FileResponse, AdminError> {
        self.send_body(routes::SET_PRIORITY, id, &SetPriority { priority }).await
    }

    /// No new leases for the file (leases in flight finish).
    pub async fn pause(&self, id: FileId) -> Result<FileResponse, AdminError> {
        self.file_action(routes::PAUSE, id).await
    }

    pub async fn resume(&self, id: FileId) -> Result<FileResponse, AdminError> {
        self.file_action(routes::RESUME, id).await
    }

    /// The file never activates; its rows are retired.
    pub async fn cancel(&self, id: FileId) -> Result<FileResponse, AdminError> {
        self.file_action(routes::CANCEL, id).await
    }

    /// Requeues a failed file's failed ranges.
    pub async fn retry(&self, id: FileId) -> Result<RetryResponse, AdminError> {
        self.file_action(routes::RETRY, id).await
    }

    /// Approves a held version (its `held_reason` says why): it goes on to activation, and the
    /// guard that held it does not ask again. A file that is not held is a 409
    /// [`AdminError::Api`].
    pub async fn approve(&self, id: FileId) -> Result<FileResponse, AdminError> {
        self.file_action(routes::APPROVE, id).await
    }

    /// Rejects a held version: it is cancelled and any rows it wrote are undone. A file that is
    /// not held is a 409 [`AdminError::Api`].
    pub async fn reject(&self, id: FileId) -> Result<FileResponse, AdminError> {
        self.file_action(routes::REJECT, id).await
    }

    /// Rolls `advertiser` back to version `to`, or (`None`) to the version active before the
    /// current one. Answers the new rollback version, which activates like any other; nothing
    /// to roll back to is a 409 [`AdminError::Api`].
    pub async fn rollback(
        &self,
        advertiser: &AdvertiserId,
        to: Option<FileId>,
    ) -> Result<RollbackResponse, AdminError> {
        self.send_body(routes::ROLLBACK, advertiser, &Rollback { to }).await
    }

    pub async fn set_weight(&self, advertiser: &AdvertiserId, weight: f64) -> Result<WeightResponse, AdminError> {
        self.send_body(routes::SET_WEIGHT, advertiser, &SetWeight { weight }).await
    }

    /// Sets how long `advertiser`'s list keeps matching after its upload (`None`: unlimited).
    pub async fn set_lifespan(
        &self,
        advertiser: &AdvertiserId,
        lifespan_secs: Option<u64>,
    ) -> Result<LifespanView, AdminError> {
        self.send_body(routes::SET_LIFESPAN, advertiser, &SetLifespan { lifespan_secs }).await
    }

    /// Every advertiser with a lifespan, and when its active list stops matching.
    pub async fn lifespans(&self) -> Result<LifespansResponse, AdminError> {
        self.call(routes::LIFESPANS, self.request(routes::LIFESPANS, routes::LIFESPANS.template)).await
    }

    /// Erases a person from every list, for good: answers the erasure and whether this call
    /// recorded it (`true`: the server answered 202 Accepted) or it was requested before
    /// (`false`: 200, the erasure already recorded; erasing is idempotent). The request is
    /// checked first, as the server checks it, and nothing is sent if it is refused. Prefer
    /// [`EraseRequest::EmailHash`] ([`hash_email`](crate::hash_email) computes it locally by
    /// the ingestion rule): then the email never leaves this machine.
    pub async fn erase(&self, request: &EraseRequest) -> Result<(ErasureView, bool), AdminError> {
        request.validate()?;
        let send = self.request(routes::ERASE, routes::ERASE.template).json(request);
        let (erasure, status) = self.call_with_status(routes::ERASE, send).await?;
        Ok((erasure, status == reqwest::StatusCode::ACCEPTED))
    }

    /// The erasure of `hash` and how far it has come; none requested is a 404
    /// [`AdminError::Api`].
    pub async fn erasure(&self, hash: EmailHash) -> Result<ErasureView, AdminError> {
        self.call(routes::ERASURE, self.request(routes::ERASURE, &routes::ERASURE.path(hash))).await
    }

    /// The audit log, newest first.
    pub async fn actions(&self, query: &LimitQuery) -> Result<ActionsResponse, AdminError> {
        query.validate()?;
        self.call(routes::ACTIONS, self.request(routes::ACTIONS, routes::ACTIONS.template).query(query)).await
    }

    pub async fn overview(&self) -> Result<OverviewView, AdminError> {
        self.call(routes::OVERVIEW, self.request(routes::OVERVIEW, routes::OVERVIEW.template)).await
    }

    /// The admin API's OpenAPI document.
    pub async fn openapi(&self) -> Result<utoipa::openapi::OpenApi, AdminError> {
        self.call(routes::OPENAPI, self.request(routes::OPENAPI, routes::OPENAPI.template)).await
    }

    async fn file_action<T: DeserializeOwned>(&self, route: Route, id: FileId) -> Result<T, AdminError> {
        self.call(route, self.request(route, &route.path(id))).await
    }

    /// Sends `body` to `route` on `id`, once its values are checked: an out-of-range value is
    /// refused here with the server's message, and nothing is sent.
    async fn send_body<B: Serialize + Validate, T: DeserializeOwned>(
        &self,
        route: Route,
        id: impl Display,
        body: &B,
    ) -> Result<T, AdminError> {
        body.validate()?;
        self.call(route, self.request(route, &route.path(id)).json(body)).await
    }

    fn request(&self, route: Route, path: &str) -> reqwest::RequestBuilder {
        let method = match route.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
        };
        let request = self.http.request(method, format!("{}{path}", self.base)).timeout(Self::TIMEOUT);
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn call<T: DeserializeOwned>(&self, route: Route, request: reqwest::RequestBuilder) -> Result<T, AdminError> {
        self.call_with_status(route, request).await.map(|(answer, _)| answer)
    }

    /// [`call`](Self::call), and the success status (for a route whose 200 and 202 differ).
    async fn call_with_status<T: DeserializeOwned>(
        &self,
        route: Route,
        request: reqwest::RequestBuilder,
    ) -> Result<(T, reqwest::StatusCode), AdminError> {
        let transport = |source| AdminError::Transport { base: self.base.clone(), source };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let body = response.bytes().await.map_err(transport)?;
        if status.is_success() {
            let answer = serde_json::from_slice(&body).map_err(|source| AdminError::Decode { route, source })?;
            return Ok((answer, status));
        }
        Err(match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(ErrorBody { error }) => {
                AdminError::Api { status: status.as_u16(), code: error.code, message: error.message }
            }
            // Not meta-service's error shape (a proxy, or a route this server does not have).
            Err(_) => {
                let reason = status.canonical_reason().unwrap_or("error");
                let text = String::from_utf8_lossy(&body);
                let text = text.trim();
                AdminError::Api {
                    status: status.as_u16(),
                    code: reason.to_ascii_lowercase().replace(' ', "_"),
                    message: if text.is_empty() { reason.to_owned() } else { text.chars().take(200).collect() },
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves one canned HTTP answer on a loopback port; returns the client and the request as
    /// the server saw it.
    async fn answer_once(status: &str, body: &str) -> (AdminClient, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then the body if a content-length says there is one.
            loop {
                let n = socket.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&seen).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_owned))
                        .and_then(|l| l.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if seen.len() >= end + 4 + length || n == 0 {
                        break;
                    }
                }
            }
            socket.write_all(response.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&seen).into_owned()
        });
        (AdminClient::new(&addr.to_string(), Some("s3cret".into())), server)
    }

    #[tokio::test]
    async fn sends_the_route_query_body_and_token() {
        let (client, server) = answer_once("200 OK", r#"{"advertiser_id": "acme", "weight": 2.5, "later": 1}"#).await;
        let w = client.set_weight(&AdvertiserId::parse("acme").unwrap(), 2.5).await.unwrap();
        assert_eq!((w.advertiser_id.as_str(), w.weight), ("acme", 2.5));
        let seen = server.await.unwrap();
        assert!(seen.starts_with("PUT /admin/v1/advertisers/acme/weight HTTP/1.1\r\n"), "{seen}");
        assert!(seen.to_ascii_lowercase().contains("authorization: bearer s3cret\r\n"), "{seen}");
        assert!(seen.ends_with(r#"{"weight":2.5}"#), "{seen}");

        let (client, server) = answer_once("200 OK", r#"{"files": []}"#).await;
        let query = ListFilesQuery { state: Some(memberlake_records::states::FileState::Failed), ..Default::default() };
        assert!(client.files(&query).await.unwrap().files.is_empty());
        let seen = server.await.unwrap();
        assert!(seen.starts_with("GET /admin/v1/files?state=failed HTTP/1.1\r\n"), "{seen}");
    }

    #[tokio::test]
    async fn approve_reject_and_rollback_use_their_routes() {
        let file = r#"{"file_id": "not checked here"}"#;
        let acme = AdvertiserId::parse("acme").unwrap();
        // The answers are not views: the requests are what is checked.
        let (client, server) = answer_once("200 OK", file).await;
        assert!(matches!(client.approve(FileId(7)).await, Err(AdminError::Decode { route: routes::APPROVE, .. })));
        assert!(server.await.unwrap().starts_with("POST /admin/v1/files/7/approve HTTP/1.1\r\n"));
        let (client, server) = answer_once("200 OK", file).await;
        assert!(matches!(client.reject(FileId(8)).await, Err(AdminError::Decode { route: routes::REJECT, .. })));
        assert!(server.await.unwrap().starts_with("POST /admin/v1/files/8/reject HTTP/1.1\r\n"));
        for (to, body) in [(None, "{}"), (Some(FileId(41)), r#"{"to":41}"#)] {
            let (client, server) = answer_once("200 OK", file).await;
            let err = client.rollback(&acme, to).await.unwrap_err();
            assert!(matches!(err, AdminError::Decode { route: routes::ROLLBACK, .. }), "{err:?}");
            let seen = server.await.unwrap();
            assert!(seen.starts_with("POST /admin/v1/advertisers/acme/rollback HTTP/1.1\r\n"), "{seen}");
            assert!(seen.ends_with(body), "{seen}");
        }
    }

    #[tokio::test]
    async fn an_erasure_says_whether_it_was_recorded_now() {
        const H: &str = "c160f8cc69a4f0bf2b0362752353d060";
        let view = format!(
            r#"{{"email_hash": "{H}", "requested_at": "2026-01-02T03:04:05Z", "requested_by": "ops", "state": "pending",
                "passes": 0, "objects_rewritten": 0, "completed_at": null, "last_pass_at": null}}"#
        );
        let hash = EmailHash::from_hex(H.as_bytes()).unwrap();
        for (status, created) in [("202 Accepted", true), ("200 OK", false)] {
            let (client, server) = answer_once(status, &view).await;
            let (erasure, recorded) = client.erase(&EraseRequest::EmailHash(hash)).await.unwrap();
            assert_eq!((erasure.email_hash, recorded), (hash, created), "{status}");
            let seen = server.await.unwrap();
            assert!(seen.starts_with("POST /admin/v1/erasures HTTP/1.1\r\n"), "{seen}");
            assert!(seen.ends_with(&format!(r#"{{"email_hash":"{H}"}}"#)), "{seen}");
        }
        let (client, server) = answer_once("200 OK", &view).await;
        assert_eq!(client.erasure(hash).await.unwrap().requested_by, "ops");
        assert!(server.await.unwrap().starts_with(&format!("GET /admin/v1/erasures/{H} HTTP/1.1\r\n")));
        // An email the server would refuse is refused here; nothing is sent (nothing listens on 9).
        let offline = AdminClient::new("127.0.0.1:9", None);
        let err = offline.erase(&EraseRequest::Email("not an email".into())).await.unwrap_err();
        assert!(matches!(err, AdminError::Invalid(InvalidRequest::EmailRejected(_))), "{err:?}");
    }

    #[tokio::test]
    async fn an_error_answer_is_an_api_error_with_the_servers_message() {
        let (client, _server) = answer_once(
            "409 Conflict",
            r#"{"error": {"code": "conflict", "message": "file 7 has no failed ranges to retry"}}"#,
        )
        .await;
        let err = client.retry(FileId(7)).await.unwrap_err();
        assert_eq!(err.status(), Some(409));
        assert_eq!(err.to_string(), "409 conflict: file 7 has no failed ranges to retry");

        let (client, _server) = answer_once("404 Not Found", "").await;
        let Err(err) = client.openapi().await else { panic!("a 404 is an error") };
        assert_eq!(err.to_string(), "404 not_found: Not Found");
    }

    #[tokio::test]
    async fn a_body_that_is_not_the_view_is_a_decode_error() {
        let (client, _server) = answer_once("200 OK", r#"{"file": {"file_id": "x"}}"#).await;
        let err = client.pause(FileId(1)).await.unwrap_err();
        assert!(matches!(err, AdminError::Decode { route: routes::PAUSE, .. }), "{err:?}");
        assert_eq!(err.to_string(), "unexpected answer to POST /admin/v1/files/{id}/pause");
    }

    #[tokio::test]
    async fn out_of_range_values_are_refused_before_sending() {
        // Nothing listens on port 9: a request that went out would be a transport error.
        let client = AdminClient::new("http://127.0.0.1:9/", None);
        assert_eq!(client.base(), "http://127.0.0.1:9");
        let err = client.set_priority(FileId(1), 2_000_000).await.unwrap_err();
        assert!(matches!(err, AdminError::Invalid(InvalidRequest::Priority)), "{err:?}");
        let err = client.set_weight(&AdvertiserId::parse("acme").unwrap(), 0.0).await.unwrap_err();
        assert_eq!(err.to_string(), "weight must be a number in (0, 1000000]");
        let err = client.rollback(&AdvertiserId::parse("acme").unwrap(), Some(FileId(0))).await.unwrap_err();
        assert!(matches!(err, AdminError::Invalid(InvalidRequest::FileId(_))), "{err:?}");
        let err = client.actions(&LimitQuery { limit: Some(0) }).await.unwrap_err();
        assert!(matches!(err, AdminError::Invalid(InvalidRequest::Limit)), "{err:?}");
        let err = client.overview().await.unwrap_err();
        assert!(matches!(err, AdminError::Transport { .. }), "{err:?}");
        assert_eq!(err.to_string(), "cannot reach meta-service at http://127.0.0.1:9");
    }

    #[test]
    fn debug_hides_the_token() {
        let client = AdminClient::new("127.0.0.1:8081", Some("s3cret".into()));
        assert!(!format!("{client:?}").contains("s3cret"));
        assert_eq!(client.base(), "http://127.0.0.1:8081");
    }
}
