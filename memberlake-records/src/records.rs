//! The hashing contract: how one line of a member list becomes an [`EmailHash`], or is
//! skipped (blank, header), or is rejected with a reason.
//!
//! Rules (DESIGN.md, "File format and normalization"):
//! - an optional UTF-8 BOM on the very first line; an optional header line `email`
//!   (case-insensitive) as the very first line;
//! - `\n` or `\r\n` line ends; blank lines skipped; one pair of surrounding double quotes
//!   stripped;
//! - trim ASCII whitespace, lowercase; a record must have exactly one `@`, a non-empty local part
//!   and domain, and at most 254 bytes, otherwise it is rejected and counted;
//! - exactly the deployment's hash width in hex digits (32 for MD5, 64 for SHA-256) is an
//!   already-hashed email; the other scheme's width is rejected ([`RejectReason::WrongHashLength`]);
//! - `email_hash` = the deployment's hash ([`HashScheme`], `MEMBERLAKE_HASH`: MD5 by default, or
//!   SHA-256) of the normalized email's UTF-8 bytes.
//!
//! Nothing here logs, stores or returns the line's contents: a rejection carries only a reason.

use serde::{Deserialize, Serialize};

use crate::ids::{EmailHash, HashScheme};

/// Longest normalized email accepted (RFC 5321 path limit).
pub const MAX_EMAIL_BYTES: usize = 254;

/// Longest raw line the readers keep in memory. Longer lines are rejected as
/// [`RejectReason::LineTooLong`] without being buffered; this is what bounds memory on a
/// file without newlines.
pub const MAX_LINE_BYTES: usize = 4096;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why a record was rejected. Serialized as snake_case in rejection samples and the APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The line is not valid UTF-8 (and not a 32-hex-digit hash).
    NotUtf8,
    /// Nothing left after stripping quotes and whitespace (e.g. `""`).
    Empty,
    /// No `@`.
    MissingAt,
    /// More than one `@`.
    MultipleAt,
    EmptyLocalPart,
    EmptyDomain,
    /// Normalized email longer than [`MAX_EMAIL_BYTES`].
    TooLong,
    /// Raw line longer than [`MAX_LINE_BYTES`].
    LineTooLong,
    /// A pre-hashed row of the other scheme's width (64 hex digits in an MD5 deployment, 32 in
    /// a SHA-256 one): its email cannot be hashed by this deployment's scheme.
    WrongHashLength,
}

impl RejectReason {
    pub const ALL: [RejectReason; 9] = [
        RejectReason::NotUtf8,
        RejectReason::Empty,
        RejectReason::MissingAt,
        RejectReason::MultipleAt,
        RejectReason::EmptyLocalPart,
        RejectReason::EmptyDomain,
        RejectReason::TooLong,
        RejectReason::LineTooLong,
        RejectReason::WrongHashLength,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::NotUtf8 => "not_utf8",
            RejectReason::Empty => "empty",
            RejectReason::MissingAt => "missing_at",
            RejectReason::MultipleAt => "multiple_at",
            RejectReason::EmptyLocalPart => "empty_local_part",
            RejectReason::EmptyDomain => "empty_domain",
            RejectReason::TooLong => "too_long",
            RejectReason::LineTooLong => "line_too_long",
            RejectReason::WrongHashLength => "wrong_hash_length",
        }
    }
}

/// What one line turned into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Record {
    /// A member: the hash to store.
    Member(EmailHash),
    /// Blank line or the header line: neither a member nor a rejection.
    Skipped,
    Rejected(RejectReason),
}

/// Parses one line (without its `\n`) under the deployment's scheme. `first_line` is true only
/// for the line at byte offset 0 of the (decompressed) object, where a BOM and a header are
/// allowed.
pub fn parse_line(line: &[u8], first_line: bool) -> Record {
    parse_line_as(line, first_line, HashScheme::deployment())
}

/// [`parse_line`] under `scheme`.
pub fn parse_line_as(line: &[u8], first_line: bool, scheme: HashScheme) -> Record {
    // A per-thread scratch buffer: no allocation per line.
    thread_local! {
        static ARENA: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(MAX_EMAIL_BYTES));
    }
    ARENA.with(|arena| {
        let mut arena = arena.borrow_mut();
        arena.clear();
        match classify(line, first_line, scheme, &mut arena) {
            Step::Done(record) => record,
            Step::Email(range) => Record::Member(scheme.hash(&arena[range])),
        }
    })
}

/// Parses many lines `(offset, line)` — the line at offset 0 may carry a BOM and a header —
/// applying the [`MAX_LINE_BYTES`] cap, and hashes the emails four at a time
/// ([`crate::md5x4`]). Same results as [`parse_line`] line by line, faster.
pub fn parse_lines(lines: &[(u64, &[u8])]) -> Vec<(u64, Record)> {
    parse_lines_as(lines, HashScheme::deployment())
}

/// [`parse_lines`] under `scheme`: MD5 four lanes at a time, SHA-256 one email at a time (with
/// the CPU's SHA extensions, it is not the bottleneck; BENCHMARKS.md).
pub fn parse_lines_as(lines: &[(u64, &[u8])], scheme: HashScheme) -> Vec<(u64, Record)> {
    if scheme != HashScheme::Md5 {
        let mut arena = Vec::with_capacity(MAX_EMAIL_BYTES);
        return lines
            .iter()
            .map(|&(offset, line)| {
                let record = if line.len() > MAX_LINE_BYTES {
                    Record::Rejected(RejectReason::LineTooLong)
                } else {
                    arena.clear();
                    match classify(line, offset == 0, scheme, &mut arena) {
                        Step::Done(record) => record,
                        Step::Email(range) => Record::Member(scheme.hash(&arena[range])),
                    }
                };
                (offset, record)
            })
            .collect();
    }
    let mut out = Vec::with_capacity(lines.len());
    // Up to four normalized emails waiting for a lane, each in its own buffer.
    let mut bufs = [[0u8; MAX_EMAIL_BYTES]; 4];
    let mut lens = [0usize; 4];
    let mut slots = [0usize; 4];
    let mut waiting = 0;
    let mut arena = Vec::with_capacity(MAX_EMAIL_BYTES);
    for &(offset, line) in lines {
        let step = if line.len() > MAX_LINE_BYTES {
            Step::Done(Record::Rejected(RejectReason::LineTooLong))
        } else {
            arena.clear();
            classify(line, offset == 0, scheme, &mut arena)
        };
        match step {
            Step::Done(record) => out.push((offset, record)),
            Step::Email(range) if range.len() <= crate::md5x4::MAX_SINGLE_BLOCK => {
                let email = &arena[range];
                bufs[waiting][..email.len()].copy_from_slice(email);
                lens[waiting] = email.len();
                slots[waiting] = out.len();
                out.push((offset, Record::Skipped)); // replaced when its lane is hashed
                waiting += 1;
                if waiting == 4 {
                    let digests = crate::md5x4::md5_x4([
                        &bufs[0][..lens[0]],
                        &bufs[1][..lens[1]],
                        &bufs[2][..lens[2]],
                        &bufs[3][..lens[3]],
                    ]);
                    for (slot, digest) in slots.iter().zip(digests) {
                        out[*slot].1 = Record::Member(EmailHash::md5(digest));
                    }
                    waiting = 0;
                }
            }
            Step::Email(range) => out.push((offset, Record::Member(md5_hash(&arena[range])))),
        }
    }
    for k in 0..waiting {
        out[slots[k]].1 = Record::Member(md5_hash(&bufs[k][..lens[k]]));
    }
    out
}

/// A line's fate before hashing: decided, or a normalized email stored in the arena.
enum Step {
    Done(Record),
    Email(std::ops::Range<usize>),
}

fn classify(line: &[u8], first_line: bool, scheme: HashScheme, arena: &mut Vec<u8>) -> Step {
    let mut line = line;
    if first_line {
        line = line.strip_prefix(UTF8_BOM).unwrap_or(line);
    }
    let mut value = line.trim_ascii();
    if value.is_empty() {
        return Step::Done(Record::Skipped);
    }
    if value.len() >= 2 && value[0] == b'"' && value[value.len() - 1] == b'"' {
        value = value[1..value.len() - 1].trim_ascii();
        if value.is_empty() {
            return Step::Done(Record::Rejected(RejectReason::Empty));
        }
    }
    if first_line && value.eq_ignore_ascii_case(b"email") {
        return Step::Done(Record::Skipped);
    }
    if HashScheme::ALL.iter().any(|h| h.hex_len() == value.len()) && value.iter().all(u8::is_ascii_hexdigit) {
        // Cannot fail for this scheme's width: that many hex digits.
        return Step::Done(
            scheme.parse_hex(value).map_or(Record::Rejected(RejectReason::WrongHashLength), Record::Member),
        );
    }
    match normalize_into(value, arena) {
        Ok(range) => Step::Email(range),
        Err(reason) => Step::Done(Record::Rejected(reason)),
    }
}

/// Lower-cases `value` (already trimmed) onto the end of `arena` and checks it looks like an
/// email; returns where it is. ASCII input, the common case, is lower-cased in place.
fn normalize_into(value: &[u8], arena: &mut Vec<u8>) -> Result<std::ops::Range<usize>, RejectReason> {
    let start = arena.len();
    if value.is_ascii() {
        // A lower-cased ASCII string has the same length; check it before copying.
        if value.len() > MAX_EMAIL_BYTES {
            return Err(RejectReason::TooLong);
        }
        arena.extend_from_slice(value);
        arena[start..].make_ascii_lowercase();
    } else {
        let text = std::str::from_utf8(value).map_err(|_| RejectReason::NotUtf8)?;
        let lowered = text.to_lowercase();
        if lowered.len() > MAX_EMAIL_BYTES {
            return Err(RejectReason::TooLong);
        }
        arena.extend_from_slice(lowered.as_bytes());
    }
    if let Err(reason) = check_email_shape(&arena[start..]) {
        arena.truncate(start);
        return Err(reason);
    }
    Ok(start..arena.len())
}

/// Lower-cases `value` (already trimmed), checks it looks like an email and hashes it (the
/// deployment's scheme).
pub fn normalize_and_hash(value: &[u8]) -> Result<EmailHash, RejectReason> {
    let mut arena = Vec::new();
    normalize_into(value, &mut arena).map(|range| HashScheme::deployment().hash(&arena[range]))
}

fn check_email_shape(email: &[u8]) -> Result<(), RejectReason> {
    let mut ats = email.iter().enumerate().filter(|(_, b)| **b == b'@').map(|(i, _)| i);
    let at = ats.next().ok_or(RejectReason::MissingAt)?;
    if ats.next().is_some() {
        return Err(RejectReason::MultipleAt);
    }
    if at == 0 {
        return Err(RejectReason::EmptyLocalPart);
    }
    if at + 1 == email.len() {
        return Err(RejectReason::EmptyDomain);
    }
    Ok(())
}

/// MD5 of already-normalized bytes.
pub fn md5_hash(normalized: &[u8]) -> EmailHash {
    HashScheme::Md5.hash(normalized)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The batched, multi-buffer path gives exactly what the line-by-line path gives.
        #[test]
        fn parse_lines_matches_parse_line(lines in proptest::collection::vec(
            prop_oneof![
                "[A-Za-z0-9. \"]{0,20}@[a-z]{1,10}\\.[a-z]{2,3}[ ]{0,2}".prop_map(String::into_bytes),
                "[0-9a-fA-F]{32}".prop_map(String::into_bytes),
                proptest::collection::vec(any::<u8>(), 0..80),
                (250usize..5000).prop_map(|n| vec![b'a'; n]),
            ],
            0..50,
        )) {
            let items: Vec<(u64, &[u8])> = lines.iter().enumerate().map(|(i, l)| (i as u64 * 7, l.as_slice())).collect();
            let batched = parse_lines(&items);
            let one_by_one: Vec<(u64, Record)> = items
                .iter()
                .map(|(o, l)| (*o, if l.len() > MAX_LINE_BYTES { Record::Rejected(RejectReason::LineTooLong) } else { parse_line(l, *o == 0) }))
                .collect();
            prop_assert_eq!(batched, one_by_one);
        }
    }

    proptest! {
        /// Under SHA-256, a line hashes as SHA-256 of what MD5 would have hashed, the batched
        /// path agrees with the line path, and pre-hashed rows are taken at their own width only.
        #[test]
        fn sha256_hashes_what_md5_normalizes(lines in proptest::collection::vec(
            prop_oneof![
                "[A-Za-z0-9. \"]{0,20}@[a-z]{1,10}\\.[a-z]{2,3}[ ]{0,2}".prop_map(String::into_bytes),
                "[0-9a-fA-F]{32}".prop_map(String::into_bytes),
                "[0-9a-fA-F]{64}".prop_map(String::into_bytes),
                proptest::collection::vec(any::<u8>(), 0..80),
            ],
            0..40,
        )) {
            let items: Vec<(u64, &[u8])> = lines.iter().enumerate().map(|(i, l)| (i as u64 * 7, l.as_slice())).collect();
            let batched = parse_lines_as(&items, HashScheme::Sha256);
            for ((offset, line), (o, record)) in items.iter().zip(&batched) {
                prop_assert_eq!(offset, o);
                prop_assert_eq!(*record, parse_line_as(line, *offset == 0, HashScheme::Sha256));
                let hex = line.trim_ascii();
                let prehashed = hex.iter().all(u8::is_ascii_hexdigit);
                let md5 = parse_line_as(line, *offset == 0, HashScheme::Md5);
                match (md5, record) {
                    (Record::Member(_), _) if prehashed && hex.len() == 32 => {
                        prop_assert_eq!(*record, Record::Rejected(RejectReason::WrongHashLength))
                    }
                    (Record::Rejected(RejectReason::WrongHashLength), Record::Member(h)) => {
                        prop_assert_eq!(h.to_hex(), String::from_utf8_lossy(hex).to_lowercase())
                    }
                    (Record::Member(_), Record::Member(h)) => prop_assert_eq!(h.scheme(), HashScheme::Sha256),
                    (other, _) => prop_assert_eq!(other, *record),
                }
            }
        }
    }

    #[test]
    fn a_sha256_line_is_the_sha256_of_the_normalized_email() {
        let h = HashScheme::Sha256.hash(b"jane@example.com");
        assert_eq!(parse_line_as(b" \"Jane@Example.COM\" ", false, HashScheme::Sha256), Record::Member(h));
        assert_eq!(parse_line_as(h.to_hex().as_bytes(), false, HashScheme::Sha256), Record::Member(h));
        assert_eq!(
            parse_line_as(h.to_hex().as_bytes(), false, HashScheme::Md5),
            Record::Rejected(RejectReason::WrongHashLength)
        );
        assert_eq!(
            parse_line_as(&[b'a'; 32], false, HashScheme::Sha256),
            Record::Rejected(RejectReason::WrongHashLength)
        );
    }

    fn member(hex: &str) -> Record {
        Record::Member(EmailHash::from_hex(hex.as_bytes()).unwrap())
    }

    /// Vectors computed independently with coreutils: `printf %s 'x' | md5sum`.
    #[test]
    fn fixed_vectors() {
        // printf %s 'alice@example.com' | md5sum
        let alice = "c160f8cc69a4f0bf2b0362752353d060";
        assert_eq!(parse_line(b"alice@example.com", false), member(alice));
        assert_eq!(parse_line(b"  Alice@Example.COM \r", false), member(alice));
        assert_eq!(parse_line(b"\"Alice@example.com\"", false), member(alice));
        assert_eq!(parse_line(b"\t\" alice@example.com \" ", false), member(alice));
        assert_eq!(parse_line(b"\xEF\xBB\xBFalice@example.com", true), member(alice));
        // printf %s 'bob.smith+tag@mail.co.uk' | md5sum
        assert_eq!(parse_line(b"Bob.Smith+tag@Mail.co.UK", false), member("f57408735b9414f057c79c43f742dc7b"));
        // printf %s 'jörg@bücher.de' | md5sum   (Unicode lower-casing of 'JÖRG@BÜCHER.DE')
        assert_eq!(parse_line("JÖRG@BÜCHER.DE".as_bytes(), false), member("3a212d3b4853b31737ded37ec3bf1ab4"));
    }

    #[test]
    fn prehashed_rows_are_taken_as_hashes() {
        assert_eq!(parse_line(b"C160F8CC69A4F0BF2B0362752353D060", false), member("c160f8cc69a4f0bf2b0362752353d060"));
        assert_eq!(
            parse_line(b"\"c160f8cc69a4f0bf2b0362752353d060\"\r", false),
            member("c160f8cc69a4f0bf2b0362752353d060")
        );
    }

    #[test]
    fn skips_blank_and_header() {
        assert_eq!(parse_line(b"", false), Record::Skipped);
        assert_eq!(parse_line(b"  \t\r", false), Record::Skipped);
        assert_eq!(parse_line(b"Email", true), Record::Skipped);
        assert_eq!(parse_line(b"\xEF\xBB\xBFEMAIL\r", true), Record::Skipped);
        // A header anywhere but the first line is a bad record.
        assert_eq!(parse_line(b"email", false), Record::Rejected(RejectReason::MissingAt));
        // A BOM anywhere but the first line is part of the record.
        assert_eq!(parse_line(b"\xEF\xBB\xBFa@b", false), Record::Member(md5_hash("\u{feff}a@b".as_bytes())));
    }

    #[test]
    fn rejections() {
        use RejectReason::*;
        assert_eq!(parse_line(b"no-at-sign", false), Record::Rejected(MissingAt));
        assert_eq!(parse_line(b"a@b@c", false), Record::Rejected(MultipleAt));
        assert_eq!(parse_line(b"@b.com", false), Record::Rejected(EmptyLocalPart));
        assert_eq!(parse_line(b"a@", false), Record::Rejected(EmptyDomain));
        assert_eq!(parse_line(b"\"\"", false), Record::Rejected(Empty));
        assert_eq!(parse_line(b"a\xFF@b.com", false), Record::Rejected(NotUtf8));
        let long = format!("{}@b.com", "a".repeat(250));
        assert_eq!(parse_line(long.as_bytes(), false), Record::Rejected(TooLong));
        let just_fits = format!("{}@b.com", "a".repeat(248));
        assert_eq!(just_fits.len(), 254);
        assert!(matches!(parse_line(just_fits.as_bytes(), false), Record::Member(_)));
    }
}
