//! `memberlake check <list>`: a dry run of a member list. It reads the list exactly as the
//! workers would — the same range plan, the same reader (boundary rule, parser, normalization,
//! hashing: [`memberlake::ingest::read_range`]), the same sorted runs and bucket merge into a
//! private scratch directory — and prints what ingestion would find: rows, valid, rejected by
//! reason with sample offsets, duplicates, the range plan and, given an advertiser, the members
//! it would add, remove and keep against the active version's manifest, with the deployment's
//! erasures applied as a merge applies them (without an advertiser nothing is read from the
//! catalog, so erased people are counted as members). Nothing is written to the lake, the
//! catalog or the store.
//!
//! Exit codes: 0 fine, 9 it would be held (the same guards as the splitter, from the same
//! settings), 10 it would fail (unreadable), 3 a server is unreachable.

use std::collections::BTreeMap;

use anyhow::Context;
use clap::Args;
use memberlake::catalog::{bucket_bits_for, reject_guard, shrink_guard, Catalog, RangeReport};
use memberlake::config::{DatabaseArgs, LakeArgs, PlanArgs};
use memberlake::error::Classify;
use memberlake::ids::{AdvertiserId, EmailHash, ListVersion};
use memberlake::ingest::{read_range, ObjectToRead};
use memberlake::lake::{Compression, Lake};
use memberlake::ranges::plan_ranges;
use memberlake::records::RejectReason;
use memberlake::versions::{self, MergeSource, RunSpill, VersionObjects};
use memberlake::work::WorkLocation;

use crate::outcome::{Exit, Failed};

/// Sample offsets printed per reject reason.
const SAMPLES_PER_REASON: usize = 3;

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The list: a local path, `file:///absolute/path` or `s3://bucket/key` (S3 through the
    /// standard AWS_* variables).
    list: String,
    /// Compare with this advertiser's active version: members added, removed, unchanged, and
    /// the shrink guard (needs MEMBERLAKE_DATABASE_URL and the work location,
    /// MEMBERLAKE_WORK_URL or beside MEMBERLAKE_LAKE_URL).
    #[arg(long)]
    advertiser: Option<String>,
    #[command(flatten)]
    plan: PlanArgs,
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    lake: LakeArgs,
}

/// What the dry run found.
#[derive(Debug, Default)]
struct Findings {
    ranges: usize,
    buckets: u32,
    valid: u64,
    rejected: u64,
    by_reason: BTreeMap<RejectReason, u64>,
    samples: BTreeMap<RejectReason, Vec<u64>>,
    members: u64,
    /// Rows of erased people dropped, as a merge drops them (`None`: erasures not read).
    erased: Option<u64>,
    diff: Option<Diff>,
}

#[derive(Debug)]
struct Diff {
    version: ListVersion,
    added: u64,
    removed: u64,
}

impl Diff {
    fn base_members(&self, members: u64) -> u64 {
        members - self.added + self.removed
    }
}

/// Splits the argument into a lake root and the object's key.
fn locate(list: &str) -> anyhow::Result<(Lake, String)> {
    if let Some(rest) = list.strip_prefix("s3://") {
        let (bucket, key) = rest.split_once('/').context("an s3:// list needs a key: s3://bucket/key")?;
        return Ok((Lake::open(&format!("s3://{bucket}"))?, key.to_owned()));
    }
    let path = std::path::PathBuf::from(list.strip_prefix("file://").unwrap_or(list));
    let path = std::fs::canonicalize(&path).with_context(|| format!("{}", path.display()))?;
    let dir = path.parent().context("a list file has a directory")?;
    let name = path.file_name().context("a list file has a name")?.to_string_lossy().into_owned();
    Ok((Lake::open(&format!("file://{}", dir.display()))?, name))
}

pub async fn run(args: CheckArgs) -> Result<(), Failed> {
    let advertiser = match &args.advertiser {
        Some(a) => Some(AdvertiserId::parse(a).map_err(|e| Failed::new(Exit::Usage, anyhow::anyhow!("{e}")))?),
        None => None,
    };
    let (lake, key) = locate(&args.list).map_err(|e| Failed::new(Exit::WouldFail, e))?;
    let unreadable = |e: memberlake::lake::LakeError| {
        let exit = if e.is_transient() { Exit::Unavailable } else { Exit::WouldFail };
        Failed::new(exit, anyhow::Error::new(e).context(format!("reading {}", args.list)))
    };
    let (size, etag) = lake.stat(&key).await.map_err(unreadable)?;
    let compression = Compression::from_key(&key);
    let ranges = plan_ranges(size, args.plan.range_size, compression.is_splittable());
    let bits = bucket_bits_for(size, args.plan.bucket_target);

    // The active version to diff against, if asked: from the catalog, its manifest from the
    // deployment's work location; and the catalog's erasures.
    let (catalog, base) = match &advertiser {
        Some(advertiser) => {
            let catalog = open_catalog(&args).await?;
            let base = active_base(&args, &catalog, advertiser).await?;
            (Some(catalog), base)
        }
        None => (None, None),
    };

    let scratch_dir = std::env::temp_dir().join(format!("memberlake-check-{}", std::process::id()));
    std::fs::create_dir_all(&scratch_dir).map_err(|e| Failed::new(Exit::Failure, e))?;
    let scratch = WorkLocation::scratch(&scratch_dir).map_err(|e| Failed::new(Exit::Failure, e))?;
    let result =
        dry_run(&lake, &key, &etag, size, compression, &ranges, bits, &scratch, advertiser, base, catalog.as_ref())
            .await;
    let _ = std::fs::remove_dir_all(&scratch_dir);
    let mut findings = result.map_err(|e| match e.downcast::<memberlake::lake::LakeError>() {
        Ok(lake_error) => unreadable(lake_error),
        Err(other) => Failed::new(Exit::Failure, other),
    })?;
    findings.ranges = ranges.len();
    findings.buckets = 1 << bits;
    print!("{}", report(&args.list, size, compression, &args.plan, &findings));
    verdict(&findings, &args.plan)
}

/// The deployment's catalog, for the active version to compare with and the erasures to apply
/// (one connection: a CLI run).
async fn open_catalog(args: &CheckArgs) -> Result<Catalog, Failed> {
    Catalog::open(&DatabaseArgs { database_max_connections: 1, ..args.database.clone() }).await.map_err(|e| {
        let exit = if e.is_transient() { Exit::Unavailable } else { Exit::Failure };
        Failed::new(exit, anyhow::Error::new(e).context("connecting to Postgres (the active version and the erasures)"))
    })
}

/// The active version of `advertiser` and where its manifest is, or `None` (no active version,
/// or a legacy one without a manifest: said on stderr).
async fn active_base(args: &CheckArgs, catalog: &Catalog, advertiser: &AdvertiserId) -> Result<Option<Base>, Failed> {
    let active = catalog.active_manifest(advertiser).await.map_err(|e| Failed::new(Exit::Unavailable, e))?;
    let Some(active) = active else {
        eprintln!("{advertiser} has no active version: the whole list would be its first version");
        return Ok(None);
    };
    if active.legacy || active.manifest_expired || active.bucket_bits.is_none() {
        eprintln!(
            "{advertiser}'s active version {} has no manifest to compare with (written by an earlier release): \
             the whole list would be written",
            active.version.0
        );
        return Ok(None);
    }
    // The deployment's work location: configured, or beside the deployment's file:// lake.
    let deployment_lake = Lake::open(&args.lake.lake_url).map_err(|e| Failed::new(Exit::Failure, e))?;
    let work = WorkLocation::open(args.lake.work_url.as_deref(), &deployment_lake)
        .map_err(|e| Failed::new(Exit::Failure, anyhow::Error::new(e).context("the work location")))?;
    let bits = active.bucket_bits.unwrap_or(0) as u8;
    let objects = VersionObjects::new(advertiser, active.version, bits).map_err(|e| Failed::new(Exit::Failure, e))?;
    Ok(Some(Base { work, objects, version: active.version }))
}

/// The active version a list is compared with, and where its manifest is.
struct Base {
    work: WorkLocation,
    objects: VersionObjects,
    version: ListVersion,
}

#[allow(clippy::too_many_arguments)]
async fn dry_run(
    lake: &Lake,
    key: &str,
    etag: &str,
    size: u64,
    compression: Compression,
    ranges: &[memberlake::ranges::ByteRange],
    bits: u8,
    scratch: &WorkLocation,
    advertiser: Option<AdvertiserId>,
    base: Option<Base>,
    erasures: Option<&Catalog>,
) -> anyhow::Result<Findings> {
    let advertiser = advertiser.unwrap_or_else(|| AdvertiserId::parse("check").expect("a valid id"));
    // The scratch version's number: never read by anything but this run.
    let objects = VersionObjects::new(&advertiser, ListVersion(i64::MAX), bits)?;
    let object = ObjectToRead { key, etag, size, compression };
    let mut findings = Findings::default();
    let mut runs = Vec::new();
    for (index, range) in ranges.iter().enumerate() {
        let index = i32::try_from(index)?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<EmailHash>>(2);
        let spill = async {
            let mut spill = RunSpill::new(objects.clone(), index, versions::DEFAULT_RUN_SPILL_HASHES);
            while let Some(block) = rx.recv().await {
                spill.push(scratch, block).await?;
            }
            Ok::<_, anyhow::Error>(spill.finish(scratch).await?)
        };
        let (read, parts) =
            tokio::join!(read_range(lake, &object, *range, memberlake::ingest::DEFAULT_BLOCK_SIZE as usize, tx), spill);
        let (report, _) = read?;
        add_range(&mut findings, &report);
        runs.extend((0..parts?).map(|part| objects.dir.run(index, part)));
    }
    let mut diff = base.as_ref().map(|b| Diff { version: b.version, added: 0, removed: 0 });
    findings.erased = erasures.map(|_| 0);
    for b in 0..(1u32 << bits) {
        let base = base.as_ref().map(|base| (&base.work, &base.objects));
        // The bucket's erased hashes, dropped as the merge unit drops them.
        let erased = match erasures {
            Some(catalog) => catalog.erased_in_bucket(objects.buckets, b).await.context("reading erasures")?,
            None => Vec::new(),
        };
        let merged =
            versions::merge_bucket_against(scratch, &objects, MergeSource::Runs(&runs), base, b, &erased, None).await?;
        findings.members += merged.members;
        if let Some(e) = findings.erased.as_mut() {
            *e += merged.erased;
        }
        if let Some(d) = diff.as_mut() {
            d.added += merged.added.len() as u64;
            d.removed += merged.removed.len() as u64;
        }
    }
    findings.diff = diff;
    Ok(findings)
}

fn add_range(findings: &mut Findings, report: &RangeReport) {
    findings.valid += report.rows;
    findings.rejected += report.rejected;
    for (reason, n) in &report.rejected_by_reason {
        *findings.by_reason.entry(*reason).or_default() += n;
    }
    for sample in &report.samples {
        let offsets = findings.samples.entry(sample.reason).or_default();
        if offsets.len() < SAMPLES_PER_REASON {
            offsets.push(sample.offset);
        }
    }
}

fn report(list: &str, size: u64, compression: Compression, plan: &PlanArgs, f: &Findings) -> String {
    use std::fmt::Write;
    let total = f.valid + f.rejected;
    let pct = |n: u64, of: u64| if of == 0 { 0.0 } else { 100.0 * n as f64 / of as f64 };
    let mut out = String::new();
    let _ = writeln!(out, "list        {list} ({size} bytes, {})", compression.as_str());
    let _ = writeln!(
        out,
        "plan        {} range(s) of {} · {} buckets",
        f.ranges,
        memberlake::config::format_bytes(plan.range_size),
        f.buckets
    );
    let _ = writeln!(out, "rows        {total}");
    let _ = writeln!(out, "valid       {}", f.valid);
    let _ = writeln!(out, "rejected    {} ({:.2}%)", f.rejected, pct(f.rejected, total));
    for (reason, n) in &f.by_reason {
        let offsets = f.samples.get(reason).map(|o| o.iter().map(u64::to_string).collect::<Vec<_>>().join(", "));
        let _ = writeln!(out, "  {:<18}{n}  (at bytes {})", reason.as_str(), offsets.unwrap_or_default());
    }
    let _ = writeln!(out, "duplicates  {}", f.valid - f.members - f.erased.unwrap_or(0));
    if let Some(erased) = f.erased {
        let _ = writeln!(out, "erased      {erased}  (people erased from every list, dropped)");
    }
    let _ = writeln!(out, "members     {}", f.members);
    if let Some(d) = &f.diff {
        let _ = writeln!(out, "against the active version {} ({} members):", d.version.0, d.base_members(f.members));
        let _ = writeln!(out, "  added     {}", d.added);
        let _ = writeln!(out, "  removed   {}", d.removed);
        let _ = writeln!(out, "  unchanged {}", f.members - d.added);
    }
    out
}

/// Fine, or held by the splitter's guards (same settings), as an exit code with the reason.
fn verdict(f: &Findings, plan: &PlanArgs) -> Result<(), Failed> {
    let total = (f.valid + f.rejected) as i64;
    let mut reasons = Vec::new();
    reasons.extend(reject_guard(f.rejected as i64, total, plan.max_reject_ratio));
    if let Some(d) = &f.diff {
        reasons.extend(shrink_guard(f.members as i64, Some(d.base_members(f.members) as i64), plan.max_shrink));
    }
    if reasons.is_empty() {
        println!("verdict     fine: it would be ingested and activated");
        return Ok(());
    }
    println!("verdict     it would be held for an operator: {}", reasons.join("; "));
    Err(Failed::new(Exit::WouldHold, anyhow::anyhow!("the list would be held: {}", reasons.join("; ")))
        .hint("MEMBERLAKE_MAX_REJECT_RATIO and MEMBERLAKE_MAX_SHRINK set the guards"))
}
