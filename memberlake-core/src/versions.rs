//! The data work of change-proportional list versions (`docs/versions.md`) at the work
//! location: each stage's inputs and outputs as sorted runs ([`crate::manifest`]), one bucket at a
//! time, so that any bucket is processed alone with bounded memory.
//!
//! - **ingest** writes a range's hashes as sorted runs ([`put_run`]), spilling a run every so
//!   many hashes ([`RunSpill`]).
//! - **merge** reads bucket `b` of every run of the version, merges them into bucket `b` of the
//!   version's manifest, diffs that against bucket `b` of the base version's manifest and
//!   writes the difference ([`merge_bucket`]). The diff is written before any store row, so an
//!   undo always knows every row the version may have written.
//! - **undo** and **retire** read one bucket of a diff ([`read_diff`]).
//!
//! Runs of one version share its bucket width; a base version may have another (its list was
//! smaller or larger). Buckets of different widths nest, so [`read_bucket`] reads bucket `b` at
//! any width from a run of any width: a run with wider buckets gives a contiguous slice of
//! them, a run with narrower ones the enclosing bucket, filtered.

use std::ops::Range;

use bytes::Bytes;

use crate::error::{Classify, ErrorClass};
use crate::ids::{AdvertiserId, EmailHash, ListVersion};
use crate::lake::LakeError;
use futures::StreamExt;

use crate::filter::{FilterBinding, FilterError, FingerprintBits, MemberFilter, VersionFilter};
use crate::manifest::{
    decode_run, diff_sorted, encode_run, encode_sorted, merge_sorted, Buckets, Change, ManifestError, RunIndex,
};
pub use crate::work::DiffSide;
use crate::work::{VersionDir, WorkLocation};

/// A failed read or write of a version's runs.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error(transparent)]
    Work(#[from] LakeError),
    #[error("run {key}: {source}")]
    Run {
        key: String,
        #[source]
        source: ManifestError,
    },
    #[error("filter {key}: {source}")]
    Filter {
        key: String,
        #[source]
        source: FilterError,
    },
}

impl Classify for VersionError {
    fn class(&self) -> ErrorClass {
        match self {
            VersionError::Work(e) => e.class(),
            VersionError::Run { source, .. } => source.class(),
            // A corrupt or foreign object, or a bucket no filter can be built for: not fixed
            // by asking again.
            VersionError::Filter { .. } => ErrorClass::Permanent,
        }
    }
}

impl VersionError {
    fn run(key: &str) -> impl FnOnce(ManifestError) -> Self + '_ {
        move |source| VersionError::Run { key: key.to_owned(), source }
    }

    fn filter(key: &str) -> impl FnOnce(FilterError) -> Self + '_ {
        move |source| VersionError::Filter { key: key.to_owned(), source }
    }

    /// The object does not exist (a stage that never ran that far).
    pub fn is_not_found(&self) -> bool {
        matches!(self, VersionError::Work(LakeError::NotFound { .. }))
    }
}

/// The objects of one version at the work location (named by its [`VersionDir`]), and its
/// bucket width.
#[derive(Debug, Clone)]
pub struct VersionObjects {
    pub dir: VersionDir,
    pub buckets: Buckets,
}

impl VersionObjects {
    pub fn new(advertiser: &AdvertiserId, version: ListVersion, bits: u8) -> Result<Self, ManifestError> {
        Ok(Self { dir: VersionDir::new(advertiser, version), buckets: Buckets::new(bits)? })
    }
}

/// Runs a merge reads at once (each a few ranged GETs).
const RUN_READS_IN_FLIGHT: usize = 16;

/// Sorts and de-duplicates `hashes` and writes them as one run under `key`; returns the run's
/// entry count. Memory: the hashes plus the encoded run.
pub async fn put_run(
    work: &WorkLocation,
    key: &str,
    mut hashes: Vec<EmailHash>,
    buckets: Buckets,
) -> Result<u64, VersionError> {
    let encoded = tokio::task::spawn_blocking(move || {
        let bytes = encode_run(&mut hashes, buckets);
        (bytes, hashes.len() as u64)
    })
    .await
    .expect("encoding a run does not panic");
    let (bytes, entries) = encoded;
    work.put(key, Bytes::from(bytes)).await?;
    Ok(entries)
}

/// Hashes a range holds before it spills a sorted run: the worker's default
/// (`MEMBERLAKE_RUN_SPILL_HASHES`), and what `memberlake check` uses.
pub const DEFAULT_RUN_SPILL_HASHES: usize = 1 << 20;

/// Collects an ingest range's hashes and spills them as a sorted run every `limit` hashes, so
/// that a range holds at most `limit` hashes (33 bytes each in memory) whatever its size — a compressed
/// list is one range of any size.
pub struct RunSpill {
    objects: VersionObjects,
    range: i32,
    limit: usize,
    hashes: Vec<EmailHash>,
    parts: u32,
}

impl RunSpill {
    pub fn new(objects: VersionObjects, range: i32, limit: usize) -> Self {
        Self { objects, range, limit: limit.max(1), hashes: Vec::new(), parts: 0 }
    }

    /// Adds hashes; spills a run whenever `limit` are held.
    pub async fn push(&mut self, work: &WorkLocation, block: Vec<EmailHash>) -> Result<(), VersionError> {
        let mut block = block.into_iter();
        loop {
            let room = self.limit - self.hashes.len();
            if self.hashes.capacity() == 0 {
                self.hashes.reserve_exact(self.limit);
            }
            self.hashes.extend(block.by_ref().take(room));
            if self.hashes.len() < self.limit {
                return Ok(());
            }
            self.spill(work).await?;
        }
    }

    async fn spill(&mut self, work: &WorkLocation) -> Result<(), VersionError> {
        let key = self.objects.dir.run(self.range, self.parts);
        put_run(work, &key, std::mem::take(&mut self.hashes), self.objects.buckets).await?;
        self.parts += 1;
        Ok(())
    }

    /// Writes the last run (an empty range writes one empty run, so every range has at least
    /// one); returns the number of runs.
    pub async fn finish(mut self, work: &WorkLocation) -> Result<u32, VersionError> {
        if !self.hashes.is_empty() || self.parts == 0 {
            self.spill(work).await?;
        }
        Ok(self.parts)
    }
}

/// The indexes of the ingest runs a worker has read, by key. A merge unit reads bucket `b` of
/// every run of its version, so without it each run's index (16 bytes per bucket) would be
/// fetched once per bucket — for a 2 GB list, ~100 runs × 512 buckets. Only runs are cached:
/// a run's bytes never change once written (a redone ingest range writes the same sorted,
/// de-duplicated hashes under the same key), whereas a diff is rewritten against another base
/// when a failed version is retried. Bounded: emptied when it would pass [`Self::LIMIT`] bytes.
#[derive(Clone, Default)]
pub struct RunIndexCache {
    inner: std::sync::Arc<std::sync::Mutex<IndexEntries>>,
}

#[derive(Default)]
struct IndexEntries {
    indexes: std::collections::HashMap<String, std::sync::Arc<RunIndex>>,
    bytes: usize,
}

impl RunIndexCache {
    /// Bytes of indexes held at most (a few thousand runs of a 2 GB list's width).
    pub const LIMIT: usize = 32 << 20;

    fn get(&self, key: &str) -> Option<std::sync::Arc<RunIndex>> {
        self.inner.lock().expect("index cache lock").indexes.get(key).cloned()
    }

    fn remove(&self, key: &str) {
        self.inner.lock().expect("index cache lock").indexes.remove(key);
    }

    fn insert(&self, key: &str, index: std::sync::Arc<RunIndex>) {
        let size = key.len() + 16 * index.buckets().count() as usize + 64;
        let mut entries = self.inner.lock().expect("index cache lock");
        if entries.bytes + size > Self::LIMIT {
            entries.indexes.clear();
            entries.bytes = 0;
        }
        if entries.indexes.insert(key.to_owned(), index).is_none() {
            entries.bytes += size;
        }
    }
}

/// Fetches a run's index: one suffix GET of the tail for `expected` bucket bits, and a second
/// one if the run turns out to have wider buckets.
async fn read_index(work: &WorkLocation, key: &str, expected: Buckets) -> Result<RunIndex, VersionError> {
    let tail = work.get_suffix(key, RunIndex::tail_len(expected)).await?;
    match RunIndex::from_tail(&tail) {
        Err(ManifestError::Truncated { needed, .. }) => {
            let tail = work.get_suffix(key, needed).await?;
            RunIndex::from_tail(&tail).map_err(VersionError::run(key))
        }
        other => other.map_err(VersionError::run(key)),
    }
}

/// The hashes of bucket `b` at width `want` of the run under `key`, whatever the run's own
/// width: at most three GETs (index, maybe a wider index, the entries). Verified (checksums,
/// order, bucket membership) before returned.
pub async fn read_bucket(
    work: &WorkLocation,
    key: &str,
    want: Buckets,
    b: u32,
) -> Result<Vec<EmailHash>, VersionError> {
    let index = read_index(work, key, want).await?;
    read_indexed_bucket(work, key, &index, want, b).await
}

/// [`read_bucket`] of an ingest run, its index from the worker's [`RunIndexCache`].
async fn read_run_bucket(
    work: &WorkLocation,
    key: &str,
    want: Buckets,
    b: u32,
) -> Result<Vec<EmailHash>, VersionError> {
    let cache = work.run_indexes();
    if let Some(index) = cache.get(key) {
        match read_indexed_bucket(work, key, &index, want, b).await {
            // A run rewritten since (a zombie worker's late spill, under another spill size)
            // fails its checksums, or its length, against the old index: read the index afresh
            // (on any failure: a transient one then costs one more GET).
            Err(_) => cache.remove(key),
            other => return other,
        }
    }
    let index = std::sync::Arc::new(read_index(work, key, want).await?);
    cache.insert(key, index.clone());
    read_indexed_bucket(work, key, &index, want, b).await
}

/// Bucket `b` at width `want` of the run under `key` whose index is `index`.
async fn read_indexed_bucket(
    work: &WorkLocation,
    key: &str,
    index: &RunIndex,
    want: Buckets,
    b: u32,
) -> Result<Vec<EmailHash>, VersionError> {
    let have = index.buckets();
    // The run's buckets that cover bucket `b` at width `want`.
    let covering: Range<u32> = if have.bits() >= want.bits() {
        let shift = have.bits() - want.bits();
        (b << shift)..((b + 1) << shift)
    } else {
        let enclosing = b >> (want.bits() - have.bits());
        enclosing..enclosing + 1
    };
    let first = index.bucket_byte_range(covering.start);
    let last = index.bucket_byte_range(covering.end - 1);
    let bytes = work.get_range(key, first.start..last.end).await?;
    let mut out = Vec::new();
    let mut offset = 0usize;
    for bucket in covering {
        let len = index.bucket_byte_range(bucket).len() as usize;
        let slice = bytes.get(offset..offset + len).ok_or_else(|| VersionError::Run {
            key: key.to_owned(),
            source: ManifestError::LengthMismatch {
                what: "the fetched buckets",
                expected: (last.end - first.start),
                found: bytes.len() as u64,
            },
        })?;
        let entries = index.bucket_entries(bucket, slice).map_err(VersionError::run(key))?;
        out.extend(entries.filter(|h| want.bucket_of(h.as_bytes()) == b));
        offset += len;
    }
    Ok(out)
}

/// Bucket `b` (at `want`) of a version's manifest, stored one object per bucket at the
/// version's own width `objects.buckets`: one object, several (the version's buckets are
/// narrower) or one enclosing object (wider).
pub async fn read_manifest_bucket(
    work: &WorkLocation,
    objects: &VersionObjects,
    want: Buckets,
    b: u32,
) -> Result<Vec<EmailHash>, VersionError> {
    let have = objects.buckets;
    if have.bits() >= want.bits() {
        let shift = have.bits() - want.bits();
        let mut out = Vec::new();
        for part in (b << shift)..((b + 1) << shift) {
            out.extend(read_bucket(work, &objects.dir.manifest(part), want, b).await?);
        }
        Ok(out)
    } else {
        let enclosing = b >> (want.bits() - have.bits());
        read_bucket(work, &objects.dir.manifest(enclosing), want, b).await
    }
}

/// One side of bucket `b` of a version's diff. A first version (no base) has no diff: every
/// member was added, so its manifest is the added side and nothing was removed. A diff that was
/// never written (the merge never got that far) is empty: no row was written from it.
pub async fn read_diff(
    work: &WorkLocation,
    objects: &VersionObjects,
    has_base: bool,
    b: u32,
    side: DiffSide,
) -> Result<Vec<EmailHash>, VersionError> {
    let read = match (has_base, side) {
        (true, side) => read_bucket(work, &objects.dir.diff(b, side), objects.buckets, b).await,
        (false, DiffSide::Added) => read_manifest_bucket(work, objects, objects.buckets, b).await,
        (false, DiffSide::Removed) => Ok(Vec::new()),
    };
    match read {
        Err(e) if e.is_not_found() => Ok(Vec::new()),
        other => other,
    }
}

/// What merging one bucket produced: the difference to write to the store, and the counts.
#[derive(Debug, Default)]
pub struct MergedBucket {
    pub added: Vec<EmailHash>,
    pub removed: Vec<EmailHash>,
    pub members: u64,
    /// Distinct hashes of the version's input dropped because they are erased.
    pub erased: u64,
}

/// Bucket `b` (at `want`) of every run in `runs`, read [`RUN_READS_IN_FLIGHT`] at a time.
async fn read_runs_bucket(
    work: &WorkLocation,
    runs: &[String],
    want: Buckets,
    b: u32,
) -> Result<Vec<Vec<EmailHash>>, VersionError> {
    // A plain loop rather than `buffered` over a closure: the future stays `Send` for any
    // lifetime, so a worker may spawn it. The merge does not care in which order runs come.
    let mut inputs = Vec::with_capacity(runs.len());
    let mut keys = runs.iter();
    let mut in_flight = futures::stream::FuturesUnordered::new();
    loop {
        while in_flight.len() < RUN_READS_IN_FLIGHT {
            match keys.next() {
                Some(key) => in_flight.push(read_run_bucket(work, key, want, b)),
                None => break,
            }
        }
        match in_flight.next().await {
            Some(bucket) => inputs.push(bucket?),
            None => break,
        }
    }
    Ok(inputs)
}

/// What a version's member set is merged from.
#[derive(Debug, Clone, Copy)]
pub enum MergeSource<'a> {
    /// The sorted runs its ingest units wrote (keys).
    Runs(&'a [String]),
    /// An earlier version's manifest (a rollback restores that member set).
    Manifest(&'a VersionObjects),
}

/// Merges bucket `b` of `source` into version `objects`' manifest bucket, diffs it against the
/// same bucket of `base` (if any), and writes the manifest bucket and the diff (before the
/// caller writes a single row). Deterministic and idempotent: a redone merge rewrites the same
/// objects.
///
/// `erased` (sorted: the bucket's erased hashes) are dropped from the input and from the base
/// alike: an erased person is in no manifest, diff or row this merge writes — not even as a
/// "removed" row — whatever the base's manifest still says.
///
/// With `filter`, the bucket's membership filter of that width is built from the merged
/// members and written beside the manifest bucket ([`VersionDir::filter`]), before it: a
/// version's filter is complete once all its merge units are, which is before it can activate.
pub async fn merge_bucket(
    work: &WorkLocation,
    objects: &VersionObjects,
    source: MergeSource<'_>,
    base: Option<&VersionObjects>,
    b: u32,
    erased: &[EmailHash],
    filter: Option<FingerprintBits>,
) -> Result<MergedBucket, VersionError> {
    merge_bucket_against(work, objects, source, base.map(|base| (work, base)), b, erased, filter).await
}

/// [`merge_bucket`] with the base version's manifest read from a location of its own: a dry run
/// (`memberlake check`) writes its runs and manifest to a scratch location and diffs them
/// against the active version at the deployment's work location.
pub async fn merge_bucket_against(
    work: &WorkLocation,
    objects: &VersionObjects,
    source: MergeSource<'_>,
    base: Option<(&WorkLocation, &VersionObjects)>,
    b: u32,
    erased: &[EmailHash],
    filter: Option<FingerprintBits>,
) -> Result<MergedBucket, VersionError> {
    let inputs = match source {
        MergeSource::Runs(runs) => read_runs_bucket(work, runs, objects.buckets, b).await?,
        MergeSource::Manifest(restored) => vec![read_manifest_bucket(work, restored, objects.buckets, b).await?],
    };
    let mut old = match base {
        Some((base_work, base)) => read_manifest_bucket(base_work, base, objects.buckets, b).await?,
        None => Vec::new(),
    };
    if !erased.is_empty() {
        old.retain(|h| erased.binary_search(h).is_err());
    }
    let erased = erased.to_vec();
    let has_base = base.is_some();
    // Each bucket object is a run of one bucket's hashes; a 1-bit index keeps it small.
    let one = Buckets::new(1).expect("1 bit is valid");
    let manifest_key = objects.dir.manifest(b);
    let filter_key = objects.dir.filter(b);
    let encoded = tokio::task::spawn_blocking({
        let (manifest_key, filter_key) = (manifest_key.clone(), filter_key.clone());
        move || {
            let mut members: Vec<EmailHash> = merge_sorted(inputs.into_iter().map(Vec::into_iter).collect()).collect();
            let before = members.len();
            if !erased.is_empty() {
                members.retain(|h| erased.binary_search(h).is_err());
            }
            let manifest = encode_sorted(&members, one).map_err(VersionError::run(&manifest_key))?;
            let filter = match filter {
                Some(bits) => {
                    let started = std::time::Instant::now();
                    match MemberFilter::build(bits, &members) {
                        Ok(built) => {
                            metrics::histogram!("memberlake_worker_filter_build_seconds").record(started.elapsed());
                            Some(built.encode(FilterBinding::of_key(&filter_key)))
                        }
                        // A filter is an optimisation: without one the store answers this
                        // version, so a bucket no filter can be built for fails nothing.
                        Err(e) => {
                            tracing::warn!(key = %filter_key, error = %e, "no filter for this bucket; the store answers it");
                            None
                        }
                    }
                }
                None => None,
            };
            let mut merged = MergedBucket {
                members: members.len() as u64,
                erased: (before - members.len()) as u64,
                ..Default::default()
            };
            if has_base {
                for change in diff_sorted(old, members) {
                    match change {
                        Change::Added(h) => merged.added.push(h),
                        Change::Removed(h) => merged.removed.push(h),
                    }
                }
            } else {
                merged.added = members;
            }
            Ok::<_, VersionError>((manifest, filter, merged))
        }
    })
    .await
    .expect("merging a bucket does not panic");
    let (manifest, filter, merged) = encoded?;
    if has_base {
        for (side, hashes) in [(DiffSide::Added, &merged.added), (DiffSide::Removed, &merged.removed)] {
            let key = objects.dir.diff(b, side);
            let bytes = encode_sorted(hashes, one).map_err(VersionError::run(&key))?;
            work.put(&key, Bytes::from(bytes)).await?;
        }
    }
    if let Some(filter) = filter {
        work.put(&filter_key, Bytes::from(filter)).await?;
    }
    work.put(&manifest_key, Bytes::from(manifest)).await?;
    Ok(merged)
}

/// Rebuilds bucket `b`'s filter of `objects` from its manifest bucket, at the width of the
/// filter there, if the manifest bucket was just rewritten (`rewritten`) or the filter holds one
/// of `erased` exactly (a small bucket's filter keeps its members' leading 8 bytes; a pass cut
/// short after rewriting the manifest leaves such a filter behind, and the next pass finds it
/// here). So after an erasure no filter keeps a trace of the hash. No filter object: nothing to
/// do. Returns whether it rebuilt the filter.
pub async fn rebuild_filter(
    work: &WorkLocation,
    objects: &VersionObjects,
    b: u32,
    erased: &[EmailHash],
    rewritten: bool,
) -> Result<bool, VersionError> {
    let key = objects.dir.filter(b);
    let old = match work.get(&key).await {
        Ok(bytes) => bytes,
        Err(LakeError::NotFound { .. }) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let hash_len = crate::ids::HashScheme::deployment().byte_len() as u8;
    let binding = FilterBinding::of_key(&key);
    let old = MemberFilter::decode(&old, hash_len, binding).ok();
    let holds = old.as_ref().is_none_or(|f| !f.is_approximate() && erased.iter().any(|h| f.contains(h)));
    if !rewritten && !holds {
        return Ok(false);
    }
    // An exact or empty filter (or one this build cannot read) is rebuilt at the default width:
    // the bucket is small, so it comes out exact again.
    let bits = old.and_then(|f| f.fingerprint_bits()).unwrap_or_default();
    let members = read_manifest_bucket(work, objects, objects.buckets, b).await?;
    let encoded = tokio::task::spawn_blocking(move || MemberFilter::build(bits, &members).map(|f| f.encode(binding)))
        .await
        .expect("building a filter does not panic")
        .map_err(VersionError::filter(&key))?;
    work.put(&key, Bytes::from(encoded)).await?;
    Ok(true)
}

/// Filter objects a matcher reads at once.
const FILTER_READS_IN_FLIGHT: usize = 8;

/// A version's membership filter, read from its filter objects (one per bucket), checked
/// against the deployment's hash width. A missing bucket is [`VersionError::is_not_found`]: the
/// version was merged without filters (or before they existed).
pub async fn read_version_filter(work: &WorkLocation, objects: &VersionObjects) -> Result<VersionFilter, VersionError> {
    let hash_len = crate::ids::HashScheme::deployment().byte_len() as u8;
    let reads = futures::stream::iter(0..objects.buckets.count())
        .map(|b| async move {
            let key = objects.dir.filter(b);
            let bytes = work.get(&key).await?;
            let decoded = tokio::task::spawn_blocking(move || {
                MemberFilter::decode(&bytes, hash_len, FilterBinding::of_key(&key))
                    .map_err(|source| VersionError::Filter { key, source })
            });
            decoded.await.expect("decoding a filter does not panic (it checks every bound)")
        })
        .buffered(FILTER_READS_IN_FLIGHT);
    // The first missing or bad bucket ends the read: the version is served by the store.
    let filters: Vec<MemberFilter> = futures::TryStreamExt::try_collect(reads).await?;
    VersionFilter::new(objects.buckets, filters).map_err(VersionError::filter(objects.dir.prefix()))
}

/// Rewrites the run at `key` (a range's run, a manifest bucket, a diff side) without the
/// hashes of `erased` (sorted), keeping its bucket width. Returns those it held (none: the
/// object is left alone; a missing object holds none). Each hash's bucket is looked up first
/// (the cached index and one ranged read), so an object is read whole only when it holds one.
/// For an erasure (`splitter::duties::erase_once`): a reader sees the object whole, before or
/// after (one PUT).
pub async fn erase_from_run(
    work: &WorkLocation,
    key: &str,
    erased: &[EmailHash],
) -> Result<Vec<EmailHash>, VersionError> {
    let probe = Buckets::new(crate::manifest::DEFAULT_BUCKET_BITS).expect("a valid width");
    let mut found = Vec::new();
    for h in erased {
        match read_bucket(work, key, probe, probe.bucket_of(h.as_bytes())).await {
            Ok(bucket) if bucket.binary_search(h).is_ok() => found.push(*h),
            Ok(_) => {}
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(e),
        }
    }
    if found.is_empty() {
        return Ok(found);
    }
    found.sort_unstable();
    let bytes = match work.get(key).await {
        Ok(bytes) => bytes,
        // Deleted since its bucket was read (the leader's work cleanup deletes a version's runs
        // while an erasure pass may be reading them): nothing there holds the hash any more.
        Err(LakeError::NotFound { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let (key_owned, drop) = (key.to_owned(), found.clone());
    let rewritten = tokio::task::spawn_blocking(move || {
        let (index, mut hashes) = decode_run(&bytes).map_err(VersionError::run(&key_owned))?;
        hashes.retain(|h| drop.binary_search(h).is_err());
        Ok::<_, VersionError>(encode_run(&mut hashes, index.buckets()))
    })
    .await
    .expect("rewriting a run does not panic")?;
    work.put(key, Bytes::from(rewritten)).await?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::Lake;

    fn h(i: u32) -> EmailHash {
        // Spread over every bucket: the leading bytes vary with i.
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&i.wrapping_mul(0x9E37_79B9).to_be_bytes());
        b[4..8].copy_from_slice(&i.to_be_bytes());
        EmailHash::md5(b)
    }

    fn work() -> (WorkLocation, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("memberlake-versions-{}-{}", std::process::id(), rand::random::<u32>()));
        let lake = Lake::open(&format!("file://{}/lake", dir.display())).unwrap();
        (WorkLocation::open(None, &lake).unwrap(), dir)
    }

    fn sorted(mut v: Vec<EmailHash>) -> Vec<EmailHash> {
        v.sort();
        v.dedup();
        v
    }

    #[tokio::test]
    async fn buckets_read_alike_at_any_width() {
        let (work, dir) = work();
        let hashes: Vec<EmailHash> = (0..5000).map(h).collect();
        for run_bits in [1u8, 4, 8] {
            let key = format!("runs/{run_bits}");
            put_run(&work, &key, hashes.clone(), Buckets::new(run_bits).unwrap()).await.unwrap();
            for want_bits in [1u8, 3, 4, 6, 8] {
                let want = Buckets::new(want_bits).unwrap();
                let mut all = Vec::new();
                for b in 0..want.count() {
                    let bucket = read_bucket(&work, &key, want, b).await.unwrap();
                    assert!(bucket.iter().all(|x| want.bucket_of(x.as_bytes()) == b));
                    assert!(bucket.windows(2).all(|w| w[0] < w[1]));
                    all.extend(bucket);
                }
                assert_eq!(all, sorted(hashes.clone()), "run {run_bits} bits read at {want_bits} bits");
            }
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_merge_writes_the_manifest_and_exactly_the_difference() {
        let (work, dir) = work();
        let adv = AdvertiserId::parse("acme").unwrap();
        // v1: 0..3000 in three runs, 4-bit buckets; v2: 30..3030 (30 removed, 30 added) in two
        // runs with duplicates across them, 3-bit buckets (its list is another size).
        let v1 = VersionObjects::new(&adv, ListVersion(1), 4).unwrap();
        let mut v1_runs = Vec::new();
        for (i, part) in [(0..1000u32), (1000..2000), (2000..3000)].into_iter().enumerate() {
            let key = v1.dir.run(i as i32, 0);
            put_run(&work, &key, part.map(h).collect(), v1.buckets).await.unwrap();
            v1_runs.push(key);
        }
        for b in 0..v1.buckets.count() {
            let merged = merge_bucket(&work, &v1, MergeSource::Runs(&v1_runs), None, b, &[], None).await.unwrap();
            assert_eq!(merged.added.len() as u64, merged.members, "a first version adds every member");
            assert!(merged.removed.is_empty());
        }
        let v2 = VersionObjects::new(&adv, ListVersion(2), 3).unwrap();
        let v2_runs = vec![v2.dir.run(0, 0), v2.dir.run(1, 0)];
        put_run(&work, &v2_runs[0], (30..2000).map(h).collect(), v2.buckets).await.unwrap();
        put_run(&work, &v2_runs[1], (1500..3030).map(h).collect(), v2.buckets).await.unwrap();
        let (mut added, mut removed, mut members) = (Vec::new(), Vec::new(), 0);
        for b in 0..v2.buckets.count() {
            let merged = merge_bucket(
                &work,
                &v2,
                MergeSource::Runs(&v2_runs),
                Some(&v1),
                b,
                &[],
                Some(FingerprintBits::Sixteen),
            )
            .await
            .unwrap();
            // What the diff objects say is what the merge returned.
            assert_eq!(read_diff(&work, &v2, true, b, DiffSide::Added).await.unwrap(), merged.added);
            assert_eq!(read_diff(&work, &v2, true, b, DiffSide::Removed).await.unwrap(), merged.removed);
            members += merged.members;
            added.extend(merged.added);
            removed.extend(merged.removed);
        }
        assert_eq!(members, 3000);
        assert_eq!(sorted(added), sorted((3000..3030).map(h).collect()));
        assert_eq!(sorted(removed), sorted((0..30).map(h).collect()));
        // The first version's "diff" is its manifest.
        let mut v1_added = Vec::new();
        for b in 0..v1.buckets.count() {
            v1_added.extend(read_diff(&work, &v1, false, b, DiffSide::Added).await.unwrap());
            assert!(read_diff(&work, &v1, false, b, DiffSide::Removed).await.unwrap().is_empty());
        }
        assert_eq!(sorted(v1_added), sorted((0..3000).map(h).collect()));
        // A diff never written reads empty.
        let v3 = VersionObjects::new(&adv, ListVersion(3), 3).unwrap();
        assert!(read_diff(&work, &v3, true, 0, DiffSide::Added).await.unwrap().is_empty());
        // A rollback (v4) restores v1's manifest over v2: exactly v2's diff, reversed.
        let v4 = VersionObjects::new(&adv, ListVersion(4), v1.buckets.bits()).unwrap();
        let (mut added, mut removed, mut members) = (Vec::new(), Vec::new(), 0);
        for b in 0..v4.buckets.count() {
            let merged =
                merge_bucket(&work, &v4, MergeSource::Manifest(&v1), Some(&v2), b, &[], Some(FingerprintBits::Eight))
                    .await
                    .unwrap();
            members += merged.members;
            added.extend(merged.added);
            removed.extend(merged.removed);
        }
        assert_eq!(members, 3000);
        assert_eq!(sorted(added), sorted((0..30).map(h).collect()));
        assert_eq!(sorted(removed), sorted((3000..3030).map(h).collect()));
        // Filters: every member of a version passes its version's filter; a version merged
        // without them has none.
        assert!(read_version_filter(&work, &v1).await.unwrap_err().is_not_found());
        for (objects, members) in [(&v2, 30..3030), (&v4, 0..3000)] {
            let filter = read_version_filter(&work, objects).await.unwrap();
            assert_eq!(filter.keys(), 3000);
            assert!(members.clone().all(|i| filter.contains(&h(i))), "{:?}", objects.dir);
            let strangers = (100_000..120_000).filter(|i| !filter.contains(&h(*i))).count();
            assert!(strangers > 19_800, "{strangers} of 20,000 non-members said absent");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_merge_reads_each_runs_index_once_and_again_if_the_run_changed() {
        let (work, dir) = work();
        let adv = AdvertiserId::parse("acme").unwrap();
        let v = VersionObjects::new(&adv, ListVersion(5), 3).unwrap();
        let key = v.dir.run(0, 0);
        put_run(&work, &key, (0..2000).map(h).collect(), v.buckets).await.unwrap();
        let runs = vec![key.clone()];
        let first = read_runs_bucket(&work, &runs, v.buckets, 0).await.unwrap();
        assert!(work.run_indexes().get(&key).is_some(), "cached after the first read");
        // Rewritten under the same key with other contents: the stale index fails the checksums,
        // and the run is read afresh.
        put_run(&work, &key, (5000..9000).map(h).collect(), v.buckets).await.unwrap();
        let again = read_runs_bucket(&work, &runs, v.buckets, 0).await.unwrap();
        let want: Vec<EmailHash> = sorted((5000..9000).map(h).collect())
            .into_iter()
            .filter(|x| v.buckets.bucket_of(x.as_bytes()) == 0)
            .collect();
        assert_eq!(again, vec![want]);
        assert_ne!(first, again);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_range_spills_bounded_runs() {
        let (work, dir) = work();
        let adv = AdvertiserId::parse("acme").unwrap();
        let objects = VersionObjects::new(&adv, ListVersion(9), 2).unwrap();
        let mut spill = RunSpill::new(objects.clone(), 4, 100);
        for chunk in (0..350u32).collect::<Vec<_>>().chunks(60) {
            spill.push(&work, chunk.iter().map(|i| h(*i)).collect()).await.unwrap();
        }
        let parts = spill.finish(&work).await.unwrap();
        assert_eq!(parts, 4, "350 hashes at 100 per run");
        let mut all = Vec::new();
        for part in 0..parts {
            for b in 0..objects.buckets.count() {
                all.extend(read_bucket(&work, &objects.dir.run(4, part), objects.buckets, b).await.unwrap());
            }
        }
        assert_eq!(sorted(all), sorted((0..350).map(h).collect()));
        let empty = RunSpill::new(objects.clone(), 5, 100);
        assert_eq!(empty.finish(&work).await.unwrap(), 1, "an empty range writes one empty run");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn an_erased_hash_leaves_no_trace_in_a_merge_and_is_rewritten_out_of_runs() {
        let (work, dir) = work();
        let adv = AdvertiserId::parse("acme").unwrap();
        let v1 = VersionObjects::new(&adv, ListVersion(1), 2).unwrap();
        let runs = vec![v1.dir.run(0, 0)];
        put_run(&work, &runs[0], (0..400).map(h).collect(), v1.buckets).await.unwrap();
        for b in 0..v1.buckets.count() {
            merge_bucket(&work, &v1, MergeSource::Runs(&runs), None, b, &[], None).await.unwrap();
        }
        // Erase h(7): v2 has the same input; the base still lists it (not rewritten yet).
        let gone = h(7);
        let gb = v1.buckets.bucket_of(gone.as_bytes());
        let v2 = VersionObjects::new(&adv, ListVersion(2), 2).unwrap();
        let v2_runs = vec![v2.dir.run(0, 0)];
        put_run(&work, &v2_runs[0], (0..400).map(h).collect(), v2.buckets).await.unwrap();
        let merged = merge_bucket(&work, &v2, MergeSource::Runs(&v2_runs), Some(&v1), gb, &[gone], None).await.unwrap();
        assert_eq!(merged.erased, 1);
        assert!(merged.added.is_empty() && merged.removed.is_empty(), "no row for the erased hash, not even absent");
        assert!(!read_manifest_bucket(&work, &v2, v2.buckets, gb).await.unwrap().contains(&gone));
        // The rewrite takes it out of v1's manifest bucket and the run, and leaves the rest.
        assert_eq!(erase_from_run(&work, &v1.dir.manifest(gb), &[gone]).await.unwrap(), vec![gone]);
        assert!(!erase_from_run(&work, &v1.dir.manifest(gb), &[gone]).await.unwrap().contains(&gone), "idempotent");
        assert!(erase_from_run(&work, &runs[0], &[gone]).await.unwrap() == vec![gone]);
        assert!(erase_from_run(&work, "versions/none/1/manifest/00000.run", &[gone]).await.unwrap().is_empty());
        let mut all = Vec::new();
        for b in 0..v1.buckets.count() {
            all.extend(read_manifest_bucket(&work, &v1, v1.buckets, b).await.unwrap());
            let run = read_bucket(&work, &runs[0], v1.buckets, b).await.unwrap();
            assert!(!run.contains(&gone));
            assert_eq!(
                run.len(),
                (0..400).map(h).filter(|x| *x != gone && v1.buckets.bucket_of(x.as_bytes()) == b).count()
            );
        }
        assert_eq!(all, sorted((0..400).map(h).filter(|x| *x != gone).collect()));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn an_erasure_rebuilds_the_filter_of_a_rewritten_manifest_bucket() {
        let (work, dir) = work();
        let adv = AdvertiserId::parse("acme").unwrap();
        // 40 members in 2 buckets: small buckets, whose filters hold their keys exactly.
        let v = VersionObjects::new(&adv, ListVersion(9), 1).unwrap();
        let runs = vec![v.dir.run(0, 0)];
        put_run(&work, &runs[0], (0..40).map(h).collect(), v.buckets).await.unwrap();
        for b in 0..v.buckets.count() {
            merge_bucket(&work, &v, MergeSource::Runs(&runs), None, b, &[], Some(FingerprintBits::Eight))
                .await
                .unwrap();
        }
        let gone = h(7);
        let gb = v.buckets.bucket_of(gone.as_bytes());
        let before = read_version_filter(&work, &v).await.unwrap();
        assert!(before.contains(&gone));
        assert_eq!(erase_from_run(&work, &v.dir.manifest(gb), &[gone]).await.unwrap(), vec![gone]);
        // A pass cut short after the manifest's rewrite: the next finds the exact filter holding
        // the hash and rebuilds it, though the manifest needs no rewrite any more.
        assert!(rebuild_filter(&work, &v, gb, &[gone], false).await.unwrap());
        let after = read_version_filter(&work, &v).await.unwrap();
        assert!(!after.contains(&gone), "no trace of the erased hash");
        assert!((0..40).filter(|i| *i != 7).all(|i| after.contains(&h(i))), "every other member passes");
        assert_eq!(after.keys(), 39);
        assert!(!rebuild_filter(&work, &v, gb, &[gone], false).await.unwrap(), "nothing left to rebuild");
        // A version merged without filters has none to rebuild.
        let plain = VersionObjects::new(&adv, ListVersion(10), 1).unwrap();
        assert!(!rebuild_filter(&work, &plain, 0, &[gone], true).await.unwrap());
        // A large bucket's 16-bit filter is rebuilt at 16 bits.
        let big = VersionObjects::new(&adv, ListVersion(11), 1).unwrap();
        let big_runs = vec![big.dir.run(0, 0)];
        put_run(&work, &big_runs[0], (0..4000).map(h).collect(), big.buckets).await.unwrap();
        for b in 0..big.buckets.count() {
            merge_bucket(&work, &big, MergeSource::Runs(&big_runs), None, b, &[], Some(FingerprintBits::Sixteen))
                .await
                .unwrap();
        }
        let gone = h(99);
        let gb = big.buckets.bucket_of(gone.as_bytes());
        assert_eq!(erase_from_run(&work, &big.dir.manifest(gb), &[gone]).await.unwrap(), vec![gone]);
        assert!(!rebuild_filter(&work, &big, gb, &[gone], false).await.unwrap(), "an approximate filter holds no hash");
        assert!(rebuild_filter(&work, &big, gb, &[gone], true).await.unwrap());
        let bytes = work.get(&big.dir.filter(gb)).await.unwrap();
        let rebuilt = MemberFilter::decode(&bytes, 16, FilterBinding::of_key(&big.dir.filter(gb))).unwrap();
        assert_eq!(rebuilt.fingerprint_bits(), Some(FingerprintBits::Sixteen));
        assert_eq!(
            rebuilt.keys(),
            (0..4000).filter(|i| *i != 99 && big.buckets.bucket_of(h(*i).as_bytes()) == gb).count() as u64
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
