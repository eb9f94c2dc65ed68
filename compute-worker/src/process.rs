//! Processing one lease, by stage (see `docs/versions.md`).
//!
//! **Ingest** (a byte range): a three-stage pipeline with bounded buffers, the first two of
//! which are [`memberlake::ingest::read_range`] (shared with `memberlake check`).
//!
//! ```text
//! ranged GET ──chunks──▶ RangeScanner ──blocks (≤2 queued)──▶ rayon: parse+normalize+MD5
//!                                                               │
//!      work location: sorted runs (RunSpill) ◀──hashes (≤2)─────┘
//! ```
//!
//! Memory bound per lease: about `block_size × 6` (a block being scanned, two queued, one
//! hashing, two hashed batches waiting at 33 bytes per record: an `EmailHash` in memory holds
//! either scheme's width) plus the spill's hashes (at most `run_spill_hashes` × 33 bytes, and
//! their encoded run, 16 or 32 bytes a hash, while it is written); with the defaults ~25 MiB +
//! 50 MiB whatever the file size. Ingest writes nothing to the store.
//!
//! **Merge** (a bucket): merge the runs' bucket, diff against the base version, write the diff
//! to the work location, then the changed rows to the store. **Undo** and **retire** (a bucket):
//! read a diff, delete rows.
//!
//! Each stage runs in a span of its own under the unit's (`read`, `hash` and `write_runs`;
//! `merge` and `write_rows`; `read_diff` and `write_rows`): an exported trace shows where a
//! unit's time went.
//!
//! Store writes go through the worker's [`WriteWindow`]: one bound on rows in flight for the
//! whole worker, kept full across block and unit boundaries.

use std::sync::Arc;
use std::time::Instant;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use memberlake::catalog::{BucketReport, Catalog, CatalogError, RangeReport, UnitLease, UnitReport, WorkStage};
use memberlake::ids::EmailHash;
use memberlake::ingest::{self, ObjectToRead};
use memberlake::lake::{Lake, LakeError};
use memberlake::manifest::ManifestError;
use memberlake::store::{ChangeOp, MembershipStore, StoreError, WriteWindow};
use memberlake::versions::{self, DiffSide, MergeSource, RunSpill, VersionError, VersionObjects};
use memberlake::work::WorkLocation;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info_span, Instrument};

#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Version(#[from] VersionError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A merge or cleanup unit without the version facts it needs (never expected).
    #[error("{0}")]
    Unit(String),
    #[error("the lease was lost (expired, or the file was cancelled or failed)")]
    LeaseLost,
    #[error("stopped by shutdown")]
    Shutdown,
}

impl UnitError {
    /// Permanent errors fail the whole file; the others give the lease back for a retry. A
    /// fault of this worker's own configuration is never permanent for the file.
    pub fn is_permanent(&self) -> bool {
        use memberlake::error::Classify;
        match self {
            UnitError::Lake(e) => e.is_permanent() && !e.is_replica_fault(),
            // A corrupt or missing run of our own: redoing the merge cannot help; the version
            // fails (and is undone), the operator retries it.
            UnitError::Version(e) => e.is_permanent() && !self.is_replica_fault(),
            UnitError::Unit(_) => true,
            _ => false,
        }
    }

    /// This worker cannot do the work whatever the file (its credentials were refused): the
    /// range goes back without spending an attempt, for a correctly configured worker.
    pub fn is_replica_fault(&self) -> bool {
        match self {
            UnitError::Lake(e) | UnitError::Version(VersionError::Work(e)) => e.is_replica_fault(),
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
    /// Rows per store request (1: single-row inserts; more: UNLOGGED batches of one replica set).
    pub write_batch_rows: usize,
    /// Hashes an ingest range holds before it spills a sorted run (33 bytes each in memory).
    pub run_spill_hashes: usize,
    /// The width of the membership filters merge units build (`None`: none).
    pub filter_bits: Option<memberlake::filter::FingerprintBits>,
}

/// What a unit needs besides its lease.
pub struct UnitContext<'a> {
    pub lake: &'a Lake,
    pub work: &'a WorkLocation,
    pub store: &'a Arc<MembershipStore>,
    pub catalog: &'a Catalog,
    pub cfg: &'a ProcessConfig,
}

/// Where the time of a range went, for metrics and logs.
#[derive(Debug, Default, Clone, Copy)]
pub struct Timings {
    pub read_secs: f64,
    pub hash_secs: f64,
    pub write_secs: f64,
}

/// Says when a unit has read its inputs and only writes rows from then on: its slot may then
/// claim the next unit, whose reads overlap these writes. Without it the store idles while each
/// merge unit of a large file reads its bucket of ~100 runs (measured: 0.85x the batched loop
/// on a 68M-row list). Dropping it says the same, so a unit that never signals (an ingest range,
/// which holds its memory to the end) lets the slot claim again only when it ends. At most two
/// units per slot, one of them reading: memory stays one ingest range plus one bucket per slot.
#[derive(Debug)]
pub struct InputsRead(Option<tokio::sync::oneshot::Sender<()>>);

impl InputsRead {
    /// A signal and what the slot waits on.
    pub fn channel() -> (Self, tokio::sync::oneshot::Receiver<()>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (Self(Some(tx)), rx)
    }

    fn signal(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// Works on one leased unit, by stage. Stops early with [`UnitError::LeaseLost`] when `lost`
/// is cancelled.
pub async fn process_unit(
    ctx: &UnitContext<'_>,
    lease: &UnitLease,
    lost: CancellationToken,
    mut inputs_read: InputsRead,
) -> Result<(UnitReport, Timings), UnitError> {
    let work = async {
        match lease.stage {
            WorkStage::Ingest => process_range(ctx, lease).await.map(|(r, t)| (UnitReport::Ingest(r), t)),
            WorkStage::Merge => merge_unit(ctx, lease, &mut inputs_read).await.map(|(r, t)| (UnitReport::Merge(r), t)),
            WorkStage::Undo | WorkStage::Retire => cleanup_unit(ctx, lease, &mut inputs_read).await,
        }
    };
    tokio::select! {
        result = work => result,
        _ = lost.cancelled() => Err(UnitError::LeaseLost),
    }
}

/// The objects of the lease's version at the work location.
fn version_objects(lease: &UnitLease) -> Result<VersionObjects, UnitError> {
    let bits =
        lease.bucket_bits.ok_or_else(|| UnitError::Unit(format!("file {} has no bucket width", lease.file_id)))?;
    VersionObjects::new(&lease.advertiser_id, lease.list_version(), bits).map_err(unit_error)
}

fn unit_error(e: ManifestError) -> UnitError {
    UnitError::Unit(e.to_string())
}

/// Ingest: reads and hashes one leased range and writes its hashes as sorted runs. The three
/// stages run concurrently, joined by bounded channels.
async fn process_range(ctx: &UnitContext<'_>, lease: &UnitLease) -> Result<(RangeReport, Timings), UnitError> {
    let objects = version_objects(lease)?;
    let object = ObjectToRead {
        key: &lease.object_key,
        etag: &lease.etag,
        size: lease.object_size,
        compression: lease.compression,
    };
    // Loaded after the claim: every erasure fenced below this lease is in it (catalog::erasures).
    let erased = ctx.catalog.erased_hashes().await?;
    let (hash_tx, mut hash_rx) = mpsc::channel::<Vec<EmailHash>>(2);
    let reader = ingest::read_range(ctx.lake, &object, lease.range, ctx.cfg.block_size, hash_tx);
    let spiller = async {
        let started = Instant::now();
        let mut spill = RunSpill::new(objects, lease.range_index, ctx.cfg.run_spill_hashes);
        let mut dropped = 0u64;
        while let Some(mut block) = hash_rx.recv().await {
            if !erased.is_empty() {
                let before = block.len();
                block.retain(|h| !erased.contains(h));
                dropped += (before - block.len()) as u64;
            }
            spill.push(ctx.work, block).await?;
        }
        let parts = spill.finish(ctx.work).await?;
        Ok::<_, UnitError>((parts, dropped, started.elapsed().as_secs_f64()))
    }
    .instrument(info_span!("write_runs"));
    let (read, spilled) = tokio::join!(reader, spiller);
    let (mut report, timings) = read?;
    let (parts, erased, write_secs) = spilled?;
    report.run_parts = parts;
    // Of the valid rows (`rows`), those not written to the runs.
    report.erased = erased;
    Ok((report, Timings { read_secs: timings.read_secs, hash_secs: timings.hash_secs, write_secs }))
}

/// Merge: one bucket of the version. The diff reaches the work location before any row
/// reaches the store, so an undo always knows what the version may have written.
async fn merge_unit(
    ctx: &UnitContext<'_>,
    lease: &UnitLease,
    inputs_read: &mut InputsRead,
) -> Result<(BucketReport, Timings), UnitError> {
    let objects = version_objects(lease)?;
    let b = bucket_of(lease)?;
    let started = Instant::now();
    let base = match lease.base {
        Some((version, bits)) => Some(VersionObjects::new(&lease.advertiser_id, version, bits).map_err(unit_error)?),
        None => None,
    };
    let merged = async {
        // Loaded after the claim: an erasure recorded before this lease was drawn is in it
        // (catalog::erasures), and its hash reaches no manifest, diff or row of this unit.
        let erased = ctx.catalog.erased_in_bucket(objects.buckets, b).await?;
        Ok::<_, UnitError>(match lease.restores {
            // A rollback: the member set is an earlier version's manifest.
            Some((version, bits)) => {
                let restored = VersionObjects::new(&lease.advertiser_id, version, bits).map_err(unit_error)?;
                versions::merge_bucket(
                    ctx.work,
                    &objects,
                    MergeSource::Manifest(&restored),
                    base.as_ref(),
                    b,
                    &erased,
                    ctx.cfg.filter_bits,
                )
                .await?
            }
            None => {
                let runs: Vec<String> = ctx
                    .catalog
                    .runs_of(lease.file_id)
                    .await?
                    .into_iter()
                    .flat_map(|(range, parts)| (0..parts).map(move |part| (range, part)))
                    .map(|(range, part)| objects.dir.run(range, part))
                    .collect();
                versions::merge_bucket(
                    ctx.work,
                    &objects,
                    MergeSource::Runs(&runs),
                    base.as_ref(),
                    b,
                    &erased,
                    ctx.cfg.filter_bits,
                )
                .await?
            }
        })
    }
    .instrument(info_span!("merge"))
    .await?;
    let read_secs = started.elapsed().as_secs_f64();
    inputs_read.signal();
    let started = Instant::now();
    let version = lease.list_version();
    let (added, removed) = (merged.added.len() as u64, merged.removed.len() as u64);
    let report =
        BucketReport { members: merged.members, added, removed, rows_written: added + removed, erased: merged.erased };
    write_rows(ctx, lease, ChangeOp::Set { present: true }, version, merged.added).await?;
    write_rows(ctx, lease, ChangeOp::Set { present: false }, version, merged.removed).await?;
    Ok((report, Timings { read_secs, hash_secs: 0.0, write_secs: started.elapsed().as_secs_f64() }))
}

/// Undo: deletes exactly the rows this version's diff bucket recorded. Retire: for the hashes
/// the successor removed, deletes every row up to the successor (this version's `present` row
/// and the successor's `absent` one): nothing answers from them any more.
async fn cleanup_unit(
    ctx: &UnitContext<'_>,
    lease: &UnitLease,
    inputs_read: &mut InputsRead,
) -> Result<(UnitReport, Timings), UnitError> {
    let b = bucket_of(lease)?;
    let started = Instant::now();
    let rows = match lease.stage {
        WorkStage::Undo => {
            let objects = version_objects(lease)?;
            let has_base = lease.base.is_some();
            let (added, removed) = async {
                let added = versions::read_diff(ctx.work, &objects, has_base, b, DiffSide::Added).await?;
                let removed = versions::read_diff(ctx.work, &objects, has_base, b, DiffSide::Removed).await?;
                Ok::<_, VersionError>((added, removed))
            }
            .instrument(info_span!("read_diff"))
            .await?;
            let mut all = added;
            all.extend(removed);
            let n = all.len() as u64;
            inputs_read.signal();
            write_rows(ctx, lease, ChangeOp::Undo, lease.list_version(), all).await?;
            n
        }
        _ => {
            let (successor, bits) = lease
                .successor
                .ok_or_else(|| UnitError::Unit(format!("file {} has no successor to retire by", lease.file_id)))?;
            let objects = VersionObjects::new(&lease.advertiser_id, successor, bits).map_err(unit_error)?;
            let removed = versions::read_diff(ctx.work, &objects, true, b, DiffSide::Removed)
                .instrument(info_span!("read_diff"))
                .await?;
            let n = removed.len() as u64;
            inputs_read.signal();
            write_rows(ctx, lease, ChangeOp::RetireThrough, successor, removed).await?;
            n
        }
    };
    let timings = Timings { read_secs: 0.0, hash_secs: 0.0, write_secs: started.elapsed().as_secs_f64() };
    Ok((UnitReport::Cleanup { rows_deleted: rows }, timings))
}

fn bucket_of(lease: &UnitLease) -> Result<u32, UnitError> {
    u32::try_from(lease.range_index).map_err(|_| UnitError::Unit(format!("bucket {} is negative", lease.range_index)))
}

/// Writes `op` for every hash through the worker's write window, in replica-grouped batches.
async fn write_rows(
    ctx: &UnitContext<'_>,
    lease: &UnitLease,
    op: ChangeOp,
    version: memberlake::ids::ListVersion,
    hashes: Vec<EmailHash>,
) -> Result<f64, UnitError> {
    if hashes.is_empty() {
        return Ok(0.0);
    }
    let sink = RowSink {
        store: ctx.store.clone(),
        op,
        advertiser: lease.advertiser_id.clone(),
        version,
        window: ctx.cfg.write_window.clone(),
        retry_budget: ctx.cfg.store_retry_budget,
        batch_rows: ctx.cfg.write_batch_rows,
    };
    let span = info_span!("write_rows", op = ?op, rows = hashes.len());
    let (tx, rx) = mpsc::channel(1);
    tx.send(hashes).await.expect("the receiver is alive");
    drop(tx);
    write_stage(sink, rx).instrument(span).await
}

/// Where a unit's rows go: one change to one advertiser's version, through the worker's write
/// window, in batches of rows that share a replica set.
struct RowSink {
    store: Arc<MembershipStore>,
    op: ChangeOp,
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
        memberlake::retry::retry_transient("store write", self.retry_budget, Default::default(), || {
            self.store.write_changes(self.op, &self.advertiser, self.version, &rows)
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

/// Streams rows to the store through the worker's shared write window, in requests
/// cut by a [`Batcher`]. The window stays full across block boundaries (no drain per block);
/// each request is retried on its own. Returns its busy seconds (requests queued or in flight),
/// not its idle waits.
async fn write_stage(sink: RowSink, mut blocks: mpsc::Receiver<Vec<EmailHash>>) -> Result<f64, UnitError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use memberlake::ids::AdvertiserId;

    fn h(i: u32) -> EmailHash {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&i.to_be_bytes());
        EmailHash::md5(b)
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
                batch.iter().map(|x| u32::from_be_bytes(x.as_bytes()[..4].try_into().unwrap()) % 3).collect();
            assert_eq!(groups.len(), 1, "a batch holds one replica group: {batch:?}");
            seen.extend(batch.iter().map(|x| u32::from_be_bytes(x.as_bytes()[..4].try_into().unwrap())));
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
        // Measured: 64 rows of `acme` made a 5.19 KiB batch, over the 5 KiB threshold.
        let measured_row = |adv: usize| 77 + adv;
        assert!(rows_per_batch(256, &short) * measured_row(4) <= 5000);
        assert!(rows_per_batch(256, &longest) * measured_row(64) <= 5000);
        assert!(rows_per_batch(256, &short) >= 48);
        assert!(rows_per_batch(256, &longest) >= 32);
    }
}
