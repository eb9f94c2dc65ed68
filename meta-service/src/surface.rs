//! The operator surface on `MEMBERLAKE_ADMIN_ADDR`, assembled in one place: the admin API and
//! the status page behind the operator token (a header, or `?token=` for the status page in a
//! browser), the API's OpenAPI document open, a 16 KiB body limit, all behind the API surface's
//! layers (`memberlake::http::surface`: request ids, the operator's rate limit, overload,
//! timeout).

use axum::middleware::from_fn;
use axum::routing::get;
use axum::Router;
use memberlake::http::surface::{require_caller, ApiSurface};

use crate::state::AdminState;
use crate::{admin, status_page};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

pub fn router(state: AdminState, surface: ApiSurface) -> Router {
    let routes = admin::api()
        .route("/", get(status_page::page))
        .route("/status", get(status_page::page))
        .route_layer(from_fn(require_caller))
        .merge(admin::document())
        .with_state(state)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES));
    surface.token_in_query("token").wrap(routes)
}

#[cfg(test)]
mod tests {
    //! The surface without a database: requests that are refused before the catalog is asked,
    //! the token check, and the OpenAPI document. The catalog here is a pool that cannot
    //! connect, so a request that reaches it is a 503.

    use std::num::NonZeroUsize;
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use memberlake::catalog::{Catalog, PriorityKnobs};
    use memberlake::config::LaneArgs;
    use memberlake::http::surface::SurfaceLimits;
    use memberlake::http::Tokens;
    use memberlake_admin::routes::{self, Method, PathId};
    use memberlake_admin::ErrorBody;
    use serde_json::json;
    use tower::ServiceExt;

    use super::*;

    /// The surface with `tokens` and each caller's budget `rate`, over a catalog that cannot
    /// connect.
    fn app(tokens: &[&str], rate: &str) -> Router {
        let limits = SurfaceLimits {
            request_timeout: Duration::from_secs(30),
            max_concurrency: NonZeroUsize::new(32).unwrap(),
            per_caller: rate.parse().unwrap(),
        };
        let tokens = Tokens::parse(&tokens.iter().map(|t| t.to_string()).collect::<Vec<_>>());
        router(state(), ApiSurface::new(tokens, limits))
    }

    fn state() -> AdminState {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(Duration::from_millis(300))
            .connect_lazy("postgres://nobody@127.0.0.1:1/nothing")
            .unwrap();
        AdminState {
            catalog: Catalog::from_pool(pool),
            knobs: PriorityKnobs {
                per_level: 1000.0,
                per_log_weight: 100.0,
                aging_per_second: 0.2,
                per_size_doubling: 50.0,
            },
            lanes: LaneArgs { express_max_file_size: 256 << 20, urgent_priority: 100 },
        }
    }

    async fn send(
        app: &Router,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, Vec<u8>) {
        let mut request = Request::builder().method(method.as_str()).uri(uri);
        if let Some(t) = token {
            request = request.header("authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request.body(Body::from(body.unwrap_or("").to_owned())).unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        (status, axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap().to_vec())
    }

    /// `(status, error message)` of a request expected to fail with meta-service's error body.
    async fn refused(app: &Router, method: Method, uri: &str, body: Option<&str>) -> (u16, String) {
        let (status, bytes) = send(app, method, uri, None, body).await;
        let ErrorBody { error } = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{uri}: {e}: {bytes:?}"));
        (status.as_u16(), error.message)
    }

    #[tokio::test]
    async fn bad_requests_are_400s_that_say_why() {
        let app = app(&[], "0");
        let cases: [(Method, &str, Option<&str>, &str); 27] = [
            (Method::Get, "/admin/v1/files?stat=failed", None, "unknown field `stat`"),
            (Method::Get, "/admin/v1/files?state=done", None, "unknown variant `done`"),
            (Method::Get, "/admin/v1/files?advertiser_id=a%20b", None, "advertiser_id must match"),
            (Method::Get, "/admin/v1/files?limit=0", None, "limit must be 1..=1000"),
            (Method::Get, "/admin/v1/actions?limit=5&token=x", None, "unknown field `token`"),
            (Method::Post, "/admin/v1/files/abc/pause", None, "file id must be a positive integer, got \"abc\""),
            (
                Method::Post,
                "/admin/v1/files/1/priority",
                Some(r#"{"priority": 1, "urgent": true}"#),
                "unknown field `urgent`",
            ),
            (Method::Post, "/admin/v1/files/1/priority", Some(r#"{"priority": 2000000}"#), "priority must be between"),
            (Method::Put, "/admin/v1/advertisers/acme/weight", Some(r#"{"weight": 0}"#), "weight must be a number in"),
            (Method::Put, "/admin/v1/advertisers/a.b/weight", Some(r#"{"weight": 1}"#), "advertiser_id must match"),
            (Method::Post, "/admin/v1/files/0/approve", None, "file id must be a positive integer, got \"0\""),
            (Method::Post, "/admin/v1/files/x/reject", None, "file id must be a positive integer, got \"x\""),
            (Method::Post, "/admin/v1/advertisers/a.b/rollback", None, "advertiser_id must match"),
            (
                Method::Post,
                "/admin/v1/advertisers/acme/rollback",
                Some(r#"{"to": 3, "from": 2}"#),
                "unknown field `from`",
            ),
            (Method::Post, "/admin/v1/advertisers/acme/rollback", Some(r#"{"to": 0}"#), "file id must be a positive"),
            (Method::Post, "/admin/v1/advertisers/acme/rollback", Some(r#"{"to": "x"}"#), "invalid type"),
            (Method::Get, "/admin/v1/erasures/c160f8cc", None, "email_hash must be 32 hexadecimal digits"),
            (Method::Post, "/admin/v1/erasures", Some("{}"), "exactly one of `email` or `email_hash`, not neither"),
            (
                Method::Post,
                "/admin/v1/erasures",
                Some(r#"{"email": "jane@example.com", "email_hash": "c160f8cc69a4f0bf2b0362752353d060"}"#),
                "not both",
            ),
            (Method::Post, "/admin/v1/erasures", Some(r#"{"email": "jane.example.com"}"#), ": missing_at"),
            (Method::Post, "/admin/v1/erasures", Some(r#"{"email": "jané@example.com"}"#), "must be ASCII"),
            (Method::Post, "/admin/v1/erasures", Some(r#"{"email": null}"#), "invalid type: null"),
            (Method::Post, "/admin/v1/erasures", Some(r#"{"email_hash": "jane@example.com"}"#), "32 hexadecimal"),
            // serde would read a struct from an array of its fields; the documents say object.
            (Method::Put, "/admin/v1/advertisers/acme/weight", Some("[3.5]"), "must be a JSON object"),
            (Method::Post, "/admin/v1/files/1/priority", Some(" [5]"), "must be a JSON object"),
            (Method::Post, "/admin/v1/advertisers/acme/rollback", Some("[41]"), "must be a JSON object"),
            (Method::Post, "/admin/v1/erasures", Some(r#"["jane@example.com"]"#), "JSON object"),
        ];
        for (method, uri, body, says) in cases {
            let (status, message) = refused(&app, method, uri, body).await;
            assert_eq!(status, 400, "{method} {uri}: {message}");
            assert!(message.contains(says), "{method} {uri}: {message:?} should say {says:?}");
            assert!(!message.contains("jane"), "{method} {uri}: an email is never echoed: {message:?}");
        }
        let big = format!(r#"{{"priority": 1, "pad": "{}"}}"#, "x".repeat(MAX_BODY_BYTES));
        assert_eq!(refused(&app, Method::Post, "/admin/v1/files/1/priority", Some(&big)).await.0, 413);
        // A valid request reaches the catalog, which is unreachable here.
        let (status, message) = refused(&app, Method::Get, "/admin/v1/files?state=failed&limit=3", None).await;
        assert_eq!(status, 503, "{message}");
        for (method, uri, body) in [
            (Method::Post, "/admin/v1/erasures", Some(r#"{"email": " \"Jane.Doe@Example.com\"\r\n"}"#)),
            (Method::Post, "/admin/v1/erasures", Some(r#"{"email_hash": "C160F8CC69A4F0BF2B0362752353D060"}"#)),
            (Method::Get, "/admin/v1/erasures/c160f8cc69a4f0bf2b0362752353d060", None),
        ] {
            let (status, message) = refused(&app, method, uri, body).await;
            assert_eq!(status, 503, "{method} {uri}: {message}");
        }
    }

    #[tokio::test]
    async fn a_rollbacks_body_may_be_left_out_but_not_left_unread() {
        let app = app(&[], "0");
        let rollback = routes::ROLLBACK.path("acme");
        // No body, an empty or blank one, `{}` and `{"to": v}` all reach the (unreachable) catalog.
        for body in [None, Some(""), Some(" \n"), Some("{}"), Some(r#"{"to": null}"#), Some(r#"{"to": 41}"#)] {
            let (status, message) = refused(&app, Method::Post, &rollback, body).await;
            assert_eq!(status, 503, "{body:?}: {message}");
        }
        // A body sent without a JSON content type is refused, not ignored: it may name `to`.
        let request = Request::post(&rollback).body(Body::from(r#"{"to": 41}"#)).unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let ErrorBody { error } = serde_json::from_slice(&bytes).unwrap();
        assert!(error.message.contains("Content-Type: application/json"), "{}", error.message);
        for bad in ["not json", "41", "{\"to\": 4"] {
            assert_eq!(refused(&app, Method::Post, &rollback, Some(bad)).await.0, 400, "{bad}");
        }
        let big = format!(r#"{{"pad": "{}"}}"#, "x".repeat(MAX_BODY_BYTES));
        assert_eq!(refused(&app, Method::Post, &rollback, Some(&big)).await.0, 413);
    }

    #[tokio::test]
    async fn the_token_guards_every_route_but_the_document() {
        let app = app(&["ops:s3cret"], "0");
        for route in routes::ALL.into_iter().filter(|r| *r != routes::OPENAPI) {
            let (status, _) = send(&app, route.method, &route.path(1), None, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{route}");
            let (status, _) = send(&app, route.method, &route.path(1), Some("wrong"), None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{route}");
        }
        assert_eq!(send(&app, Method::Get, "/status", None, None).await.0, StatusCode::UNAUTHORIZED);
        // With the token, the request gets past the check (and fails on its body).
        let (status, _) = send(&app, Method::Post, &routes::SET_PRIORITY.path(1), Some("s3cret"), Some("{}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, body) = send(&app, Method::Get, routes::OPENAPI.template, None, None).await;
        assert_eq!(status, StatusCode::OK);
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc["info"]["title"], "memberlake admin API");
    }

    #[tokio::test]
    async fn the_rate_limit_covers_the_document_too() {
        let app = app(&[], "1/1h");
        assert_eq!(send(&app, Method::Get, routes::OPENAPI.template, None, None).await.0, StatusCode::OK);
        assert_eq!(
            send(&app, Method::Get, routes::OPENAPI.template, None, None).await.0,
            StatusCode::TOO_MANY_REQUESTS
        );
    }

    #[test]
    fn the_document_describes_every_route() {
        let doc = serde_json::to_value(<admin::ApiDoc as utoipa::OpenApi>::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for route in routes::ALL {
            let op = &paths[route.template][route.method.as_str().to_ascii_lowercase()];
            assert!(op.is_object(), "{route} is not in the document");
            assert!(op["responses"]["200"].is_object() && op["responses"]["429"].is_object(), "{route}");
            let guarded = route != routes::OPENAPI;
            assert_eq!(op["security"][0]["bearer"].is_array(), guarded, "{route}");
            assert_eq!(op["responses"]["401"].is_object(), guarded, "{route}");
        }
        for route in routes::ALL {
            let op = &paths[route.template][route.method.as_str().to_ascii_lowercase()];
            let Some(id) = route.id else {
                assert!(op["parameters"].as_array().is_none_or(|p| p.iter().all(|p| p["in"] != "path")), "{route}");
                continue;
            };
            let param = &op["parameters"][0];
            assert_eq!(
                (&param["name"], &param["in"], param["required"].as_bool()),
                (&json!(id.name()), &json!("path"), Some(true))
            );
            assert!(op["responses"]["400"].is_object(), "{route}");
            match id {
                PathId::File => {
                    assert_eq!(param["schema"]["$ref"], "#/components/schemas/FileId", "{route}");
                    assert_eq!(op["responses"]["404"]["description"], "No such file", "{route}");
                }
                PathId::Advertiser => {
                    assert_eq!(param["schema"]["$ref"], "#/components/schemas/AdvertiserId", "{route}")
                }
                PathId::EmailHash => {
                    assert_eq!(param["schema"]["$ref"], "#/components/schemas/EmailHash", "{route}");
                    assert!(op["responses"]["404"].is_object(), "{route}");
                }
            }
        }
        let rollback = &paths[routes::ROLLBACK.template]["post"];
        assert_eq!(rollback["requestBody"]["required"], false, "a rollback's body is optional");
        for route in [routes::APPROVE, routes::REJECT] {
            assert!(paths[route.template]["post"]["responses"]["409"].is_object(), "{route}: 409 unless held");
        }
        let erase = &paths[routes::ERASE.template]["post"]["responses"];
        assert!(erase["202"].is_object() && erase["200"].is_object(), "recorded now, or before");
        let body_400 = &paths[routes::SET_PRIORITY.template]["post"]["responses"]["400"]["description"];
        assert_eq!(body_400, "Invalid file id or body");
        let methods: usize = paths.values().map(|item| item.as_object().unwrap().len()).sum();
        assert_eq!(methods, routes::ALL.len(), "the document lists exactly the routes");
        for schema in [
            "FileView",
            "FileDetailView",
            "OverviewView",
            "SetPriority",
            "SetWeight",
            "Rollback",
            "RollbackResponse",
            "EraseRequest",
            "ErasureView",
            "EmailHash",
            "ErrorBody",
        ] {
            assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
        }
        assert_eq!(
            doc["components"]["schemas"]["FileView"]["properties"]["state"]["$ref"],
            "#/components/schemas/FileState"
        );
        assert_eq!(
            doc["components"]["schemas"]["FileState"]["enum"],
            json!(["registered", "ingesting", "merging", "held", "ingested", "failed", "cancelled"])
        );
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    }
}
