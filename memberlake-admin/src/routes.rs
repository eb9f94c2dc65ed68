//! The admin API's routes, spelled once: meta-service mounts these templates and
//! [`AdminClient`](crate::AdminClient) fills them in. `{id}` is a file id, or an advertiser id
//! in [`SET_WEIGHT`].

use std::fmt;

/// The HTTP methods the admin API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
    Put,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One route: a method and a path template (axum and OpenAPI share the `{id}` syntax).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    pub method: Method,
    pub template: &'static str,
}

impl Route {
    const fn new(method: Method, template: &'static str) -> Self {
        Self { method, template }
    }

    /// The path with `{id}` filled in. Ids are digits or `[A-Za-z0-9_-]`, so nothing needs
    /// escaping.
    pub fn path(self, id: impl fmt::Display) -> String {
        self.template.replace("{id}", &id.to_string())
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.template)
    }
}

/// Files, newest first ([`ListFilesQuery`](crate::ListFilesQuery)).
pub const FILES: Route = Route::new(Method::Get, "/admin/v1/files");
/// One file with progress, throughput, ETA, errors and rejection samples.
pub const FILE: Route = Route::new(Method::Get, "/admin/v1/files/{id}");
/// Sets a file's operator priority ([`SetPriority`](crate::SetPriority)).
pub const SET_PRIORITY: Route = Route::new(Method::Post, "/admin/v1/files/{id}/priority");
pub const PAUSE: Route = Route::new(Method::Post, "/admin/v1/files/{id}/pause");
pub const RESUME: Route = Route::new(Method::Post, "/admin/v1/files/{id}/resume");
pub const CANCEL: Route = Route::new(Method::Post, "/admin/v1/files/{id}/cancel");
pub const RETRY: Route = Route::new(Method::Post, "/admin/v1/files/{id}/retry");
/// Sets an advertiser's weight ([`SetWeight`](crate::SetWeight)); `{id}` is the advertiser.
pub const SET_WEIGHT: Route = Route::new(Method::Put, "/admin/v1/advertisers/{id}/weight");
/// The audit log ([`LimitQuery`](crate::LimitQuery)).
pub const ACTIONS: Route = Route::new(Method::Get, "/admin/v1/actions");
/// Queue per lane, files in flight, throughput, recent failures.
pub const OVERVIEW: Route = Route::new(Method::Get, "/admin/v1/overview");
/// This API's OpenAPI document. Served without a token, like the matcher's: it describes the
/// API and holds no data.
pub const OPENAPI: Route = Route::new(Method::Get, "/admin/v1/openapi.json");

/// Every route of the admin API.
pub const ALL: [Route; 11] =
    [FILES, FILE, SET_PRIORITY, PAUSE, RESUME, CANCEL, RETRY, SET_WEIGHT, ACTIONS, OVERVIEW, OPENAPI];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fill_in_the_id() {
        assert_eq!(PAUSE.path(42), "/admin/v1/files/42/pause");
        assert_eq!(SET_WEIGHT.path("acme"), "/admin/v1/advertisers/acme/weight");
        assert_eq!(FILES.path(1), "/admin/v1/files");
    }

    #[test]
    fn each_route_is_listed_once() {
        let unique: std::collections::HashSet<_> = ALL.iter().collect();
        assert_eq!(unique.len(), ALL.len());
        assert!(ALL.iter().all(|r| r.template.starts_with("/admin/v1/")));
    }
}
