//! matcher-api as a library: the HTTP API ([`api`]), the active list versions ([`active`]) and
//! the partition cache ([`lookup`]). `main.rs` wires them; the fuzz targets call the request
//! parsers directly.

pub mod active;
pub mod api;
pub mod lookup;
