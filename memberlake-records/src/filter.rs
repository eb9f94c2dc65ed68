//! Membership filters: a compact, immutable summary of one manifest bucket that answers
//! "definitely not a member" from memory (issue 21).
//!
//! Most questions the matcher is asked have the answer "no", and an uncached "no" costs a
//! partition read. A [`MemberFilter`] over a version's members answers most of those without
//! the store: a hash it does not contain is certainly not a member; a hash it contains *may* be
//! one (a false positive rate of ~2^-8 or ~2^-16, by [`FingerprintBits`]) and is read from the
//! store as before. Filters are **binary fuse filters** (Graf & Lemire, "Binary Fuse Filters:
//! Fast and Smaller Than Xor Filters", 2022; the `xorf` crate): about 9 (8-bit fingerprints) or
//! 18 (16-bit) bits per member, three memory accesses per probe, built in linear time.
//!
//! **One filter per manifest bucket.** The merge stage holds one bucket's members at a time
//! (`manifest`'s buckets), so that is what it summarises: memory while building is bounded by a
//! bucket, and a version's filter is its buckets' filters side by side, probed with the bucket
//! of the hash ([`crate::manifest::Buckets::bucket_of`]).
//!
//! **Never a false "no".** Every member's key is in its bucket's filter: [`MemberFilter::build`]
//! takes the bucket's sorted members and the property tests check every one of them passes. A
//! filter may hold *more* than the members (an erased hash, until the bucket is rebuilt): that
//! only costs a store read.
//!
//! **Keys.** A hash's key is its leading 8 bytes, big-endian ([`filter_key`]): a sorted bucket
//! gives sorted keys, so de-duplicating them (two hashes that share 64 leading bits, which the
//! filter cannot tell apart anyway) is one pass. The filter mixes keys with its own seeded hash,
//! so the bucket prefix that all keys of a bucket share costs nothing.
//!
//! # The filter format (v2)
//!
//! All integers little-endian.
//!
//! ```text
//! offset
//! 0     magic b"MLFUSE\0\x02" (8) | kind u8 | hash_len u8 | 6 zero bytes
//! 16    keys u64 (distinct keys)  | seed u64 | segment_length u32 | segment_length_mask u32
//!       | segment_count_length u32 | 4 zero bytes
//! 48    binding u64: FNV-1a 64 of the object's key, which names the advertiser, the version
//!       and the bucket ([`FilterBinding`])                                 (56 bytes so far)
//! 56    payload: kind 0 (empty) nothing; kind 1 (exact) `keys` u64 keys, ascending;
//!       kind 8 / 16: the fingerprints, u8 / u16 each
//! end-8 FNV-1a 64 of every byte before it
//! ```
//!
//! The binding makes a filter answer only for the bucket it was built for: a filter object
//! found under another key (copied, restored from another deployment's backup, left behind by
//! a version whose id was reused) is refused, and the store answers that version. Version 1
//! (magic `\x01`, a 48-byte header without a binding), written by the first release with
//! filters, is still read.
//!
//! A bucket of fewer than [`EXACT_MAX`] members keeps its keys themselves (kind 1): no false
//! positive at all, and smaller than a fuse filter's fixed overhead at that size.

use thiserror::Error;
use xorf::{BinaryFuse16, BinaryFuse8, Descriptor, Filter};

use crate::ids::EmailHash;
use crate::manifest::{Buckets, Fnv1a64};

const MAGIC: &[u8; 8] = b"MLFUSE\0\x02";
/// The first format's magic: no binding (read, never written).
const MAGIC_V1: &[u8; 8] = b"MLFUSE\0\x01";
const HEADER_LEN: usize = 56;
const HEADER_LEN_V1: usize = 48;
const CHECKSUM_LEN: usize = 8;

/// Below this many distinct keys a bucket keeps its keys (8 bytes each) instead of a filter.
pub const EXACT_MAX: usize = 64;

/// The width of a filter's fingerprints: the trade between memory and false positives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FingerprintBits {
    /// ~9.0 bits per member, ~0.39 % false positives.
    #[default]
    Eight,
    /// ~18.1 bits per member, ~0.0015 % false positives.
    Sixteen,
}

impl FingerprintBits {
    /// 8 or 16.
    pub const fn bits(self) -> u8 {
        match self {
            Self::Eight => 8,
            Self::Sixteen => 16,
        }
    }

    /// The theoretical false-positive probability of a probe for a non-member: 2^-bits.
    pub fn false_positive_rate(self) -> f64 {
        (-f64::from(self.bits())).exp2()
    }
}

impl std::str::FromStr for FingerprintBits {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "8" => Ok(Self::Eight),
            "16" => Ok(Self::Sixteen),
            other => Err(format!("fingerprint bits must be 8 or 16, got {other:?}")),
        }
    }
}

impl std::fmt::Display for FingerprintBits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.bits())
    }
}

/// A filter that cannot be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("not a memberlake filter: the magic bytes are wrong")]
    BadMagic,
    #[error("filter truncated: {0}")]
    Truncated(&'static str),
    #[error("checksum mismatch: the filter is corrupt")]
    ChecksumMismatch,
    #[error("unknown filter kind {0}")]
    UnknownKind(u8),
    #[error("the filter is over {found}-byte hashes; this deployment uses {expected}-byte hashes")]
    WrongHashLength { expected: u8, found: u8 },
    #[error("filter is inconsistent: {0}")]
    Inconsistent(&'static str),
    #[error("the filter was built for another object (binding {found:#018x}, expected {expected:#018x})")]
    WrongObject { expected: u64, found: u64 },
    #[error("building a filter of {keys} keys failed: {reason}")]
    Build { keys: usize, reason: &'static str },
}

/// What a filter object is bound to: the key it is stored under (which names its advertiser,
/// version and bucket), as a checksum. Written by [`MemberFilter::encode`], checked by
/// [`MemberFilter::decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterBinding(u64);

impl FilterBinding {
    /// The binding of the filter object stored under `key`.
    pub fn of_key(key: &str) -> Self {
        Self(Fnv1a64::of(key.as_bytes()))
    }
}

/// A hash's key in a filter: its leading 8 bytes, big-endian (so sorted hashes give sorted keys).
pub fn filter_key(hash: &EmailHash) -> u64 {
    let bytes = hash.as_bytes();
    u64::from_be_bytes(bytes[..8].try_into().expect("a hash has at least 8 bytes"))
}

#[derive(Clone)]
enum Kind {
    Empty,
    Exact(Box<[u64]>),
    Fuse8(BinaryFuse8),
    Fuse16(BinaryFuse16),
}

/// One manifest bucket's filter: [`contains`](Self::contains) is false only for a hash that is
/// certainly not among the members it was built from.
#[derive(Clone)]
pub struct MemberFilter {
    kind: Kind,
    hash_len: u8,
    keys: u64,
}

impl std::fmt::Debug for MemberFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberFilter")
            .field("kind", &self.kind_byte())
            .field("keys", &self.keys)
            .field("bytes", &self.memory_bytes())
            .finish()
    }
}

impl MemberFilter {
    /// The filter of `members`, which must be sorted ascending (a manifest bucket is), all of
    /// one scheme's width.
    pub fn build(bits: FingerprintBits, members: &[EmailHash]) -> Result<Self, FilterError> {
        let hash_len = members.first().map_or(0, |h| h.as_bytes().len() as u8);
        let mut keys: Vec<u64> = members.iter().map(filter_key).collect();
        if !keys.is_sorted() {
            keys.sort_unstable();
        }
        keys.dedup();
        let n = keys.len();
        let kind = match n {
            0 => Kind::Empty,
            n if n < EXACT_MAX => Kind::Exact(keys.into_boxed_slice()),
            n => {
                let fail = |reason| FilterError::Build { keys: n, reason };
                match bits {
                    FingerprintBits::Eight => Kind::Fuse8(BinaryFuse8::try_from(&keys).map_err(fail)?),
                    FingerprintBits::Sixteen => Kind::Fuse16(BinaryFuse16::try_from(&keys).map_err(fail)?),
                }
            }
        };
        Ok(Self { kind, hash_len, keys: n as u64 })
    }

    /// False: `hash` is certainly not a member. True: it may be (ask the store).
    #[inline]
    pub fn contains(&self, hash: &EmailHash) -> bool {
        let key = filter_key(hash);
        match &self.kind {
            Kind::Empty => false,
            Kind::Exact(keys) => keys.binary_search(&key).is_ok(),
            Kind::Fuse8(f) => f.contains(&key),
            Kind::Fuse16(f) => f.contains(&key),
        }
    }

    /// The distinct keys it was built from.
    pub fn keys(&self) -> u64 {
        self.keys
    }

    /// Memory its probes read (the fingerprints or keys), in bytes.
    pub fn memory_bytes(&self) -> usize {
        match &self.kind {
            Kind::Empty => 0,
            Kind::Exact(keys) => keys.len() * 8,
            Kind::Fuse8(f) => f.fingerprints.len(),
            Kind::Fuse16(f) => f.fingerprints.len() * 2,
        }
    }

    /// Its fingerprints' width (`None`: an exact or empty filter, which has none).
    pub fn fingerprint_bits(&self) -> Option<FingerprintBits> {
        match self.kind {
            Kind::Fuse8(_) => Some(FingerprintBits::Eight),
            Kind::Fuse16(_) => Some(FingerprintBits::Sixteen),
            Kind::Empty | Kind::Exact(_) => None,
        }
    }

    /// Whether a probe can say "maybe" for a non-member (an exact or empty filter cannot).
    pub fn is_approximate(&self) -> bool {
        matches!(self.kind, Kind::Fuse8(_) | Kind::Fuse16(_))
    }

    fn kind_byte(&self) -> u8 {
        match self.kind {
            Kind::Empty => 0,
            Kind::Exact(_) => 1,
            Kind::Fuse8(_) => 8,
            Kind::Fuse16(_) => 16,
        }
    }

    /// The filter in the v2 format (module docs), bound to the object it is stored as.
    pub fn encode(&self, binding: FilterBinding) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.memory_bytes() + CHECKSUM_LEN);
        out.extend_from_slice(MAGIC);
        out.push(self.kind_byte());
        out.push(self.hash_len);
        out.extend_from_slice(&[0; 6]);
        out.extend_from_slice(&self.keys.to_le_bytes());
        let descriptor = match &self.kind {
            Kind::Fuse8(f) => Some(&f.descriptor),
            Kind::Fuse16(f) => Some(&f.descriptor),
            Kind::Empty | Kind::Exact(_) => None,
        };
        let (seed, length, mask, count_length) = descriptor
            .map_or((0, 0, 0, 0), |d| (d.seed, d.segment_length, d.segment_length_mask, d.segment_count_length));
        out.extend_from_slice(&seed.to_le_bytes());
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(&mask.to_le_bytes());
        out.extend_from_slice(&count_length.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&binding.0.to_le_bytes());
        debug_assert_eq!(out.len(), HEADER_LEN);
        match &self.kind {
            Kind::Empty => {}
            Kind::Exact(keys) => keys.iter().for_each(|k| out.extend_from_slice(&k.to_le_bytes())),
            Kind::Fuse8(f) => out.extend_from_slice(&f.fingerprints),
            Kind::Fuse16(f) => f.fingerprints.iter().for_each(|fp| out.extend_from_slice(&fp.to_le_bytes())),
        }
        let checksum = Fnv1a64::of(&out);
        out.extend_from_slice(&checksum.to_le_bytes());
        out
    }

    /// Reads a filter written by [`encode`](Self::encode), checking its checksum, that it is
    /// bound to `binding` (the object it was read from; a v1 filter has no binding) and that its
    /// hashes are `hash_len` bytes wide (an empty filter is of any width).
    pub fn decode(bytes: &[u8], hash_len: u8, binding: FilterBinding) -> Result<Self, FilterError> {
        let header_len = match bytes.get(..8) {
            Some(magic) if magic == MAGIC => HEADER_LEN,
            Some(magic) if magic == MAGIC_V1 => HEADER_LEN_V1,
            Some(_) => return Err(FilterError::BadMagic),
            None => return Err(FilterError::Truncated("shorter than a header and a checksum")),
        };
        if bytes.len() < header_len + CHECKSUM_LEN {
            return Err(FilterError::Truncated("shorter than a header and a checksum"));
        }
        let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        if Fnv1a64::of(body).to_le_bytes() != checksum {
            return Err(FilterError::ChecksumMismatch);
        }
        let u32_at = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
        if header_len == HEADER_LEN && u64_at(48) != binding.0 {
            return Err(FilterError::WrongObject { expected: binding.0, found: u64_at(48) });
        }
        let (kind, found_len, keys) = (body[8], body[9], u64_at(16));
        if kind != 0 && found_len != hash_len {
            return Err(FilterError::WrongHashLength { expected: hash_len, found: found_len });
        }
        let descriptor = Descriptor {
            seed: u64_at(24),
            segment_length: u32_at(32),
            segment_length_mask: u32_at(36),
            segment_count_length: u32_at(40),
        };
        let payload = &body[header_len..];
        let kind = match kind {
            0 if payload.is_empty() && keys == 0 => Kind::Empty,
            0 => return Err(FilterError::Inconsistent("an empty filter with a payload")),
            1 => {
                if payload.len() % 8 != 0 || (payload.len() / 8) as u64 != keys {
                    return Err(FilterError::Inconsistent("an exact filter's payload is not its keys"));
                }
                let keys: Box<[u64]> =
                    payload.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
                if !keys.is_sorted() {
                    return Err(FilterError::Inconsistent("an exact filter's keys are out of order"));
                }
                Kind::Exact(keys)
            }
            8 | 16 => {
                let width = usize::from(kind / 8);
                let fingerprints = payload.len() / width;
                // A probe's first index is below segment_count_length, its other two one and two
                // segments on, each within its aligned segment: with segment_count_length a
                // non-zero multiple of a power-of-two segment_length, every index is below
                // segment_count_length + 2 segment_length, which must fit the fingerprints
                // (and u32, as the probe computes in u32). Anything else could index past them.
                let (length, count_length) = (descriptor.segment_length, descriptor.segment_count_length);
                let reach = u64::from(count_length) + 2 * u64::from(length);
                if payload.len() % width != 0
                    || !length.is_power_of_two()
                    || descriptor.segment_length_mask != length - 1
                    || count_length == 0
                    || count_length % length != 0
                    || reach > u64::from(u32::MAX)
                    || (fingerprints as u64) < reach
                {
                    return Err(FilterError::Inconsistent("the fingerprints do not fit the descriptor"));
                }
                if kind == 8 {
                    Kind::Fuse8(BinaryFuse8 { descriptor, fingerprints: payload.into() })
                } else {
                    let fingerprints = payload.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
                    Kind::Fuse16(BinaryFuse16 { descriptor, fingerprints })
                }
            }
            other => return Err(FilterError::UnknownKind(other)),
        };
        Ok(Self { kind, hash_len: found_len, keys })
    }
}

/// A version's filter: one [`MemberFilter`] per manifest bucket, probed with the hash's bucket.
#[derive(Debug, Clone)]
pub struct VersionFilter {
    buckets: Buckets,
    filters: Box<[MemberFilter]>,
    memory_bytes: usize,
}

impl VersionFilter {
    /// `filters[b]` is bucket `b`'s; there must be one per bucket of `buckets`.
    pub fn new(buckets: Buckets, filters: Vec<MemberFilter>) -> Result<Self, FilterError> {
        if filters.len() != buckets.count() as usize {
            return Err(FilterError::Inconsistent("a version filter needs one filter per bucket"));
        }
        let memory_bytes = filters.iter().map(MemberFilter::memory_bytes).sum();
        Ok(Self { buckets, filters: filters.into_boxed_slice(), memory_bytes })
    }

    /// False: `hash` is certainly not a member of the version. True: it may be.
    #[inline]
    pub fn contains(&self, hash: &EmailHash) -> bool {
        self.filters[self.buckets.bucket_of(hash.as_bytes()) as usize].contains(hash)
    }

    /// What its probes read, in bytes (the memory budget counts this).
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }

    /// Whether any bucket's filter is a fuse filter (else every bucket holds its keys exactly).
    pub fn is_approximate(&self) -> bool {
        self.filters.iter().any(MemberFilter::is_approximate)
    }

    /// The distinct keys of all its buckets (about the version's members).
    pub fn keys(&self) -> u64 {
        self.filters.iter().map(MemberFilter::keys).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hashes(seeds: impl IntoIterator<Item = u64>) -> Vec<EmailHash> {
        let mut out: Vec<EmailHash> = seeds
            .into_iter()
            .map(|s| {
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&s.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
                b[8..].copy_from_slice(&s.to_le_bytes());
                EmailHash::md5(b)
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The binding the tests encode and decode with.
    fn here() -> FilterBinding {
        FilterBinding::of_key("versions/acme/42/filter/00007.fuse")
    }

    fn false_positives(filter: &MemberFilter, probes: &[EmailHash]) -> usize {
        probes.iter().filter(|h| filter.contains(h)).count()
    }

    #[test]
    fn every_member_passes_and_few_non_members_do_at_each_width() {
        let members = hashes(0..200_000);
        let strangers = hashes(1_000_000..1_400_000);
        for bits in [FingerprintBits::Eight, FingerprintBits::Sixteen] {
            let filter = MemberFilter::build(bits, &members).unwrap();
            assert!(members.iter().all(|h| filter.contains(h)), "{bits}: a member failed its filter");
            let rate = false_positives(&filter, &strangers) as f64 / strangers.len() as f64;
            let expected = bits.false_positive_rate();
            assert!(rate < expected * 1.5 + 1e-5, "{bits}: false positives {rate} vs 2^-{bits} = {expected}");
            let bits_per_member = filter.memory_bytes() as f64 * 8.0 / members.len() as f64;
            // Binary fuse filters: max(1.125, 0.875 + 0.25 ln(10^6) / ln(n)) × (8 | 16) bits per
            // key (1.158 at n = 200,000; 1.137 at a full 512Ki bucket), plus segment rounding.
            assert!(bits_per_member < f64::from(bits.bits()) * 1.18, "{bits}: {bits_per_member} bits per member");
            assert_eq!(filter.keys(), members.len() as u64);
        }
    }

    #[test]
    fn small_buckets_are_exact_and_empty_ones_hold_nothing() {
        let empty = MemberFilter::build(FingerprintBits::Eight, &[]).unwrap();
        assert!(!empty.contains(&hashes([1])[0]));
        let members = hashes(0..10);
        let exact = MemberFilter::build(FingerprintBits::Eight, &members).unwrap();
        assert!(!exact.is_approximate());
        assert!(members.iter().all(|h| exact.contains(h)));
        assert_eq!(false_positives(&exact, &hashes(100..10_000)), 0);
    }

    #[test]
    fn hashes_sharing_a_key_are_one_key() {
        let (a, b) = ([7u8; 16], {
            let mut b = [7u8; 16];
            b[15] = 8;
            b
        });
        let members = [EmailHash::md5(a), EmailHash::md5(b)];
        let filter = MemberFilter::build(FingerprintBits::Eight, &members).unwrap();
        assert_eq!(filter.keys(), 1);
        assert!(members.iter().all(|h| filter.contains(h)));
    }

    #[test]
    fn a_damaged_or_foreign_filter_is_refused() {
        let filter = MemberFilter::build(FingerprintBits::Eight, &hashes(0..1_000)).unwrap();
        let bytes = filter.encode(here());
        let mut flipped = bytes.clone();
        flipped[HEADER_LEN + 3] ^= 1;
        assert_eq!(MemberFilter::decode(&flipped, 16, here()).unwrap_err(), FilterError::ChecksumMismatch);
        assert_eq!(
            MemberFilter::decode(&bytes[..40], 16, here()).unwrap_err(),
            FilterError::Truncated("shorter than a header and a checksum")
        );
        assert_eq!(
            MemberFilter::decode(&bytes, 32, here()).unwrap_err(),
            FilterError::WrongHashLength { expected: 32, found: 16 }
        );
        let mut magic = bytes.clone();
        magic[0] = b'X';
        assert_eq!(MemberFilter::decode(&magic, 16, here()).unwrap_err(), FilterError::BadMagic);
        // A payload cut short, re-checksummed: the descriptor no longer fits.
        let mut short = bytes[..bytes.len() - CHECKSUM_LEN - 100].to_vec();
        let checksum = Fnv1a64::of(&short);
        short.extend_from_slice(&checksum.to_le_bytes());
        assert!(matches!(MemberFilter::decode(&short, 16, here()), Err(FilterError::Inconsistent(_))));
    }

    /// A filter answers only for the object it was written as: the same bytes under another
    /// version's or bucket's key are refused (the store answers that version instead).
    #[test]
    fn a_filter_is_refused_under_another_key() {
        let members = hashes(0..1_000);
        let bytes = MemberFilter::build(FingerprintBits::Eight, &members).unwrap().encode(here());
        assert!(MemberFilter::decode(&bytes, 16, here()).is_ok());
        for other in [
            "versions/acme/43/filter/00007.fuse",
            "versions/acme/42/filter/00006.fuse",
            "versions/globex/42/filter/00007.fuse",
        ] {
            assert!(
                matches!(
                    MemberFilter::decode(&bytes, 16, FilterBinding::of_key(other)),
                    Err(FilterError::WrongObject { .. })
                ),
                "{other}: accepted"
            );
        }
    }

    /// The first format (no binding) is still read, under any key, and answers as before.
    #[test]
    fn a_v1_filter_is_still_read() {
        let members = hashes(0..1_000);
        let built = MemberFilter::build(FingerprintBits::Eight, &members).unwrap();
        let v2 = built.encode(here());
        let mut v1 = MAGIC_V1.to_vec();
        v1.extend_from_slice(&v2[8..HEADER_LEN_V1]);
        v1.extend_from_slice(&v2[HEADER_LEN..v2.len() - CHECKSUM_LEN]);
        let checksum = Fnv1a64::of(&v1);
        v1.extend_from_slice(&checksum.to_le_bytes());
        let decoded = MemberFilter::decode(&v1, 16, FilterBinding::of_key("anywhere")).unwrap();
        assert!(members.iter().all(|h| decoded.contains(h)));
        assert_eq!(decoded.memory_bytes(), built.memory_bytes());
    }

    #[test]
    fn a_version_filter_probes_each_hash_in_its_bucket() {
        let buckets = Buckets::new(3).unwrap();
        let members = hashes(0..20_000);
        let filters = (0..buckets.count())
            .map(|b| {
                let bucket: Vec<_> = members.iter().copied().filter(|h| buckets.bucket_of(h.as_bytes()) == b).collect();
                MemberFilter::build(FingerprintBits::Eight, &bucket).unwrap()
            })
            .collect::<Vec<_>>();
        assert!(VersionFilter::new(buckets, filters[..7].to_vec()).is_err(), "a bucket short");
        let version = VersionFilter::new(buckets, filters).unwrap();
        assert!(members.iter().all(|h| version.contains(h)));
        assert_eq!(version.keys(), 20_000);
        let strangers = hashes(50_000..150_000);
        let rate = false_positives_of(|h| version.contains(h), &strangers);
        assert!(rate < 0.006, "{rate}");
    }

    fn false_positives_of(contains: impl Fn(&EmailHash) -> bool, probes: &[EmailHash]) -> f64 {
        probes.iter().filter(|h| contains(h)).count() as f64 / probes.len() as f64
    }

    /// Re-encodes `filter`'s bytes with the descriptor fields at 24.. replaced, checksum fixed.
    fn with_descriptor(bytes: &[u8], length: u32, mask: u32, count_length: u32) -> Vec<u8> {
        let mut out = bytes[..bytes.len() - CHECKSUM_LEN].to_vec();
        out[32..36].copy_from_slice(&length.to_le_bytes());
        out[36..40].copy_from_slice(&mask.to_le_bytes());
        out[40..44].copy_from_slice(&count_length.to_le_bytes());
        let checksum = Fnv1a64::of(&out);
        out.extend_from_slice(&checksum.to_le_bytes());
        out
    }

    #[test]
    fn a_descriptor_that_could_index_past_the_fingerprints_is_refused() {
        let bytes = MemberFilter::build(FingerprintBits::Eight, &hashes(0..5_000)).unwrap().encode(here());
        let fingerprints = (bytes.len() - HEADER_LEN - CHECKSUM_LEN) as u32;
        // A checksum is easy to forge: the descriptor itself must be sound.
        for (length, mask, count_length, why) in [
            (4, 3, 5, "not a multiple of the segment length"),
            (4, 3, 0, "no segment"),
            (1024, 1023, fingerprints, "two segments past the end"),
            (6, 5, 12, "not a power of two"),
            (4, 7, 8, "a mask that is not length - 1"),
            (1 << 31, u32::MAX >> 1, 1 << 31, "beyond u32"),
        ] {
            let crafted = with_descriptor(&bytes, length, mask, count_length);
            assert!(
                matches!(MemberFilter::decode(&crafted, 16, here()), Err(FilterError::Inconsistent(_))),
                "{why}: accepted"
            );
        }
        // An exact filter whose key count disagrees with its payload.
        let exact = MemberFilter::build(FingerprintBits::Eight, &hashes(0..10)).unwrap().encode(here());
        let mut lying = exact[..exact.len() - CHECKSUM_LEN].to_vec();
        lying[16..24].copy_from_slice(&(u64::MAX / 4).to_le_bytes());
        let checksum = Fnv1a64::of(&lying);
        lying.extend_from_slice(&checksum.to_le_bytes());
        assert!(matches!(MemberFilter::decode(&lying, 16, here()), Err(FilterError::Inconsistent(_))));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Never a false "no", whatever the bucket's size and width, before and after a round
        /// trip through the format; and the decoded filter answers every probe as the built one.
        #[test]
        fn every_member_passes_its_filter_before_and_after_encoding(
            seeds in prop::collection::vec(any::<u64>(), 0..3_000),
            probes in prop::collection::vec(any::<u64>(), 0..500),
            sixteen in any::<bool>(),
            sha256 in any::<bool>(),
        ) {
            let bits = if sixteen { FingerprintBits::Sixteen } else { FingerprintBits::Eight };
            let members: Vec<EmailHash> = if sha256 {
                let mut m: Vec<_> = seeds.iter().map(|s| {
                    let mut b = [0u8; 32];
                    b[..8].copy_from_slice(&s.to_be_bytes());
                    b[24..].copy_from_slice(&s.to_le_bytes());
                    EmailHash::sha256(b)
                }).collect();
                m.sort_unstable();
                m.dedup();
                m
            } else {
                hashes(seeds.iter().copied())
            };
            let hash_len = if sha256 { 32 } else { 16 };
            let built = MemberFilter::build(bits, &members).unwrap();
            let decoded = MemberFilter::decode(&built.encode(here()), hash_len, here()).unwrap();
            for h in &members {
                prop_assert!(built.contains(h));
                prop_assert!(decoded.contains(h));
            }
            for h in hashes(probes) {
                prop_assert_eq!(built.contains(&h), decoded.contains(&h));
            }
            prop_assert_eq!(decoded.keys(), built.keys());
            prop_assert_eq!(decoded.memory_bytes(), built.memory_bytes());
        }
    }
}
