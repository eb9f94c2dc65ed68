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
use memberlake::catalog::{RangeLease, RangeOutcome, RejectionSample, MAX_REJECTION_SAMPLES};
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
    #[error("the file was registered from lake {registered:?}, but this worker reads {configured:?}")]
    WrongLake { registered: String, configured: String },
    #[error("the lease was lost (expired, or the file was cancelled or failed)")]
    LeaseLost,
    #[error("stopped by shutdown")]
    Shutdown,
}

impl RangeError {
    /// Permanent errors fail the whole file; the others give the lease back for a retry.
    pub fn is_permanent(&self) -> bool {
        match self {
            RangeError::Lake(e) => e.is_permanent(),
            RangeError::WrongLake { .. } => true,
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProcessConfig {
    pub block_size: usize,
    /// The worker's store writes in flight, shared by all its lanes.
    pub write_window: WriteWindow,
    /// How long a failing store write is retried (with backoff) before the range is given up.
    pub store_retry_budget: std::time::Duration,
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
/// `lost` is cancelled.
pub async fn process_range(
    lake: &Lake,
    store: &Arc<MembershipStore>,
    lease: &RangeLease,
    cfg: &ProcessConfig,
    lost: CancellationToken,
) -> Result<(RangeOutcome, Timings), RangeError> {
    if lease.bucket != lake.bucket() {
        return Err(RangeError::WrongLake { registered: lease.bucket.clone(), configured: lake.bucket().to_owned() });
    }
    // The range, the window fetched, where the scanner starts, and whether the window ends at
    // the end of the (decompressed) object.
    let (range, stream, window_start, at_end): (ByteRange, _, u64, bool) = match lease.compression {
        Compression::None => {
            let window = lease.range.read_window(lease.object_size);
            let stream = lake.read(&lease.object_key, &lease.etag, Some(window)).await?;
            (lease.range, stream.boxed(), window.start, window.end == lease.object_size)
        }
        compression => {
            // One range covers the whole object; offsets are in decompressed bytes.
            let raw = lake.read(&lease.object_key, &lease.etag, None).await?;
            let decoded = decompress(raw, compression);
            (ByteRange::new(0, u64::MAX), decoded.boxed(), 0, true)
        }
    };

    let (block_tx, mut block_rx) = mpsc::channel::<ScanItem>(2);
    let (hash_tx, mut hash_rx) = mpsc::channel::<Vec<EmailHash>>(2);
    let block_size = cfg.block_size;

    // Stage 1: stream the window through the scanner.
    let reader = async move {
        let started = Instant::now();
        let mut stream = stream;
        let mut scanner = RangeScanner::new(range, window_start, block_size);
        let mut items = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            metrics::counter!("memberlake_worker_bytes_read_total").increment(chunk.len() as u64);
            scanner.push(&chunk, &mut items);
            for item in items.drain(..) {
                if block_tx.send(item).await.is_err() {
                    return Ok(started.elapsed().as_secs_f64());
                }
            }
        }
        scanner.finish(at_end, &mut items);
        for item in items.drain(..) {
            let _ = block_tx.send(item).await;
        }
        Ok::<_, RangeError>(started.elapsed().as_secs_f64())
    };

    // Stage 2: hash blocks on rayon, in order.
    let hasher = async move {
        let mut outcome = RangeOutcome::default();
        let mut hash_secs = 0.0;
        while let Some(item) = block_rx.recv().await {
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
            outcome.rows += hashed.hashes.len() as u64;
            outcome.rejected += hashed.rejected;
            let room = MAX_REJECTION_SAMPLES.saturating_sub(outcome.samples.len());
            outcome.samples.extend(hashed.samples.into_iter().take(room));
            if !hashed.hashes.is_empty() && hash_tx.send(hashed.hashes).await.is_err() {
                break;
            }
        }
        metrics::counter!("memberlake_worker_rows_hashed_total").increment(outcome.rows);
        metrics::counter!("memberlake_worker_rows_rejected_total").increment(outcome.rejected);
        (outcome, hash_secs)
    };

    // Stage 3: stream rows to the store through the worker's shared write window. The window
    // stays full across block boundaries (no drain per batch); each row is retried on its own.
    // It runs as its own task: every row completion wakes it, and only it (not the reader and
    // the hasher beside it); it is aborted with the range if the range is dropped.
    let (store, advertiser, version) = (store.clone(), lease.advertiser_id.clone(), lease.list_version());
    let (window, retry_budget) = (cfg.write_window.clone(), cfg.store_retry_budget);
    let mut writer = AbortOnDrop(tokio::spawn(async move {
        let (store, advertiser, window) = (&store, &advertiser, &window);
        let write_row = |h: EmailHash| async move {
            let _slot = window.acquire().await;
            // Idempotent: a retried row rewrites itself.
            memberlake::retry::retry(
                "store write",
                retry_budget,
                Default::default(),
                |_| true,
                || store.insert_member(advertiser, version, &h),
            )
            .await
        };
        let mut in_flight = FuturesUnordered::new();
        let mut pending = Vec::new().into_iter();
        let mut input_open = true;
        // Time with rows queued or in flight: the writer's busy time, not its idle waits.
        let mut busy_secs = 0.0;
        let mut busy_since: Option<Instant> = None;
        loop {
            // A range alone may fill the whole window; queued futures wait for a slot.
            while in_flight.len() < window.capacity() {
                match pending.next() {
                    Some(h) => in_flight.push(write_row(h)),
                    None => break,
                }
            }
            if in_flight.is_empty() {
                if let Some(since) = busy_since.take() {
                    busy_secs += since.elapsed().as_secs_f64();
                }
                match hash_rx.recv().await {
                    Some(batch) => {
                        pending = batch.into_iter();
                        busy_since = Some(Instant::now());
                        continue;
                    }
                    None => break,
                }
            }
            tokio::select! {
                biased;
                Some(done) = in_flight.next() => done?,
                batch = hash_rx.recv(), if input_open && pending.len() == 0 => match batch {
                    Some(batch) => pending = batch.into_iter(),
                    None => input_open = false,
                },
            }
        }
        Ok::<_, RangeError>(busy_secs)
    }));

    let pipeline = async {
        let (read_secs, (outcome, hash_secs), write_secs) = tokio::join!(reader, hasher, writer.join());
        let read_secs = read_secs?;
        let write_secs = write_secs?;
        Ok::<_, RangeError>((outcome, Timings { read_secs, hash_secs, write_secs }))
    };
    tokio::select! {
        result = pipeline => result,
        _ = lost.cancelled() => Err(RangeError::LeaseLost),
    }
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
