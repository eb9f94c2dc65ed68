//! memberlake's data contract, kept free of I/O and heavy dependencies so that it can be
//! fuzzed (`fuzz/`), property-tested, and reused by tools:
//! - [`ids`]: identifiers parsed once at the edge (`AdvertiserId`, `EmailHash`, ...);
//! - [`records`]: the hashing contract, one line at a time;
//! - [`ranges`]: byte ranges and the range-boundary rule, streaming;
//! - [`requests`]: the matcher API's request grammar.
//!
//! `memberlake-core` re-exports the first three as `memberlake::{ids, records, ranges}`.

pub mod ids;
pub mod md5x4;
pub mod ranges;
pub mod records;
pub mod requests;
