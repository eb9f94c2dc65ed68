//! Version manifests and the runs they are made of: sorted, de-duplicated sets of email hashes,
//! split into buckets by hash prefix, and the pure operations over them (encode, decode, merge,
//! diff). This is what makes a re-upload cost what changed: every list version leaves a
//! manifest, and a new version is compared with the active one bucket by bucket, so only added
//! and removed members reach the store.
//!
//! **Data flow.** A worker hashes one byte range of a list and writes its hashes as one *run*
//! ([`encode_run`]). Per bucket, a merge stage reads bucket `b` of every run of the version,
//! merges them ([`merge_sorted`]) into bucket `b` of the version's manifest (streamed out with
//! [`RunWriter`]), and diffs that against bucket `b` of the active version's manifest
//! ([`diff_sorted`]). A range's run and a manifest are the same format, so one reader serves
//! both.
//!
//! **Buckets.** A hash's bucket is its leading `bits` bits ([`Buckets`]). Because a bucket is a
//! prefix, a sorted run is also sorted by bucket, each bucket is one contiguous slice of it, and
//! bucket `b` of every run covers the same interval of hashes. So merging or diffing bucket `b`
//! needs bucket `b` of each input and nothing else: memory is bounded by one bucket per input,
//! whatever the list's size. (Buckets of different widths nest, too: bucket `b` at 8 bits is
//! buckets `16b..16b + 16` at 12 bits.) A bucket holds about `members / 2^bits` hashes: at the
//! default 256 buckets, a 500M-member list has buckets of ~31 MB; a larger list wants more bits.
//!
//! # The run format (v1)
//!
//! All integers are little-endian. `n` is the bucket count (`1 << bucket_bits`), `hash_len` the
//! width of one hash (16 for MD5, 32 for SHA-256: the deployment's [`HashScheme`]; a run of the
//! other width is refused with [`ManifestError::WrongHashLength`]).
//!
//! ```text
//! offset                                   content
//! 0            +-------------------------+
//!              | header, 16 bytes        |  magic b"MLRUN\0v1" (8) | hash_len u8 | bucket_bits u8 | 6 zero bytes
//! 16           +-------------------------+
//!              | entries                 |  `entries` hashes of hash_len bytes, strictly ascending;
//!              |  bucket 0 | bucket 1 |..|  bucket b is entries offset[b] .. offset[b + 1]
//! 16 + entries +-------------------------+  <- the tail: what a bucket reader fetches first
//!  * hash_len  | index                   |  offset[0 ..= n]: (n + 1) u64, the index of each bucket's first
//!              |                         |    entry; offset[0] = 0, offset[n] = entries
//!              |                         |  checksum[0 .. n]: n u64, FNV-1a 64 of each bucket's entry bytes
//!              +-------------------------+
//!              | footer, 32 bytes        |  magic (8) | entries u64 | hash_len u8 | bucket_bits u8 | 6 zero bytes
//!              |                         |  | tail checksum u64: FNV-1a 64 of the index and the footer before it
//!              +-------------------------+  (end of object)
//! ```
//!
//! **Why a trailer (index after the entries), like Parquet's footer.** The merge stage writes its
//! output (a manifest, or one bucket of it) as a stream of unknown length and must not hold it:
//! with the index in front,
//! the writer would have to know every bucket's count before writing the first entry (buffer the
//! whole output, or seek back, which an S3 multipart upload cannot). With the index behind the
//! entries, [`RunWriter`] writes each hash as it comes and appends the index at the end, holding
//! only two counters per bucket. A one-bucket reader is not hurt: it fetches the tail first with
//! one suffix ranged GET of [`RunIndex::tail_len`] bytes (fixed for a bucket width, so known in
//! advance; a reader that does not know the width fetches the 32-byte footer, and
//! [`RunIndex::from_tail`] answers [`ManifestError::Truncated`] with the length it needs), then
//! exactly [`RunIndex::bucket_byte_range`] with a second ranged GET. Entries start at a fixed
//! offset and have a fixed width, so a bucket's byte range follows from the index alone. One
//! object per run (rather than entries plus a separate index object) keeps a run atomic: the
//! object appears complete or not at all.
//!
//! **Why per-bucket checksums.** A bucket reader never sees the whole object, so a checksum over
//! everything could not protect what it reads. Instead every byte is covered by something the
//! reader of that byte checks: a bucket's entries by its checksum in the index
//! ([`RunIndex::bucket_entries`]), the index and footer by the tail checksum
//! ([`RunIndex::from_tail`]), and the header by exact values (magic, zero reserved bytes, the
//! same width and bucket bits as the footer; [`decode_run`]). FNV-1a changes its state by a
//! bijection at every byte, so it catches any single corrupted byte; it is no defence against
//! tampering, and it needs no dependency.
//!
//! **Memory.** [`encode_run`]: its input plus its output. [`RunWriter`]: two `u64` per bucket.
//! [`merge_sorted`]: one hash per input. [`diff_sorted`]: O(1). A bucket reader: one bucket.

use std::cmp::{Ordering, Reverse};
use std::collections::binary_heap::{BinaryHeap, PeekMut};
use std::io::{self, Write};
use std::iter::Peekable;
use std::slice::ChunksExact;

use crate::ids::{EmailHash, HashScheme};
use crate::ranges::ByteRange;

/// The bucket width used unless a run says otherwise: 256 buckets.
pub const DEFAULT_BUCKET_BITS: u8 = 8;
/// The widest bucketing: 65 536 buckets, an index of 1 MiB.
pub const MAX_BUCKET_BITS: u8 = 16;
/// The width of the hashes this process reads and writes: its deployment's scheme's.
pub fn hash_len() -> u8 {
    HashScheme::deployment().byte_len() as u8
}

/// Opens the header and the footer: `MLRUN\0` names the format, `v1` its version.
const MAGIC: [u8; 8] = *b"MLRUN\x00v1";
const MAGIC_FAMILY: &[u8] = b"MLRUN\x00";
/// Where the entries start: the header's length.
pub const HEADER_LEN: u64 = 16;
/// The fixed-size end of a run: magic, entry count, format, tail checksum.
pub const FOOTER_LEN: u64 = 32;
/// Bytes of an index or footer field.
const U64_LEN: usize = 8;

/// Why a run could not be written or read. Messages name positions and counts, never hashes.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("not a memberlake run: the magic bytes are wrong")]
    BadMagic,
    #[error("unsupported run format version {found}; this build reads v1")]
    UnsupportedVersion { found: String },
    #[error("run truncated: needs at least {needed} bytes, has {available}")]
    Truncated { needed: u64, available: u64 },
    #[error("run has no footer at its end: truncated, unfinished or not a run")]
    MissingFooter,
    #[error("{what} is {found} bytes, the run's index says {expected}")]
    LengthMismatch { what: &'static str, expected: u64, found: u64 },
    #[error("checksum mismatch in the run's index and footer: the run is corrupt")]
    IndexChecksumMismatch,
    #[error("checksum mismatch in bucket {bucket}: the run is corrupt")]
    BucketChecksumMismatch { bucket: u32 },
    #[error("entry {index} is out of order: a run's entries must be strictly ascending")]
    OutOfOrder { index: u64 },
    #[error("entry {index} lies outside bucket {bucket}, which holds it")]
    WrongBucket { index: u64, bucket: u32 },
    #[error("the run holds {found}-byte hashes; this deployment uses {expected}-byte hashes")]
    WrongHashLength { expected: u8, found: u8 },
    #[error("bucket bits must be within 1..={MAX_BUCKET_BITS}, got {0}")]
    InvalidBucketBits(u8),
    #[error("run is inconsistent: {0}")]
    Inconsistent(&'static str),
    #[error("writing a run failed: {0}")]
    Write(#[from] io::Error),
}

/// How hashes are split into buckets: by their leading `bits` bits, big-endian, so a bucket is
/// a hash prefix and sorting by hash sorts by bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Buckets {
    bits: u8,
}

impl Buckets {
    pub const DEFAULT: Buckets = Buckets { bits: DEFAULT_BUCKET_BITS };

    /// `bits` within `1..=`[`MAX_BUCKET_BITS`].
    pub fn new(bits: u8) -> Result<Self, ManifestError> {
        if (1..=MAX_BUCKET_BITS).contains(&bits) {
            Ok(Self { bits })
        } else {
            Err(ManifestError::InvalidBucketBits(bits))
        }
    }

    pub fn bits(self) -> u8 {
        self.bits
    }

    /// The number of buckets, `1 << bits`.
    pub fn count(self) -> u32 {
        1 << self.bits
    }

    /// The bucket of a hash: its leading `bits` bits.
    ///
    /// # Panics
    /// If `hash` is shorter than 2 bytes (hashes are 16 or 32).
    pub fn bucket_of(self, hash: &[u8]) -> u32 {
        let prefix = u16::from_be_bytes([hash[0], hash[1]]);
        u32::from(prefix >> (16 - self.bits))
    }

    /// The bytes of the index for this many buckets: `count + 1` offsets, `count` checksums.
    fn index_len(self) -> u64 {
        (2 * u64::from(self.count()) + 1) * U64_LEN as u64
    }
}

impl Default for Buckets {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// FNV-1a, 64 bits: the run format's checksum (see the module docs for why it suffices).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fnv1a64(u64);

impl Fnv1a64 {
    const fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn update(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub(crate) fn of(bytes: &[u8]) -> u64 {
        let mut hasher = Self::new();
        hasher.update(bytes);
        hasher.0
    }
}

/// Accepts exactly [`MAGIC`]; tells an other version of the format from something else.
fn check_magic(bytes: &[u8]) -> Result<(), ManifestError> {
    if bytes == MAGIC {
        Ok(())
    } else if bytes.starts_with(MAGIC_FAMILY) {
        Err(ManifestError::UnsupportedVersion { found: bytes[MAGIC_FAMILY.len()..].escape_ascii().to_string() })
    } else {
        Err(ManifestError::BadMagic)
    }
}

/// The 8 bytes shared by header and footer: hash width, bucket bits, 6 reserved zero bytes.
fn encode_format(hash_len: u8, buckets: Buckets) -> [u8; 8] {
    [hash_len, buckets.bits, 0, 0, 0, 0, 0, 0]
}

/// Parses [`encode_format`]'s bytes, refusing a width this build does not use.
fn parse_format(bytes: &[u8]) -> Result<Buckets, ManifestError> {
    let buckets = Buckets::new(bytes[1])?;
    if bytes[0] != hash_len() {
        return Err(ManifestError::WrongHashLength { expected: hash_len(), found: bytes[0] });
    }
    if bytes[2..].iter().any(|&b| b != 0) {
        return Err(ManifestError::Inconsistent("reserved bytes are not zero"));
    }
    Ok(buckets)
}

fn encode_header(buckets: Buckets) -> [u8; HEADER_LEN as usize] {
    let mut header = [0u8; HEADER_LEN as usize];
    header[..8].copy_from_slice(&MAGIC);
    header[8..].copy_from_slice(&encode_format(hash_len(), buckets));
    header
}

/// The bucket width a run's header declares.
fn parse_header(bytes: &[u8]) -> Result<Buckets, ManifestError> {
    let header = bytes
        .get(..HEADER_LEN as usize)
        .ok_or(ManifestError::Truncated { needed: HEADER_LEN, available: bytes.len() as u64 })?;
    check_magic(&header[..8])?;
    parse_format(&header[8..])
}

fn read_u64(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..U64_LEN].try_into().expect("8 bytes"))
}

/// The last `len` bytes of `bytes`, or how many are missing.
fn suffix(bytes: &[u8], len: u64) -> Result<&[u8], ManifestError> {
    let available = bytes.len() as u64;
    if available < len {
        return Err(ManifestError::Truncated { needed: len, available });
    }
    Ok(&bytes[(available - len) as usize..])
}

/// The length of a run of `entries` hashes.
fn run_len(entries: u64, buckets: Buckets) -> u64 {
    HEADER_LEN + entries * u64::from(hash_len()) + RunIndex::tail_len(buckets)
}

/// A run's index, read from its tail: where each bucket's entries lie in the object, and their
/// checksums. A bucket reader needs only this and its bucket's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunIndex {
    hash_len: u8,
    buckets: Buckets,
    /// `count + 1` entry indexes: bucket `b` is entries `offsets[b]..offsets[b + 1]`.
    offsets: Vec<u64>,
    /// FNV-1a 64 of each bucket's entry bytes.
    checksums: Vec<u64>,
}

impl RunIndex {
    /// The length of a run's tail (index and footer) for this bucket width: what a bucket reader
    /// fetches first, with one suffix ranged GET.
    pub fn tail_len(buckets: Buckets) -> u64 {
        buckets.index_len() + FOOTER_LEN
    }

    /// Parses and verifies the index from the end of a run. `bytes` may be the whole run or any
    /// suffix of it at least [`RunIndex::tail_len`] long; given less (say, just the footer), it
    /// fails with [`ManifestError::Truncated`] naming the length to fetch.
    pub fn from_tail(bytes: &[u8]) -> Result<Self, ManifestError> {
        let footer = suffix(bytes, FOOTER_LEN)?;
        check_magic(&footer[..8]).map_err(|e| match e {
            ManifestError::BadMagic => ManifestError::MissingFooter,
            other => other,
        })?;
        // The bucket bits size the tail, so they are read before the checksum can vouch for
        // them; a corrupted width then fails the checksum over the wrong span.
        let buckets = Buckets::new(footer[17])?;
        let tail = suffix(bytes, Self::tail_len(buckets))?;
        let (covered, stored) = tail.split_at(tail.len() - U64_LEN);
        if Fnv1a64::of(covered) != read_u64(stored) {
            return Err(ManifestError::IndexChecksumMismatch);
        }
        parse_format(&footer[16..24])?;
        let entries = read_u64(&footer[8..16]);
        let count = buckets.count() as usize;
        let mut words = covered.chunks_exact(U64_LEN).map(read_u64);
        let offsets: Vec<u64> = words.by_ref().take(count + 1).collect();
        let checksums: Vec<u64> = words.take(count).collect();
        let index = Self { hash_len: hash_len(), buckets, offsets, checksums };
        index.check_offsets(entries)?;
        Ok(index)
    }

    /// Offsets must ascend from 0 to the entry count, and the run's length must be a `u64`.
    fn check_offsets(&self, entries: u64) -> Result<(), ManifestError> {
        let ascending = self.offsets.windows(2).all(|w| w[0] <= w[1]);
        if self.offsets[0] != 0 || !ascending || self.entries() != entries {
            return Err(ManifestError::Inconsistent("the index's offsets do not ascend from 0 to the entry count"));
        }
        let fits = entries
            .checked_mul(u64::from(self.hash_len))
            .and_then(|n| n.checked_add(HEADER_LEN + Self::tail_len(self.buckets)))
            .is_some();
        if !fits {
            return Err(ManifestError::Inconsistent("the entry count is too large"));
        }
        Ok(())
    }

    pub fn hash_len(&self) -> u8 {
        self.hash_len
    }

    pub fn buckets(&self) -> Buckets {
        self.buckets
    }

    /// The number of hashes in the run.
    pub fn entries(&self) -> u64 {
        self.offsets[self.offsets.len() - 1]
    }

    /// The number of hashes in bucket `b` (below `buckets().count()`).
    pub fn bucket_entries_count(&self, b: u32) -> u64 {
        self.offsets[b as usize + 1] - self.offsets[b as usize]
    }

    /// The run's length in bytes, to check against the object's size.
    pub fn object_len(&self) -> u64 {
        HEADER_LEN + self.entries() * u64::from(self.hash_len) + Self::tail_len(self.buckets)
    }

    /// Where bucket `b`'s entries lie in the run: fetch exactly this with a ranged GET.
    ///
    /// # Panics
    /// If `b` is not below `buckets().count()`.
    pub fn bucket_byte_range(&self, b: u32) -> ByteRange {
        let width = u64::from(self.hash_len);
        let b = b as usize;
        ByteRange::new(HEADER_LEN + self.offsets[b] * width, HEADER_LEN + self.offsets[b + 1] * width)
    }

    /// Verifies bucket `b`'s bytes (those of [`RunIndex::bucket_byte_range`]) and iterates its
    /// hashes: the length, the checksum, that each hash belongs to the bucket and that they
    /// strictly ascend. All of it is checked before the first hash comes out, so a consumer
    /// never acts on half a corrupt bucket.
    ///
    /// # Panics
    /// If `b` is not below `buckets().count()`.
    pub fn bucket_entries<'a>(&self, b: u32, bytes: &'a [u8]) -> Result<Entries<'a>, ManifestError> {
        let expected = self.bucket_byte_range(b).len();
        if bytes.len() as u64 != expected {
            return Err(ManifestError::LengthMismatch { what: "the bucket", expected, found: bytes.len() as u64 });
        }
        if Fnv1a64::of(bytes) != self.checksums[b as usize] {
            return Err(ManifestError::BucketChecksumMismatch { bucket: b });
        }
        let entries = decode_entries(bytes, self.hash_len)?;
        self.check_bucket_order(b, entries.clone())?;
        Ok(entries)
    }

    /// Every hash of bucket `b` has prefix `b` and is above the one before it.
    fn check_bucket_order(&self, b: u32, entries: Entries<'_>) -> Result<(), ManifestError> {
        let first = self.offsets[b as usize];
        let mut previous: Option<EmailHash> = None;
        for (i, hash) in (first..).zip(entries) {
            if self.buckets.bucket_of(hash.as_bytes()) != b {
                return Err(ManifestError::WrongBucket { index: i, bucket: b });
            }
            if previous.is_some_and(|p| p >= hash) {
                return Err(ManifestError::OutOfOrder { index: i });
            }
            previous = Some(hash);
        }
        Ok(())
    }

    /// The index and footer, as written after the entries.
    fn encode_tail(&self) -> Vec<u8> {
        let mut tail = Vec::with_capacity(Self::tail_len(self.buckets) as usize);
        for word in self.offsets.iter().chain(&self.checksums) {
            tail.extend_from_slice(&word.to_le_bytes());
        }
        tail.extend_from_slice(&MAGIC);
        tail.extend_from_slice(&self.entries().to_le_bytes());
        tail.extend_from_slice(&encode_format(self.hash_len, self.buckets));
        let checksum = Fnv1a64::of(&tail);
        tail.extend_from_slice(&checksum.to_le_bytes());
        tail
    }
}

/// The hashes of a slice of entries, in their stored order.
#[derive(Debug, Clone)]
pub struct Entries<'a> {
    chunks: ChunksExact<'a, u8>,
}

impl Iterator for Entries<'_> {
    type Item = EmailHash;

    fn next(&mut self) -> Option<EmailHash> {
        self.chunks.next().map(|chunk| EmailHash::from_slice(chunk).expect("chunks of a hash width"))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

impl ExactSizeIterator for Entries<'_> {}

/// The hashes of one bucket's bytes, unverified: for bytes already checked, or checked by the
/// consumer. [`RunIndex::bucket_entries`] is the verifying way to read a fetched bucket. Fails
/// if `hash_len` is not this build's width or `bytes` is not a whole number of entries.
pub fn decode_entries(bytes: &[u8], hash_len: u8) -> Result<Entries<'_>, ManifestError> {
    if hash_len != self::hash_len() {
        return Err(ManifestError::WrongHashLength { expected: self::hash_len(), found: hash_len });
    }
    if !bytes.len().is_multiple_of(usize::from(hash_len)) {
        return Err(ManifestError::Inconsistent("a bucket's bytes are not a whole number of entries"));
    }
    Ok(Entries { chunks: bytes.chunks_exact(usize::from(hash_len)) })
}

/// Decodes and verifies a whole run: header, index, footer, every bucket's checksum, that each
/// hash lies in its bucket and that all strictly ascend.
pub fn decode_run(bytes: &[u8]) -> Result<(RunIndex, Vec<EmailHash>), ManifestError> {
    let header_buckets = parse_header(bytes)?;
    let index = RunIndex::from_tail(bytes)?;
    if index.buckets != header_buckets {
        return Err(ManifestError::Inconsistent("the header and the footer disagree on the bucket bits"));
    }
    let expected = index.object_len();
    if bytes.len() as u64 != expected {
        return Err(ManifestError::LengthMismatch { what: "the run", expected, found: bytes.len() as u64 });
    }
    let mut hashes = Vec::with_capacity(index.entries() as usize);
    for b in 0..index.buckets.count() {
        let range = index.bucket_byte_range(b);
        hashes.extend(index.bucket_entries(b, &bytes[range.start as usize..range.end as usize])?);
    }
    Ok((index, hashes))
}

/// Sorts and de-duplicates `hashes` in place, then serializes them as one run. Memory is the
/// input plus the output (sorted in place; the output is allocated once, at its exact size).
/// On return `hashes` holds the run's entries.
pub fn encode_run(hashes: &mut Vec<EmailHash>, buckets: Buckets) -> Vec<u8> {
    hashes.sort_unstable();
    hashes.dedup();
    encode_sorted(hashes, buckets).expect("sorted, de-duplicated input; writing to a Vec cannot fail")
}

/// Serializes hashes already in ascending order (a merge's or a diff's output) as one run,
/// without copying or re-sorting them; the output is allocated once, at its exact size. A hash
/// below the one before it fails with [`ManifestError::OutOfOrder`]; a repeat is written once.
pub fn encode_sorted(hashes: &[EmailHash], buckets: Buckets) -> Result<Vec<u8>, ManifestError> {
    let mut out = Vec::with_capacity(run_len(hashes.len() as u64, buckets) as usize);
    let mut writer = RunWriter::new(&mut out, buckets)?;
    for &hash in hashes {
        writer.push(hash)?;
    }
    writer.finish()?;
    Ok(out)
}

/// Writes a run from hashes given in ascending order, as they come: the header at once, each
/// entry on [`push`](RunWriter::push), the index and footer on [`finish`](RunWriter::finish).
/// It holds two `u64` per bucket, never the entries, so a merge can stream its output to an
/// upload. Give it a buffered sink: it writes one hash at a time.
///
/// After a write error the run is incomplete and the writer should be dropped; a reader
/// refuses a run without its footer.
#[derive(Debug)]
pub struct RunWriter<W: Write> {
    sink: W,
    buckets: Buckets,
    /// Entries written per bucket.
    counts: Vec<u64>,
    checksums: Vec<Fnv1a64>,
    last: Option<EmailHash>,
    entries: u64,
    /// The deployment's hash width, fixed when the writer starts.
    hash_len: u8,
}

impl<W: Write> RunWriter<W> {
    /// Writes the header to `sink`.
    pub fn new(mut sink: W, buckets: Buckets) -> Result<Self, ManifestError> {
        sink.write_all(&encode_header(buckets))?;
        let count = buckets.count() as usize;
        Ok(Self {
            sink,
            buckets,
            counts: vec![0; count],
            checksums: vec![Fnv1a64::new(); count],
            last: None,
            entries: 0,
            hash_len: hash_len(),
        })
    }

    /// Appends `hash`. A repeat of the previous hash is skipped (runs are sets); a hash below
    /// it fails with [`ManifestError::OutOfOrder`] and is not written, so the run stays valid.
    pub fn push(&mut self, hash: EmailHash) -> Result<(), ManifestError> {
        match self.last.map(|last| hash.cmp(&last)) {
            Some(Ordering::Equal) => return Ok(()),
            Some(Ordering::Less) => return Err(ManifestError::OutOfOrder { index: self.entries }),
            _ => {}
        }
        let bytes = hash.as_bytes();
        if bytes.len() != usize::from(self.hash_len) {
            return Err(ManifestError::WrongHashLength { expected: self.hash_len, found: bytes.len() as u8 });
        }
        self.sink.write_all(bytes)?;
        let b = self.buckets.bucket_of(bytes) as usize;
        self.counts[b] += 1;
        self.checksums[b].update(bytes);
        self.last = Some(hash);
        self.entries += 1;
        Ok(())
    }

    /// The number of hashes written so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Writes the index and footer, flushes, and returns the sink with the run's index (its
    /// counts are what a caller records about the run).
    pub fn finish(mut self) -> Result<(W, RunIndex), ManifestError> {
        let offsets = std::iter::once(0)
            .chain(self.counts.iter().scan(0, |total, count| {
                *total += count;
                Some(*total)
            }))
            .collect();
        let checksums = self.checksums.iter().map(|c| c.0).collect();
        let index = RunIndex { hash_len: self.hash_len, buckets: self.buckets, offsets, checksums };
        self.sink.write_all(&index.encode_tail())?;
        self.sink.flush()?;
        Ok((self.sink, index))
    }
}

/// Merges ascending runs into one ascending, de-duplicated stream; see [`merge_sorted`].
#[derive(Debug)]
pub struct MergeSorted<I: Iterator<Item = EmailHash>> {
    runs: Vec<I>,
    /// The next hash of each run that has one, smallest on top.
    heads: BinaryHeap<Reverse<(EmailHash, usize)>>,
    last: Option<EmailHash>,
}

/// A k-way merge of ascending runs into their ascending union, each hash once. Memory is one
/// hash per run; each hash costs O(log k). Runs must ascend (duplicates within or across runs
/// are fine); decoded runs do.
pub fn merge_sorted<I: Iterator<Item = EmailHash>>(mut runs: Vec<I>) -> MergeSorted<I> {
    let heads = runs.iter_mut().enumerate().filter_map(|(i, run)| run.next().map(|hash| Reverse((hash, i)))).collect();
    MergeSorted { runs, heads, last: None }
}

impl<I: Iterator<Item = EmailHash>> Iterator for MergeSorted<I> {
    type Item = EmailHash;

    fn next(&mut self) -> Option<EmailHash> {
        loop {
            let mut top = self.heads.peek_mut()?;
            let Reverse((hash, run)) = *top;
            match self.runs[run].next() {
                Some(next) => {
                    debug_assert!(next >= hash, "merge_sorted: run {run} does not ascend");
                    *top = Reverse((next, run));
                }
                None => {
                    PeekMut::pop(top);
                }
            }
            if self.last != Some(hash) {
                self.last = Some(hash);
                return Some(hash);
            }
        }
    }
}

/// One member's change between two versions of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Change {
    /// In the new version, not in the old.
    Added(EmailHash),
    /// In the old version, not in the new.
    Removed(EmailHash),
}

impl Change {
    pub fn hash(&self) -> EmailHash {
        match self {
            Change::Added(hash) | Change::Removed(hash) => *hash,
        }
    }
}

/// How two versions differ, in members.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiffCounts {
    pub added: u64,
    pub removed: u64,
    /// In both versions.
    pub unchanged: u64,
}

/// The changes from one ascending set to another; see [`diff_sorted`].
#[derive(Debug)]
pub struct Diff<O: Iterator<Item = EmailHash>, N: Iterator<Item = EmailHash>> {
    old: Peekable<O>,
    new: Peekable<N>,
    counts: DiffCounts,
}

/// Streams the changes from `old` to `new`, both strictly ascending (as decoded or merged runs
/// are), in ascending hash order: [`Change::Added`] for hashes only in `new`,
/// [`Change::Removed`] for hashes only in `old`. Memory is O(1); the counts, including the
/// unchanged members that produce no item, are in [`Diff::counts`].
pub fn diff_sorted<O, N>(old: O, new: N) -> Diff<O::IntoIter, N::IntoIter>
where
    O: IntoIterator<Item = EmailHash>,
    N: IntoIterator<Item = EmailHash>,
{
    Diff { old: old.into_iter().peekable(), new: new.into_iter().peekable(), counts: DiffCounts::default() }
}

impl<O: Iterator<Item = EmailHash>, N: Iterator<Item = EmailHash>> Diff<O, N> {
    /// The counts so far: final once the iterator has returned `None`.
    pub fn counts(&self) -> DiffCounts {
        self.counts
    }
}

impl<O: Iterator<Item = EmailHash>, N: Iterator<Item = EmailHash>> Iterator for Diff<O, N> {
    type Item = Change;

    fn next(&mut self) -> Option<Change> {
        loop {
            let order = match (self.old.peek(), self.new.peek()) {
                (None, None) => return None,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(old), Some(new)) => old.cmp(new),
            };
            match order {
                Ordering::Less => {
                    self.counts.removed += 1;
                    return self.old.next().map(Change::Removed);
                }
                Ordering::Greater => {
                    self.counts.added += 1;
                    return self.new.next().map(Change::Added);
                }
                Ordering::Equal => {
                    self.counts.unchanged += 1;
                    self.old.next();
                    self.new.next();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;

    fn buckets(bits: u8) -> Buckets {
        Buckets::new(bits).unwrap()
    }

    /// A hash from a small domain (2048 values spread over all prefixes), so that generated
    /// sets repeat hashes and overlap each other.
    fn common_hash(n: u16) -> EmailHash {
        let mut bytes = [0u8; 16];
        bytes[..2].copy_from_slice(&n.wrapping_mul(40503).to_be_bytes());
        bytes[15] = n as u8;
        EmailHash::md5(bytes)
    }

    fn hash_strategy() -> impl Strategy<Value = EmailHash> {
        prop_oneof![any::<[u8; 16]>().prop_map(EmailHash::md5), (0u16..2048).prop_map(common_hash)]
    }

    fn hashes(max: usize) -> impl Strategy<Value = Vec<EmailHash>> {
        proptest::collection::vec(hash_strategy(), 0..max)
    }

    fn sorted_set(hashes: &[EmailHash]) -> Vec<EmailHash> {
        hashes.iter().copied().collect::<BTreeSet<_>>().into_iter().collect()
    }

    fn encode(hashes: &[EmailHash], buckets: Buckets) -> Vec<u8> {
        encode_run(&mut hashes.to_vec(), buckets)
    }

    fn bucket_slice<'a>(run: &'a [u8], index: &RunIndex, b: u32) -> &'a [u8] {
        let range = index.bucket_byte_range(b);
        &run[range.start as usize..range.end as usize]
    }

    /// A run of raw per-bucket entries with valid checksums, whatever the entries are: for
    /// reaching the checks that sit behind the checksums.
    fn sealed_run(buckets: Buckets, hash_len: u8, per_bucket: &[Vec<[u8; 16]>]) -> Vec<u8> {
        let mut run = encode_header(buckets).to_vec();
        let mut offsets = vec![0];
        let mut checksums = Vec::new();
        for entries in per_bucket {
            let start = run.len();
            entries.iter().for_each(|entry| run.extend_from_slice(entry));
            checksums.push(Fnv1a64::of(&run[start..]));
            offsets.push(offsets.last().unwrap() + entries.len() as u64);
        }
        run.extend(RunIndex { hash_len, buckets, offsets, checksums }.encode_tail());
        run
    }

    fn hash_with_prefix(first: u8, last: u8) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        bytes[0] = first;
        bytes[15] = last;
        bytes
    }

    fn error_of<T: std::fmt::Debug>(result: Result<T, ManifestError>) -> String {
        result.unwrap_err().to_string()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// (a) A run holds its input's sorted, de-duplicated set.
        #[test]
        fn encode_then_decode_gives_the_sorted_set(input in hashes(400), bits in 1u8..=12) {
            let mut entries = input.clone();
            let run = encode_run(&mut entries, buckets(bits));
            let (index, decoded) = decode_run(&run).unwrap();
            prop_assert_eq!(&decoded, &sorted_set(&input));
            prop_assert_eq!(&entries, &decoded);
            prop_assert_eq!(index.entries(), decoded.len() as u64);
            prop_assert_eq!(index.buckets(), buckets(bits));
            prop_assert_eq!(index.object_len(), run.len() as u64);
        }

        /// (b) A bucket reader's path: the tail alone gives the index, and each bucket's byte
        /// range alone gives exactly that bucket's hashes.
        #[test]
        fn each_bucket_reads_alone(input in hashes(400), bits in 1u8..=12) {
            let buckets = buckets(bits);
            let run = encode(&input, buckets);
            let tail = &run[run.len() - RunIndex::tail_len(buckets) as usize..];
            let index = RunIndex::from_tail(tail).unwrap();
            prop_assert_eq!(&index, &decode_run(&run).unwrap().0);
            let mut expected = vec![Vec::new(); buckets.count() as usize];
            for hash in sorted_set(&input) {
                expected[buckets.bucket_of(hash.as_bytes()) as usize].push(hash);
            }
            for b in 0..buckets.count() {
                let read: Vec<_> = index.bucket_entries(b, bucket_slice(&run, &index, b)).unwrap().collect();
                prop_assert_eq!(index.bucket_entries_count(b), read.len() as u64);
                prop_assert_eq!(&read, &expected[b as usize]);
            }
        }

        /// (c) Merging overlapping runs gives their sorted union.
        #[test]
        fn merge_gives_the_sorted_union(runs in proptest::collection::vec(hashes(100), 0..8)) {
            let union = sorted_set(&runs.concat());
            let sorted_runs = runs.iter().map(|run| sorted_set(run).into_iter()).collect();
            let merged: Vec<_> = merge_sorted(sorted_runs).collect();
            prop_assert_eq!(merged, union);
        }

        /// (d) The diff is the two set differences, in ascending order, with matching counts.
        #[test]
        fn diff_gives_the_set_differences(old in hashes(300), new in hashes(300)) {
            let (old, new) = (sorted_set(&old), sorted_set(&new));
            let (old_set, new_set): (BTreeSet<_>, BTreeSet<_>) = (old.iter().collect(), new.iter().collect());
            let mut diff = diff_sorted(old.iter().copied(), new.iter().copied());
            let changes: Vec<Change> = diff.by_ref().collect();
            let hashes: Vec<_> = changes.iter().map(Change::hash).collect();
            prop_assert!(hashes.windows(2).all(|w| w[0] < w[1]), "changes ascend");
            let added: Vec<_> = changes.iter().filter_map(|c| match c { Change::Added(h) => Some(h), _ => None }).collect();
            let removed: Vec<_> = changes.iter().filter_map(|c| match c { Change::Removed(h) => Some(h), _ => None }).collect();
            prop_assert_eq!(&added, &new_set.difference(&old_set).copied().collect::<Vec<_>>());
            prop_assert_eq!(&removed, &old_set.difference(&new_set).copied().collect::<Vec<_>>());
            let unchanged = old_set.intersection(&new_set).count() as u64;
            let expected = DiffCounts { added: added.len() as u64, removed: removed.len() as u64, unchanged };
            prop_assert_eq!(diff.counts(), expected);
        }

        /// (e) Streaming sorted input (with repeats) writes the same bytes as `encode_run`.
        #[test]
        fn writer_matches_encode_run(input in hashes(400), bits in 1u8..=12) {
            let mut sorted = input.clone();
            sorted.sort_unstable();
            let mut writer = RunWriter::new(Vec::new(), buckets(bits)).unwrap();
            for hash in sorted {
                writer.push(hash).unwrap();
            }
            let (written, index) = writer.finish().unwrap();
            let encoded = encode(&input, buckets(bits));
            prop_assert_eq!(&written, &encoded);
            prop_assert_eq!(index, decode_run(&encoded).unwrap().0);
        }

        /// (f) No single corrupted byte, anywhere, decodes.
        #[test]
        fn any_corrupted_byte_fails_decoding(input in hashes(60), bits in 1u8..=10, at in any::<Index>(), flip in 1u8..=255) {
            let mut run = encode(&input, buckets(bits));
            let at = at.index(run.len());
            run[at] ^= flip;
            prop_assert!(decode_run(&run).is_err(), "byte {} of {} flipped by {:#04x} still decodes", at, run.len(), flip);
        }
    }

    #[test]
    fn every_corrupted_byte_of_a_small_run_fails_decoding() {
        let input: Vec<_> = (0..40).map(common_hash).collect();
        let run = encode(&input, buckets(3));
        for at in 0..run.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut corrupted = run.clone();
                corrupted[at] ^= flip;
                assert!(decode_run(&corrupted).is_err(), "byte {at} flipped by {flip:#04x} still decodes");
            }
        }
    }

    #[test]
    fn bucket_of_takes_the_leading_bits() {
        let hash = [0b1011_0011, 0b0101_1100, 0xff, 0xff];
        assert_eq!(buckets(1).bucket_of(&hash), 1);
        assert_eq!(buckets(4).bucket_of(&hash), 0b1011);
        assert_eq!(buckets(8).bucket_of(&hash), 0b1011_0011);
        assert_eq!(buckets(12).bucket_of(&hash), 0b1011_0011_0101);
        assert_eq!(buckets(16).bucket_of(&hash), 0b1011_0011_0101_1100);
        assert_eq!(Buckets::default().count(), 256);
        assert_eq!(buckets(16).count(), 65_536);
    }

    #[test]
    fn an_empty_run_has_empty_buckets() {
        let run = encode(&[], Buckets::DEFAULT);
        assert_eq!(run.len() as u64, HEADER_LEN + RunIndex::tail_len(Buckets::DEFAULT));
        let (index, hashes) = decode_run(&run).unwrap();
        assert!(hashes.is_empty());
        assert!((0..256).all(|b| index.bucket_byte_range(b).is_empty()));
    }

    #[test]
    fn bucket_byte_ranges_follow_the_index() {
        let input =
            [hash_with_prefix(0x00, 1), hash_with_prefix(0x00, 2), hash_with_prefix(0xc0, 1)].map(EmailHash::md5);
        let run = encode(&input, buckets(2));
        let (index, _) = decode_run(&run).unwrap();
        assert_eq!(index.bucket_byte_range(0), ByteRange::new(16, 48));
        assert_eq!(index.bucket_byte_range(1), ByteRange::new(48, 48));
        assert_eq!(index.bucket_byte_range(2), ByteRange::new(48, 48));
        assert_eq!(index.bucket_byte_range(3), ByteRange::new(48, 64));
        assert_eq!(&run[..8], b"MLRUN\x00v1");
        assert_eq!(run[8..16], [16, 2, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn merge_of_no_runs_or_empty_runs_is_empty() {
        assert_eq!(merge_sorted(Vec::<std::vec::IntoIter<EmailHash>>::new()).count(), 0);
        assert_eq!(merge_sorted(vec![Vec::new().into_iter(), Vec::new().into_iter()]).count(), 0);
    }

    #[test]
    fn diff_counts_a_small_change() {
        let [a, b, c, d] = [1, 2, 3, 4].map(common_hash);
        let mut diff = diff_sorted(sorted_set(&[a, b, c]), sorted_set(&[b, c, d]));
        let mut changes: Vec<_> = diff.by_ref().collect();
        changes.sort_by_key(Change::hash);
        let mut expected = vec![Change::Removed(a), Change::Added(d)];
        expected.sort_by_key(Change::hash);
        assert_eq!(changes, expected);
        assert_eq!(diff.counts(), DiffCounts { added: 1, removed: 1, unchanged: 2 });
    }

    #[test]
    fn writer_skips_repeats_and_refuses_descending_hashes() {
        let [low, high] = [hash_with_prefix(1, 0), hash_with_prefix(2, 0)].map(EmailHash::md5);
        let mut writer = RunWriter::new(Vec::new(), buckets(4)).unwrap();
        writer.push(high).unwrap();
        writer.push(high).unwrap();
        assert_eq!(error_of(writer.push(low)), "entry 1 is out of order: a run's entries must be strictly ascending");
        assert_eq!(writer.entries(), 1);
        let (run, _) = writer.finish().unwrap();
        assert_eq!(decode_run(&run).unwrap().1, vec![high]);
    }

    #[test]
    fn writer_reports_a_failing_sink() {
        #[derive(Debug)]
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        assert_eq!(error_of(RunWriter::new(Broken, Buckets::DEFAULT)), "writing a run failed: disk full");
    }

    #[test]
    fn error_bad_magic() {
        let mut run = encode(&[common_hash(1)], buckets(2));
        run[0] = b'X';
        assert_eq!(error_of(decode_run(&run)), "not a memberlake run: the magic bytes are wrong");
    }

    #[test]
    fn error_unsupported_version() {
        let mut run = encode(&[common_hash(1)], buckets(2));
        run[6..8].copy_from_slice(b"v2");
        assert_eq!(error_of(decode_run(&run)), "unsupported run format version v2; this build reads v1");
    }

    #[test]
    fn error_truncated() {
        let run = encode(&[common_hash(1)], buckets(2));
        assert_eq!(error_of(decode_run(&run[..10])), "run truncated: needs at least 16 bytes, has 10");
        let footer = &run[run.len() - FOOTER_LEN as usize..];
        assert_eq!(error_of(RunIndex::from_tail(footer)), "run truncated: needs at least 104 bytes, has 32");
        assert_eq!(RunIndex::tail_len(buckets(2)), 104);
    }

    #[test]
    fn error_missing_footer() {
        let run = encode(&[common_hash(1)], buckets(2));
        let expected = "run has no footer at its end: truncated, unfinished or not a run";
        assert_eq!(error_of(decode_run(&run[..run.len() - 1])), expected);
        let mut unfinished = encode_header(buckets(2)).to_vec();
        (0..3).for_each(|n| unfinished.extend_from_slice(common_hash(n).as_bytes()));
        assert_eq!(error_of(decode_run(&unfinished)), expected);
    }

    #[test]
    fn error_length_mismatch() {
        let input = [common_hash(1), common_hash(2)];
        let run = encode(&input, buckets(1));
        let (index, _) = decode_run(&run).unwrap();
        let b = index.buckets().bucket_of(input[0].as_bytes());
        let slice = bucket_slice(&run, &index, b);
        assert_eq!(error_of(index.bucket_entries(b, &slice[1..])), "the bucket is 15 bytes, the run's index says 16");
        let mut padded = run.clone();
        padded.splice(16..16, [0u8; 16]);
        assert_eq!(error_of(decode_run(&padded)), "the run is 136 bytes, the run's index says 120");
    }

    #[test]
    fn error_index_checksum_mismatch() {
        let mut run = encode(&[common_hash(1)], buckets(2));
        let first_offset = HEADER_LEN as usize + 16;
        run[first_offset] ^= 1;
        assert_eq!(error_of(decode_run(&run)), "checksum mismatch in the run's index and footer: the run is corrupt");
    }

    #[test]
    fn error_bucket_checksum_mismatch() {
        let hash = EmailHash::md5(hash_with_prefix(0xc0, 7));
        let mut run = encode(&[hash], buckets(2));
        run[HEADER_LEN as usize + 15] ^= 1;
        assert_eq!(error_of(decode_run(&run)), "checksum mismatch in bucket 3: the run is corrupt");
    }

    #[test]
    fn error_out_of_order() {
        let descending = vec![hash_with_prefix(0, 2), hash_with_prefix(0, 1)];
        let run = sealed_run(buckets(1), hash_len(), &[descending, vec![]]);
        assert_eq!(error_of(decode_run(&run)), "entry 1 is out of order: a run's entries must be strictly ascending");
        let repeated = vec![hash_with_prefix(0, 1), hash_with_prefix(0, 1)];
        let run = sealed_run(buckets(1), hash_len(), &[repeated, vec![]]);
        assert!(matches!(decode_run(&run), Err(ManifestError::OutOfOrder { index: 1 })));
    }

    #[test]
    fn error_wrong_bucket() {
        let misplaced = vec![hash_with_prefix(0x00, 1), hash_with_prefix(0x80, 1)];
        let run = sealed_run(buckets(1), hash_len(), &[misplaced, vec![]]);
        assert_eq!(error_of(decode_run(&run)), "entry 1 lies outside bucket 0, which holds it");
    }

    #[test]
    fn error_wrong_hash_length() {
        let expected = "the run holds 32-byte hashes; this deployment uses 16-byte hashes";
        assert_eq!(error_of(decode_entries(&[0; 64], 32)), expected);
        let sha256_run = sealed_run(buckets(1), 32, &[vec![], vec![]]);
        assert_eq!(error_of(RunIndex::from_tail(&sha256_run)), expected);
    }

    #[test]
    fn error_invalid_bucket_bits() {
        assert_eq!(error_of(Buckets::new(0)), "bucket bits must be within 1..=16, got 0");
        assert!(matches!(Buckets::new(17), Err(ManifestError::InvalidBucketBits(17))));
    }

    #[test]
    fn error_inconsistent() {
        let mut run = encode(&[common_hash(1)], buckets(2));
        run[10] = 1;
        assert_eq!(error_of(decode_run(&run)), "run is inconsistent: reserved bytes are not zero");
        let mut run = sealed_run(buckets(2), hash_len(), &[vec![], vec![], vec![], vec![]]);
        run[9] = 3;
        assert_eq!(
            error_of(decode_run(&run)),
            "run is inconsistent: the header and the footer disagree on the bucket bits"
        );
        assert_eq!(
            error_of(decode_entries(&[0; 17], hash_len())),
            "run is inconsistent: a bucket's bytes are not a whole number of entries"
        );
    }
}
