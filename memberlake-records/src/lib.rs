//! memberlake's data contract, kept free of I/O and heavy dependencies so that it can be
//! fuzzed (`fuzz/`), property-tested, and reused by tools:
//! - [`ids`]: identifiers parsed once at the edge (`AdvertiserId`, `EmailHash`, ...);
//! - [`records`]: the hashing contract, one line at a time;
//! - [`ranges`]: byte ranges and the range-boundary rule, streaming;
//! - [`manifest`]: the run format of version manifests (sorted hash sets, bucketed by prefix),
//!   and merging and diffing them, so a new list version costs what changed;
//! - [`filter`]: membership filters (binary fuse) over a manifest bucket, so the matcher
//!   answers most "not a member" questions from memory;
//! - [`requests`]: the matcher API's request grammar;
//! - [`states`]: the lifecycle states of files and ranges (the catalog's Postgres enums);
//! - `openapi` (feature `openapi`): the OpenAPI schemas of the ids and states, built from the
//!   rules their parsers apply.
//!
//! `memberlake-core` re-exports them as `memberlake::{ids, records, ranges, states}`.

pub mod filter;
pub mod ids;
pub mod manifest;
pub mod md5x4;
#[cfg(any(feature = "openapi", test))]
pub mod openapi;
pub mod ranges;
pub mod records;
pub mod requests;
pub mod states;
