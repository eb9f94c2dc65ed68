//! Reading one byte range of a member list exactly as a worker does: the ranged GET of the
//! range's window (a compressed object: the whole object, decoded), the range-boundary rule
//! ([`RangeScanner`]), then parsing, normalizing and hashing on the rayon pool, in order, with
//! rejected rows counted by reason and sampled by offset (never their contents).
//!
//! The compute-worker's ingest units and `memberlake check` (a dry run of a list) both read
//! through [`read_range`], so a dry run sees what ingestion would.
//!
//! ```text
//! ranged GET ──chunks──▶ RangeScanner ──blocks (≤2 queued)──▶ rayon: parse+normalize+MD5 ──▶ hashes
//! ```

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use rayon::prelude::*;
use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tokio_util::io::{ReaderStream, StreamReader};
use tracing::Instrument;

use crate::catalog::{RangeReport, RejectionSample, MAX_REJECTION_SAMPLES};
use crate::ids::EmailHash;
use crate::lake::{Compression, Lake, LakeError};
use crate::ranges::{Block, ByteRange, RangeScanner, ScanItem};
use crate::records::{parse_lines, Record, RejectReason};

/// Bytes scanned into one block at a time: the worker's default (`MEMBERLAKE_BLOCK_SIZE`), and
/// what `memberlake check` uses.
pub const DEFAULT_BLOCK_SIZE: u64 = 4 << 20;

/// The object a range belongs to, as registered (its etag pins the version read).
#[derive(Debug, Clone, Copy)]
pub struct ObjectToRead<'a> {
    pub key: &'a str,
    pub etag: &'a str,
    pub size: u64,
    pub compression: Compression,
}

/// What reading a range took: seconds spent reading (the scan included) and hashing.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReadTimings {
    pub read_secs: f64,
    pub hash_secs: f64,
}

/// Reads `range` of `object`, sends its members' hashes to `hashes` in file order (blocks of
/// them), and returns the range's report: rows, rejects by reason and samples. The read and the
/// hashing run concurrently, joined by a bounded channel; memory stays a few blocks whatever the
/// range size. Stops early, without error, if `hashes` is closed.
pub async fn read_range(
    lake: &Lake,
    object: &ObjectToRead<'_>,
    range: ByteRange,
    block_size: usize,
    hashes: mpsc::Sender<Vec<EmailHash>>,
) -> Result<(RangeReport, ReadTimings), LakeError> {
    let source = open_range(lake, object, range).await?;
    let (block_tx, block_rx) = mpsc::channel::<ScanItem>(2);
    let range = source.range;
    // A span per stage: in an exported trace, a worker's range shows where its time went.
    let scan = scan_stage(source, block_size, block_tx).instrument(tracing::info_span!("read"));
    let hash = hash_stage(block_rx, range, hashes).instrument(tracing::info_span!("hash"));
    let (read_secs, (report, hash_secs)) = tokio::join!(scan, hash);
    Ok((report, ReadTimings { read_secs: read_secs?, hash_secs }))
}

/// What hashing one block produced.
#[derive(Debug, Default)]
struct HashedBlock {
    hashes: Vec<EmailHash>,
    rejected: u64,
    rejected_by_reason: BTreeMap<RejectReason, u64>,
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
        *self.rejected_by_reason.entry(reason).or_default() += 1;
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

/// The bytes a range's scanner reads: the range, the stream of the window fetched, where that
/// window starts, and whether it ends at the end of the (decompressed) object.
struct RangeSource {
    range: ByteRange,
    stream: futures::stream::BoxStream<'static, Result<Bytes, LakeError>>,
    window_start: u64,
    at_end: bool,
}

/// Opens the ranged GET of `range`'s window (a compressed object: the whole object, decoded).
async fn open_range(lake: &Lake, object: &ObjectToRead<'_>, range: ByteRange) -> Result<RangeSource, LakeError> {
    Ok(match object.compression {
        Compression::None => {
            let window = range.read_window(object.size);
            let stream = lake.read(object.key, object.etag, Some(window)).await?;
            RangeSource { range, stream: stream.boxed(), window_start: window.start, at_end: window.end == object.size }
        }
        compression => {
            // One range covers the whole object; offsets are in decompressed bytes.
            let raw = lake.read(object.key, object.etag, None).await?;
            let decoded = decompress(raw, compression);
            RangeSource { range: ByteRange::new(0, u64::MAX), stream: decoded.boxed(), window_start: 0, at_end: true }
        }
    })
}

/// Streams the window through the range scanner into blocks of whole lines the range
/// owns. Returns its busy seconds.
async fn scan_stage(source: RangeSource, block_size: usize, blocks: mpsc::Sender<ScanItem>) -> Result<f64, LakeError> {
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

/// Hashes blocks on rayon, in order; counts rows and rejects. Returns the range's
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
        for (reason, rows) in hashed.rejected_by_reason {
            *report.rejected_by_reason.entry(reason).or_default() += rows;
        }
        let room = MAX_REJECTION_SAMPLES.saturating_sub(report.samples.len());
        report.samples.extend(hashed.samples.into_iter().take(room));
        if !hashed.hashes.is_empty() && hashes.send(hashed.hashes).await.is_err() {
            break;
        }
    }
    metrics::counter!("memberlake_worker_rows_hashed_total").increment(report.rows);
    for (reason, rows) in &report.rejected_by_reason {
        metrics::counter!("memberlake_worker_rows_rejected_total", "reason" => reason.as_str()).increment(*rows);
    }
    (report, hash_secs)
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
