//! The operator API's contract, defined once: meta-service serves it, [`AdminClient`], the
//! `memberlake` CLI and the integration tests call it.
//!
//! - [`routes`]: every route's method and path template;
//! - [`requests`]: query strings and bodies (unknown fields rejected) and the rules on their
//!   values ([`Validate`]), checked by the server and, before sending, by the client;
//! - [`views`]: the responses, field for field as they are on the wire, and [`ErrorBody`];
//! - [`client`] (feature `client`, on by default): [`AdminClient`].
//!
//! Light on purpose (serde, chrono, utoipa for the OpenAPI schemas, the ids and states of
//! `memberlake-records` without its database encodings): a tool that speaks the admin API does
//! not build the services' I/O stack. The OpenAPI document is served at
//! [`routes::OPENAPI`] (`/admin/v1/openapi.json`).

pub mod requests;
pub mod routes;
pub mod views;

#[cfg(feature = "client")]
pub mod client;

#[cfg(feature = "client")]
pub use client::{AdminClient, AdminError};
pub use memberlake_records::ids::{AdvertiserId, EmailHash, FileId, HashScheme};
pub use memberlake_records::records::RejectReason;
pub use memberlake_records::states::{FileState, RangeState};
pub use requests::{
    hash_email, parse_file_id, EraseRequest, InvalidRequest, LimitQuery, ListFilesQuery, Listing, Rollback,
    SetLifespan, SetPriority, SetWeight, Validate, LIFESPAN_SECS,
};
pub use routes::{PathId, Route};
pub use views::{
    ActionsResponse, ErasureState, ErasureView, ErrorBody, ErrorDetail, FileDetailView, FileResponse, FileView,
    FilesResponse, LifespanView, LifespansResponse, MinuteRowsView, OperatorActionView, OverviewView, RangeCountsView,
    RangeErrorView, ReasonCountView, RejectionSampleView, RetryResponse, RollbackResponse, VersionView, WeightResponse,
};
