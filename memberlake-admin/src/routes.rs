//! The admin API's routes, spelled once: meta-service mounts these templates and
//! [`AdminClient`](crate::AdminClient) fills them in. What a route's path parameter names (a
//! file, an advertiser or an email hash) is part of the route ([`Route::id`]), so the server's
//! document and checks follow it instead of guessing from the path.

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

/// What the one parameter of a route's path (`{id}`, or `{hash}` for an email hash) names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathId {
    /// A file id (a positive integer), which is also the list version's id.
    File,
    /// An advertiser id (`[A-Za-z0-9_-]{1,64}`).
    Advertiser,
    /// An email hash (32 hex digits), `{hash}`.
    EmailHash,
}

impl PathId {
    /// The parameter's name in the template (and the OpenAPI document).
    pub const fn name(self) -> &'static str {
        match self {
            PathId::File | PathId::Advertiser => "id",
            PathId::EmailHash => "hash",
        }
    }

    /// The parameter as the template spells it: `{id}` or `{hash}`.
    pub const fn placeholder(self) -> &'static str {
        match self {
            PathId::File | PathId::Advertiser => "{id}",
            PathId::EmailHash => "{hash}",
        }
    }
}

/// One route: a method and a path template (axum and OpenAPI share the `{id}` syntax).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    pub method: Method,
    pub template: &'static str,
    /// What the template's parameter ([`PathId::placeholder`]) names; `None`: the path has none.
    pub id: Option<PathId>,
}

impl Route {
    const fn new(method: Method, template: &'static str) -> Self {
        Self { method, template, id: None }
    }

    /// A route on one file: `{id}` is a file id.
    const fn file(method: Method, template: &'static str) -> Self {
        Self { method, template, id: Some(PathId::File) }
    }

    /// A route on one advertiser: `{id}` is an advertiser id.
    const fn advertiser(method: Method, template: &'static str) -> Self {
        Self { method, template, id: Some(PathId::Advertiser) }
    }

    /// A route on one erasure: `{hash}` is an email hash.
    const fn email_hash(method: Method, template: &'static str) -> Self {
        Self { method, template, id: Some(PathId::EmailHash) }
    }

    /// The path with its parameter filled in (a path without one is the template). Ids are
    /// digits, hex digits or `[A-Za-z0-9_-]`, so nothing needs escaping.
    pub fn path(self, id: impl fmt::Display) -> String {
        match self.id {
            Some(param) => self.template.replace(param.placeholder(), &id.to_string()),
            None => self.template.to_owned(),
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.template)
    }
}

/// Files, newest first ([`ListFilesQuery`](crate::ListFilesQuery)).
pub const FILES: Route = Route::new(Method::Get, "/admin/v1/files");
/// One file with progress, throughput, ETA, errors, rejection samples and its version report.
pub const FILE: Route = Route::file(Method::Get, "/admin/v1/files/{id}");
/// Sets a file's operator priority ([`SetPriority`](crate::SetPriority)).
pub const SET_PRIORITY: Route = Route::file(Method::Post, "/admin/v1/files/{id}/priority");
pub const PAUSE: Route = Route::file(Method::Post, "/admin/v1/files/{id}/pause");
pub const RESUME: Route = Route::file(Method::Post, "/admin/v1/files/{id}/resume");
pub const CANCEL: Route = Route::file(Method::Post, "/admin/v1/files/{id}/cancel");
pub const RETRY: Route = Route::file(Method::Post, "/admin/v1/files/{id}/retry");
/// Approves a held version: it goes on to activation (the guard that held it does not ask again).
pub const APPROVE: Route = Route::file(Method::Post, "/admin/v1/files/{id}/approve");
/// Rejects a held version: it is cancelled and any rows it wrote are undone.
pub const REJECT: Route = Route::file(Method::Post, "/admin/v1/files/{id}/reject");
/// Sets an advertiser's weight ([`SetWeight`](crate::SetWeight)).
pub const SET_WEIGHT: Route = Route::advertiser(Method::Put, "/admin/v1/advertisers/{id}/weight");
/// Sets how long an advertiser's list keeps matching after its upload
/// ([`SetLifespan`](crate::SetLifespan)).
pub const SET_LIFESPAN: Route = Route::advertiser(Method::Put, "/admin/v1/advertisers/{id}/lifespan");
/// Every advertiser with a lifespan, with its active list's expiry.
pub const LIFESPANS: Route = Route::new(Method::Get, "/admin/v1/lifespans");
/// Erases a person from every list, for good ([`EraseRequest`](crate::EraseRequest): the email
/// or its hash): 202 when it records the erasure, 200 with the one already recorded.
pub const ERASE: Route = Route::new(Method::Post, "/admin/v1/erasures");
/// One erasure, by email hash, and how far it has come.
pub const ERASURE: Route = Route::email_hash(Method::Get, "/admin/v1/erasures/{hash}");
/// Rolls an advertiser back to an earlier version ([`Rollback`](crate::Rollback)), as a new
/// version.
pub const ROLLBACK: Route = Route::advertiser(Method::Post, "/admin/v1/advertisers/{id}/rollback");
/// The audit log ([`LimitQuery`](crate::LimitQuery)).
pub const ACTIONS: Route = Route::new(Method::Get, "/admin/v1/actions");
/// Queue per lane, files in flight, throughput, recent failures.
pub const OVERVIEW: Route = Route::new(Method::Get, "/admin/v1/overview");
/// This API's OpenAPI document. Served without a token, like the matcher's: it describes the
/// API and holds no data.
pub const OPENAPI: Route = Route::new(Method::Get, "/admin/v1/openapi.json");

/// Every route of the admin API.
pub const ALL: [Route; 18] = [
    FILES,
    FILE,
    SET_PRIORITY,
    PAUSE,
    RESUME,
    CANCEL,
    RETRY,
    APPROVE,
    REJECT,
    SET_WEIGHT,
    SET_LIFESPAN,
    LIFESPANS,
    ERASE,
    ERASURE,
    ROLLBACK,
    ACTIONS,
    OVERVIEW,
    OPENAPI,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fill_in_the_id() {
        assert_eq!(PAUSE.path(42), "/admin/v1/files/42/pause");
        assert_eq!(SET_WEIGHT.path("acme"), "/admin/v1/advertisers/acme/weight");
        assert_eq!(APPROVE.path(7), "/admin/v1/files/7/approve");
        assert_eq!(ROLLBACK.path("acme"), "/admin/v1/advertisers/acme/rollback");
        assert_eq!(FILES.path(1), "/admin/v1/files");
        let hash = "c160f8cc69a4f0bf2b0362752353d060";
        assert_eq!(ERASURE.path(hash), format!("/admin/v1/erasures/{hash}"));
        assert_eq!(ERASE.path(hash), "/admin/v1/erasures");
    }

    #[test]
    fn each_route_is_listed_once() {
        let unique: std::collections::HashSet<_> = ALL.iter().collect();
        assert_eq!(unique.len(), ALL.len());
        assert!(ALL.iter().all(|r| r.template.starts_with("/admin/v1/")));
    }

    #[test]
    fn a_route_names_its_id_exactly_when_its_path_has_one() {
        for route in ALL {
            let params = route.template.matches('{').count();
            assert_eq!(params, usize::from(route.id.is_some()), "{route}: one parameter, named by `id`");
            if let Some(id) = route.id {
                assert!(route.template.contains(id.placeholder()), "{route}");
                assert_eq!(id.placeholder(), format!("{{{}}}", id.name()), "{route}");
            }
            let prefix = match route.id {
                Some(PathId::File) => "/admin/v1/files/{id}",
                Some(PathId::Advertiser) => "/admin/v1/advertisers/{id}/",
                Some(PathId::EmailHash) => "/admin/v1/erasures/{hash}",
                None => "/admin/v1/",
            };
            assert!(route.template.starts_with(prefix), "{route}");
        }
    }
}
