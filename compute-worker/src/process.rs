//! Processing one range lease: a three-stage pipeline with bounded buffers.
//!
//! ```text
//! ranged GET ──chunks──▶ RangeScanner ──blocks (≤2 queued)──▶ rayon: parse+normalize+MD5
//!                                                               │
//!            store: concurrent prepared inserts ◀──hashes (≤2)──┘
//! ```
//!
//! Memory bound per lease: about `block_size × 6` (a block being scanned, two queued, one
//! hashing, two hashed batches waiting at 16 bytes per record) plus the write window's queued
//! row futures; with the default 4 MiB blocks that is ~25 MiB whatever the file size.
//!
//! Store writes go through the worker's [`WriteWindow`]: one bound on rows in flight for the
//! whole worker, kept full across block and range boundaries.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt, TryStreamExt};
use memberlake::catalog::{RangeLease, RangeReport, RejectionSample, MAX_REJECTION_SAMPLES};
use memberlake::ids::EmailHash;
use memberlake::lake::{Compression, Lake, LakeError};
use memberlake::ranges::{Block, ByteRange, RangeScanner, ScanItem};
use memberlake::records::{parse_lines, Record, RejectReason};
use memberlake::store::{MembershipStore, StoreError, WriteWindow};
use rayon::prelude::*;
use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tokio_util::io::{ReaderStream, StreamReader};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum RangeError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the lease was lost (expired, or the file was cancelled or failed)")]
    LeaseLost,
    #[error("stopped by shutdown")]
    Shutdown,
}

impl RangeError {
    /// Permanent errors fail the whole file; the others give the lease back for a retry. A
    /// fault of this worker's own configuration is never permanent for the file.
    pub fn is_permanent(&self) -> bool {
        match self {
            RangeError::Lake(e) => e.is_permanent() && !e.is_replica_fault(),
            _ => false,
        }
    }

    /// This worker cannot do the work whatever the file (its credentials were refused): the
    /// range goes back without spending an attempt, for a correctly configured worker.
    pub fn is_replica_fault(&self) -> bool {
        matches!(self, RangeError::Lake(e) if e.is_replica_fault())
    }
}

#[derive(Debug, Clone)]
pub struct ProcessConfig {
    pub block_size: usize,
    /// The worker's store writes in flight, shared by all its lanes.
    pub write_window: WriteWindow,
    /// How long a failing store write is retried (with backoff) before the range is given up.
    pub store_retry_budget: std::time::Duration,
    /// Rows per store request (1: single-row inserts; more: UNLOGGED batches of one replica set).
    pub write_batch_rows: usize,
}

/// Where the time of a range went, for metrics and logs.
#[derive(Debug, Default, Clone, Copy)]
pub struct Timings {
    pub read_secs: f64,
    pub hash_secs: f64,
    pub write_secs: f64,
}

/// What hashing one block produced.
#[derive(Debug, Default)]
struct HashedBlock {
    hashes: Vec<EmailHash>,
    rejected: u64,
    samples: Vec<RejectionSample>,
}

/// Parses, normalizes and hashes the lines of `block` that `range` owns, on the rayon pool.
fn hash_block(block: &Block, range: ByteRange) -> HashedBlock {
    let lines: Vec<(u64, &[u8])> = block.owned_lines(range).collect();
    // Batches of lines across the rayon pool; each batch hashes its emails four at a time.
    let records: Vec<(u64, Record)> = lines.par_chunks(4096).flat_map_iter(parse_lines).collect();
    let mut out = HashedBlock { hashes: Vec::with_capacity(records.len()), ..Default::default() };
    for (offset, record) in records {
        match record {
            Record::Member(h) => out.hashes.push(h),
            Record::Skipped => {}
            Record::Rejected(reason) => out.reject(offset, reason),
        }
    }
    out
}

impl HashedBlock {
    fn reject(&mut self, offset: u64, reason: RejectReason) {
        self.rejected += 1;
        if self.samples.len() < MAX_REJECTION_SAMPLES {
            self.samples.push(RejectionSample { offset, reason });
        }
    }
}

async fn on_rayon<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let _ = tx.send(f());
    });
    rx.await.expect("rayon task panicked")
}

/// Reads, hashes and writes one leased range. Stops early with [`RangeError::LeaseLost`] when
/// `lost` is cancelled. The three stages run concurrently, joined by bounded channels.
pub async fn process_range(
    lake: &Lake,
    store: &Arc<MembershipStore>,
    lease: &RangeLease,
    cfg: &ProcessConfig,
    lost: CancellationToken,
) -> Result<(RangeReport, Timings), RangeError> {
    let source = open_range(lake, lease).await?;
    let (block_tx, block_rx) = mpsc::channel::<ScanItem>(2);
    let (hash_tx, hash_rx) = mpsc::channel::<Vec<EmailHash>>(2);
    let range = source.range;
    let reader = read_stage(source, cfg.block_size, block_tx);
    let hasher = hash_stage(block_rx, range, hash_tx);
    // The write stage runs as its own task: every row completion wakes it, and only it (not the
    // reader and the hasher beside it); it is aborted with the range if the range is dropped.
    let sink = RowSink {
        store: store.clone(),
        advertiser: lease.advertiser_id.clone(),
        version: lease.list_version(),
        window: cfg.write_window.clone(),
        retry_budget: cfg.store_retry_budget,
        batch_rows: cfg.write_batch_rows,
    };
    let mut writer = AbortOnDrop(tokio::spawn(write_stage(sink, hash_rx)));

    let pipeline = async {
        let (read_secs, (report, hash_secs), write_secs) = tokio::join!(reader, hasher, writer.join());
        let read_secs = read_secs?;
        let write_secs = write_secs?;
        Ok::<_, RangeError>((report, Timings { read_secs, hash_secs, write_secs }))
    };
    tokio::select! {
        result = pipeline => result,
        _ = lost.cancelled() => Err(RangeError::LeaseLost),
    }
}

/// The bytes a range's scanner reads: the range, the stream of the window fetched, where that
/// window starts, and whether it ends at the end of the (decompressed) object.
struct RangeSource {
    range: ByteRange,
    stream: futures::stream::BoxStream<'static, Result<Bytes, LakeError>>,
    window_start: u64,
    at_end: bool,
}

/// Opens the ranged GET of a lease's window (a compressed object: the whole object, decoded).
async fn open_range(lake: &Lake, lease: &RangeLease) -> Result<RangeSource, RangeError> {
    Ok(match lease.compression {
        Compression::None => {
            let window = lease.range.read_window(lease.object_size);
            let stream = lake.read(&lease.object_key, &lease.etag, Some(window)).await?;
            RangeSource {
                range: lease.range,
                stream: stream.boxed(),
                window_start: window.start,
                at_end: window.end == lease.object_size,
            }
        }
        compression => {
            // One range covers the whole object; offsets are in decompressed bytes.
            let raw = lake.read(&lease.object_key, &lease.etag, None).await?;
            let decoded = decompress(raw, compression);
            RangeSource { range: ByteRange::new(0, u64::MAX), stream: decoded.boxed(), window_start: 0, at_end: true }
        }
    })
}

/// Stage 1: streams the window through the range scanner into blocks of whole lines the range
/// owns. Returns its busy seconds.
async fn read_stage(source: RangeSource, block_size: usize, blocks: mpsc::Sender<ScanItem>) -> Result<f64, RangeError> {
    let started = Instant::now();
    let RangeSource { range, mut stream, window_start, at_end } = source;
    let mut scanner = RangeScanner::new(range, window_start, block_size);
    let mut items = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        metrics::counter!("memberlake_worker_bytes_read_total").increment(chunk.len() as u64);
        scanner.push(&chunk, &mut items);
        for item in items.drain(..) {
            if blocks.send(item).await.is_err() {
                return Ok(started.elapsed().as_secs_f64());
            }
        }
    }
    scanner.finish(at_end, &mut items);
    for item in items.drain(..) {
        let _ = blocks.send(item).await;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Stage 2: hashes blocks on rayon, in order; counts rows and rejects. Returns the range's
/// report and its hashing seconds.
async fn hash_stage(
    mut blocks: mpsc::Receiver<ScanItem>,
    range: ByteRange,
    hashes: mpsc::Sender<Vec<EmailHash>>,
) -> (RangeReport, f64) {
    let mut report = RangeReport::default();
    let mut hash_secs = 0.0;
    while let Some(item) = blocks.recv().await {
        let hashed = match item {
            ScanItem::Lines(block) => {
                let started = Instant::now();
                let hashed = on_rayon(move || hash_block(&block, range)).await;
                hash_secs += started.elapsed().as_secs_f64();
                hashed
            }
            ScanItem::OverlongLine { offset } => {
                let mut h = HashedBlock::default();
                h.reject(offset, RejectReason::LineTooLong);
                h
            }
        };
        report.rows += hashed.hashes.len() as u64;
        report.rejected += hashed.rejected;
        let room = MAX_REJECTION_SAMPLES.saturating_sub(report.samples.len());
        report.samples.extend(hashed.samples.into_iter().take(room));
        if !hashed.hashes.is_empty() && hashes.send(hashed.hashes).await.is_err() {
            break;
        }
    }
    metrics::counter!("memberlake_worker_rows_hashed_total").increment(report.rows);
    metrics::counter!("memberlake_worker_rows_rejected_total").increment(report.rejected);
    (report, hash_secs)
}

/// Where a range's rows go: one advertiser's version, through the worker's write window, in
/// batches of rows that share a replica set.
struct RowSink {
    store: Arc<MembershipStore>,
    advertiser: memberlake::ids::AdvertiserId,
    version: memberlake::ids::ListVersion,
    window: WriteWindow,
    retry_budget: std::time::Duration,
    /// Rows per request (1: single-row inserts).
    batch_rows: usize,
}

impl RowSink {
    /// Writes one request (a row, or a batch of rows of one replica set) once a window slot is
    /// free; retried (idempotent) within the budget.
    async fn write(&self, rows: Vec<EmailHash>) -> Result<(), StoreError> {
        let _slot = self.window.acquire().await;
        memberlake::retry::retry_transient("store write", self.retry_budget, Default::default(), || async {
            match rows.as_slice() {
                [one] => self.store.insert_member(&self.advertiser, self.version, one).await,
                many => self.store.insert_batch(&self.advertiser, self.version, many).await,
            }
        })
        .await
    }
}

/// Rows per batch for `advertiser` (see [`memberlake::store::batch_rows_for`]).
fn rows_per_batch(configured: usize, advertiser: &memberlake::ids::AdvertiserId) -> usize {
    memberlake::store::batch_rows_for(configured, advertiser.as_str().len())
}

/// Cuts a range's rows into requests: batches of up to `rows` rows whose partitions share a
/// replica set (a group), so each batch goes to a node that owns every row of it. A group's
/// partial batch waits for more rows until the input ends, so batches stay full across blocks.
struct Batcher {
    rows: usize,
    groups: std::collections::HashMap<u64, Vec<EmailHash>>,
}

impl Batcher {
    fn new(rows: usize) -> Self {
        Self { rows: rows.max(1), groups: Default::default() }
    }

    /// Adds a row of replica group `group`; returns a full batch, if this row completed one.
    fn push(&mut self, h: EmailHash, group: u64) -> Option<Vec<EmailHash>> {
        let batch = self.groups.entry(group).or_insert_with(|| Vec::with_capacity(self.rows));
        batch.push(h);
        (batch.len() >= self.rows).then(|| std::mem::replace(batch, Vec::with_capacity(self.rows)))
    }

    /// The partial batches left when the input ends.
    fn drain(&mut self) -> impl Iterator<Item = Vec<EmailHash>> + '_ {
        self.groups.drain().map(|(_, batch)| batch).filter(|batch| !batch.is_empty())
    }
}

/// Stage 3: streams rows to the store through the worker's shared write window, in requests
/// cut by a [`Batcher`]. The window stays full across block boundaries (no drain per block);
/// each request is retried on its own. Returns its busy seconds (requests queued or in flight),
/// not its idle waits.
async fn write_stage(sink: RowSink, mut blocks: mpsc::Receiver<Vec<EmailHash>>) -> Result<f64, RangeError> {
    let sink = &sink;
    let replicas = sink.store.replica_groups();
    let mut batcher = Batcher::new(rows_per_batch(sink.batch_rows, &sink.advertiser));
    let mut ready: std::collections::VecDeque<Vec<EmailHash>> = Default::default();
    let mut in_flight = FuturesUnordered::new();
    let mut input_open = true;
    let mut busy_secs = 0.0;
    let mut busy_since: Option<Instant> = None;
    let mut take = |block: Option<Vec<EmailHash>>, ready: &mut std::collections::VecDeque<_>| match block {
        Some(block) => {
            ready.extend(block.into_iter().filter_map(|h| batcher.push(h, replicas.group_of(&h))));
            true
        }
        None => {
            ready.extend(batcher.drain());
            false
        }
    };
    loop {
        // A range alone may fill the whole window; queued futures wait for a slot.
        while in_flight.len() < sink.window.capacity() {
            match ready.pop_front() {
                Some(rows) => in_flight.push(sink.write(rows)),
                None => break,
            }
        }
        if in_flight.is_empty() {
            if !input_open {
                break;
            }
            if let Some(since) = busy_since.take() {
                busy_secs += since.elapsed().as_secs_f64();
            }
            input_open = take(blocks.recv().await, &mut ready);
            busy_since = Some(Instant::now());
            continue;
        }
        tokio::select! {
            biased;
            Some(done) = in_flight.next() => done?,
            block = blocks.recv(), if input_open && ready.is_empty() => input_open = take(block, &mut ready),
        }
    }
    if let Some(since) = busy_since {
        busy_secs += since.elapsed().as_secs_f64();
    }
    Ok(busy_secs)
}

/// A spawned task that is aborted when its handle is dropped: a stage must not outlive its range.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    /// Waits for the task; its panic, if any, goes on in the caller.
    async fn join(&mut self) -> T {
        match (&mut self.0).await {
            Ok(v) => v,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => unreachable!("the task is only cancelled by dropping its handle: {e}"),
        }
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn decompress(
    raw: impl Stream<Item = Result<Bytes, LakeError>> + Send + Unpin + 'static,
    compression: Compression,
) -> impl Stream<Item = Result<Bytes, LakeError>> + Send {
    let reader = tokio::io::BufReader::new(StreamReader::new(raw.map_err(std::io::Error::other)));
    let decoder: Box<dyn AsyncRead + Send + Unpin> = match compression {
        Compression::Gzip => {
            let mut d = async_compression::tokio::bufread::GzipDecoder::new(reader);
            d.multiple_members(true);
            Box::new(d)
        }
        _ => {
            let mut d = async_compression::tokio::bufread::ZstdDecoder::new(reader);
            d.multiple_members(true);
            Box::new(d)
        }
    };
    ReaderStream::with_capacity(decoder, 256 << 10).map(|r| {
        r.map_err(|e| match e.downcast::<LakeError>() {
            Ok(lake) => lake,
            Err(e) => LakeError::Corrupt(e.to_string()),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use memberlake::ids::AdvertiserId;

    fn h(i: u32) -> EmailHash {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&i.to_be_bytes());
        EmailHash(b)
    }

    #[test]
    fn batches_hold_one_replica_group_and_every_row_once() {
        let mut batcher = Batcher::new(4);
        let mut out = Vec::new();
        for i in 0..23u32 {
            out.extend(batcher.push(h(i), u64::from(i % 3)));
        }
        assert!(out.iter().all(|b| b.len() == 4), "full batches only while rows come in");
        out.extend(batcher.drain());
        let mut seen: Vec<u32> = Vec::new();
        for batch in &out {
            let groups: std::collections::HashSet<u32> =
                batch.iter().map(|x| u32::from_be_bytes(x.0[..4].try_into().unwrap()) % 3).collect();
            assert_eq!(groups.len(), 1, "a batch holds one replica group: {batch:?}");
            seen.extend(batch.iter().map(|x| u32::from_be_bytes(x.0[..4].try_into().unwrap())));
        }
        seen.sort();
        assert_eq!(seen, (0..23).collect::<Vec<_>>());
        assert_eq!(batcher.drain().count(), 0);
    }

    #[test]
    fn one_row_per_batch_is_single_row_writes() {
        let mut batcher = Batcher::new(1);
        assert_eq!(batcher.push(h(1), 7), Some(vec![h(1)]));
        assert_eq!(batcher.drain().count(), 0);
    }

    #[test]
    fn batches_stay_below_the_batch_size_warning() {
        let short = AdvertiserId::parse("acme").unwrap();
        let longest = AdvertiserId::parse(&"a".repeat(AdvertiserId::MAX_LEN)).unwrap();
        assert_eq!(rows_per_batch(32, &short), 32);
        assert_eq!(rows_per_batch(0, &short), 1);
        assert!(rows_per_batch(256, &short) * (16 + 4 + 8 + 20) <= 4096);
        assert!(rows_per_batch(256, &longest) * (16 + 64 + 8 + 20) <= 4096);
        assert!(rows_per_batch(256, &longest) >= 32);
    }
}
