//! The operator commands: meta-service's `/admin/v1` API through [`AdminClient`], printed as
//! tables, or with `--json` as the API's response re-serialized from its typed view.

use std::collections::HashMap;
use std::fmt::Write;
use std::time::Duration;

use clap::{Args, Subcommand};
use indicatif::HumanBytes;
use memberlake_admin::{
    hash_email, parse_file_id, ActionsResponse, AdminClient, AdminError, AdvertiserId, EmailHash, EraseRequest,
    ErasureState, ErasureView, FileDetailView, FileId, FileState, FileView, LifespanView, LimitQuery, ListFilesQuery,
};
use serde::Serialize;

use crate::outcome::{Exit, Failed};

/// How times are printed: UTC, to the second.
const TIME: &str = "%Y-%m-%dT%H:%M:%SZ";

#[derive(Args, Debug, Clone)]
pub struct AdminArgs {
    /// meta-service's operator API (host:port or URL).
    #[arg(long, env = "MEMBERLAKE_ADMIN_ADDR", default_value = "127.0.0.1:8081", global = true)]
    admin_addr: String,
    /// Operator bearer token (one of meta-service's MEMBERLAKE_ADMIN_TOKENS).
    #[arg(long, env = "MEMBERLAKE_ADMIN_TOKEN", hide_env_values = true, global = true)]
    admin_token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// List files (newest first).
    Files {
        /// registered | ingesting | ingested | failed | cancelled
        #[arg(long)]
        state: Option<FileState>,
        /// Only this advertiser's files.
        #[arg(long)]
        advertiser: Option<AdvertiserId>,
        /// 1..=1000
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One file with progress, throughput, ETA, errors, rejection samples and its version report
    /// (members, added, removed, unchanged, rows written and deleted, base version, held reason).
    File {
        #[arg(value_parser = parse_file_id)]
        id: FileId,
    },
    /// Set a file's operator priority (higher runs first; >= MEMBERLAKE_URGENT_PRIORITY takes the express lane).
    Prioritize {
        #[arg(value_parser = parse_file_id)]
        id: FileId,
        #[arg(allow_negative_numbers = true)]
        priority: i32,
    },
    /// Stop leasing a file's ranges (leases in flight finish).
    Pause {
        #[arg(value_parser = parse_file_id)]
        id: FileId,
    },
    /// Resume a paused file.
    Resume {
        #[arg(value_parser = parse_file_id)]
        id: FileId,
    },
    /// Cancel a file: it never activates.
    Cancel {
        #[arg(value_parser = parse_file_id)]
        id: FileId,
    },
    /// Requeue a failed file's failed ranges.
    Retry {
        #[arg(value_parser = parse_file_id)]
        id: FileId,
    },
    /// Approve a held version: it goes on to activation (the guard that held it does not ask again).
    Approve {
        #[arg(value_parser = parse_file_id)]
        id: FileId,
    },
    /// Reject a held version: it is cancelled and any rows it wrote are undone.
    Reject {
        #[arg(value_parser = parse_file_id)]
        id: FileId,
    },
    /// Roll an advertiser back to an earlier version, as a new version that restores its members.
    Rollback {
        advertiser: AdvertiserId,
        /// The version (file id) to restore; by default the one active before the current one.
        #[arg(long, value_parser = parse_file_id)]
        to: Option<FileId>,
    },
    /// Set an advertiser's weight in the effective priority (1 = neutral).
    Weight { advertiser: AdvertiserId, weight: f64 },
    /// List lifespans: with no argument, every advertiser that has one and when its active list
    /// stops (or stopped) matching; with an advertiser and a duration (`540d`, `30d`, `12h`) or
    /// `unlimited`, sets that advertiser's. Past its lifespan, a list matches nobody until the
    /// advertiser uploads a fresh one.
    Lifespan {
        advertiser: Option<AdvertiserId>,
        #[arg(value_parser = parse_lifespan, requires = "advertiser")]
        lifespan: Option<Lifespan>,
    },
    /// Erase a person from every advertiser's list, for good (hashed here: the email is never sent).
    ///
    /// The email (or a list line of 32 hex digits) is hashed here by the ingestion rule and only
    /// the hash is sent: the email never leaves this machine. Every lookup of the hash answers
    /// "not a member" at once and no later upload brings it back; the splitter leader then
    /// removes it from the store and the work location. Asking again is harmless (it reports
    /// the erasure already requested). With --wait, waits until that removal is complete: exit
    /// code 11 if it is not within --timeout.
    Erase {
        /// The email as an advertiser lists it, or its hash (32 hex digits).
        #[arg(value_name = "EMAIL_OR_HASH")]
        email: EmailOrHash,
        /// Wait, with progress, until the erasure is complete.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this long (`90s`, `10m`, `2h`) with exit code 11 (the
        /// erasure goes on). Default: no limit.
        #[arg(long, value_parser = parse_timeout, requires = "wait")]
        timeout: Option<Duration>,
        /// With --wait: refresh interval in seconds.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
    },
    /// One erasure and how far it has come, by the email (hashed here) or its hash.
    Erasure {
        /// The email as an advertiser lists it, or its hash (32 hex digits).
        #[arg(value_name = "EMAIL_OR_HASH")]
        email: EmailOrHash,
    },
    /// The operator audit log.
    Actions {
        /// 1..=1000
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Wait for a file to end, with a progress bar: exit code 0 when its version is ingested, 7
    /// when it failed or was cancelled, 8 when it is held for an operator.
    Wait {
        #[arg(value_parser = parse_file_id)]
        id: FileId,
        /// Refresh interval in seconds.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
    },
    /// Live progress bars of the files in flight (ctrl-c to stop).
    Watch {
        /// Refresh interval in seconds.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
    },
}

pub async fn run(args: AdminArgs, command: AdminCommand) -> Result<(), Failed> {
    let client = AdminClient::new(&args.admin_addr, args.admin_token);
    let json = args.json;
    let shown = match command {
        AdminCommand::Files { state, advertiser, limit } => {
            let query = ListFilesQuery { state, advertiser_id: advertiser, limit: Some(limit) };
            show(json, &client.files(&query).await?, |r| print_files(&r.files))
        }
        AdminCommand::File { id } => show(json, &client.file(id).await?, print_detail),
        AdminCommand::Prioritize { id, priority } => show(json, &client.set_priority(id, priority).await?, |r| {
            println!("file {id}: priority {}", r.file.priority)
        }),
        AdminCommand::Pause { id } => show(json, &client.pause(id).await?, |r| print_done("pause", &r.file)),
        AdminCommand::Resume { id } => show(json, &client.resume(id).await?, |r| print_done("resume", &r.file)),
        AdminCommand::Cancel { id } => show(json, &client.cancel(id).await?, |r| print_done("cancel", &r.file)),
        AdminCommand::Retry { id } => show(json, &client.retry(id).await?, |r| {
            print_done("retry", &r.file);
            println!("{} failed ranges queued again", r.ranges_requeued);
        }),
        AdminCommand::Approve { id } => show(json, &client.approve(id).await?, |r| print_done("approve", &r.file)),
        AdminCommand::Reject { id } => show(json, &client.reject(id).await?, |r| print_done("reject", &r.file)),
        AdminCommand::Rollback { advertiser, to } => {
            show(json, &client.rollback(&advertiser, to).await?, |r| print!("{}", rollback_started(&r.file)))
        }
        AdminCommand::Weight { advertiser, weight } => {
            show(json, &client.set_weight(&advertiser, weight).await?, |r| {
                println!("advertiser {}: weight {}", r.advertiser_id, r.weight)
            })
        }
        AdminCommand::Lifespan { advertiser: Some(advertiser), lifespan: Some(Lifespan(secs)) } => {
            show(json, &client.set_lifespan(&advertiser, secs).await?, |l| {
                print!("{}", lifespans_table(std::slice::from_ref(l)))
            })
        }
        AdminCommand::Lifespan { advertiser, .. } => {
            let mut all = client.lifespans().await?;
            if let Some(advertiser) = advertiser {
                all.lifespans.retain(|l| l.advertiser_id == advertiser);
            }
            show(json, &all, |r| print!("{}", lifespans_table(&r.lifespans)))
        }
        AdminCommand::Erase { email, wait, timeout, interval } => {
            let hash = email.hash()?;
            let (erasure, created) = client.erase(&EraseRequest::EmailHash(hash)).await?;
            if wait {
                let interval = Duration::from_secs_f64(interval.max(0.2));
                return wait_erasure(&client, erasure, created, interval, timeout, json).await;
            }
            show(json, &erasure, |e| print!("{}", erasure_report(e, Some(created))))
        }
        AdminCommand::Erasure { email } => {
            let hash = email.hash()?;
            let erasure = client.erasure(hash).await.map_err(not_requested)?;
            show(json, &erasure, |e| print!("{}", erasure_report(e, None)))
        }
        AdminCommand::Actions { limit } => {
            show(json, &client.actions(&LimitQuery { limit: Some(limit) }).await?, print_actions)
        }
        AdminCommand::Watch { interval } => watch(&client, Duration::from_secs_f64(interval.max(0.2))).await,
        AdminCommand::Wait { id, interval } => {
            return wait(&client, id, Duration::from_secs_f64(interval.max(0.2)), json).await;
        }
    };
    Ok(shown?)
}

/// Prints `response` as pretty JSON with `--json`, else as `table` prints it.
fn show<T: Serialize>(json: bool, response: &T, table: impl FnOnce(&T)) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(response)?);
    } else {
        table(response);
    }
    Ok(())
}

/// A list lifespan on the command line: seconds, `None` for unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifespan(Option<u64>);

fn parse_lifespan(s: &str) -> Result<Lifespan, String> {
    if matches!(s.trim(), "unlimited" | "none") {
        return Ok(Lifespan(None));
    }
    let secs =
        parse_secs(s).ok_or_else(|| format!("invalid lifespan {s:?}: expected e.g. 540d, 12h, 90m, or `unlimited`"))?;
    if !memberlake_admin::LIFESPAN_SECS.contains(&secs) {
        return Err(format!("lifespan {s:?} out of range: from 1s to 36500d, or `unlimited`"));
    }
    Ok(Lifespan(Some(secs)))
}

/// Whole seconds written as a number and a unit (`90`, `90s`, `10m`, `12h`, `540d`); `None` if
/// not such a number or too large. (0 for a number out of range, so that it is refused as out
/// of range rather than as a typo.)
fn parse_secs(s: &str) -> Option<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit_secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    Some(number.parse::<u64>().ok().and_then(|n| n.checked_mul(unit_secs)).unwrap_or(0))
}

/// `erase --timeout`: at least a second.
fn parse_timeout(s: &str) -> Result<Duration, String> {
    match parse_secs(s) {
        Some(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
        _ => Err(format!("invalid timeout {s:?}: expected e.g. 90s, 10m or 2h")),
    }
}

/// A person to erase as given on the command line: an email as an advertiser lists it, or its
/// hash. Hashed here ([`hash_email`], the ingestion rule), never sent; its `Debug` does not show
/// it, and a refusal names the reason, never the value.
#[derive(Clone)]
pub struct EmailOrHash(String);

impl From<String> for EmailOrHash {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl std::fmt::Debug for EmailOrHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmailOrHash(<not shown>)")
    }
}

impl EmailOrHash {
    /// The hash ingestion stored for this line; a line a list would reject or skip is bad
    /// usage (exit code 2), with the reason.
    fn hash(&self) -> Result<EmailHash, Failed> {
        hash_email(&self.0).map_err(|e| Failed::from(AdminError::Invalid(e)))
    }
}

/// `memberlake erasure` of a hash nobody asked to erase: not found, and how to ask.
fn not_requested(e: AdminError) -> Failed {
    if e.status() == Some(404) {
        return Failed::new(Exit::NotFound, e).hint("`memberlake erase <email-or-hash>` requests one");
    }
    e.into()
}

/// The first line of an erasure's report: its hash, whether this request recorded it
/// (`created`; `None`: not known, a lookup) and its state.
fn erasure_headline(e: &ErasureView, created: Option<bool>) -> String {
    let how = match created {
        Some(true) => "erasure recorded now",
        Some(false) => "erasure already requested",
        None => "erasure",
    };
    format!("email hash {}: {how} ({})\n", e.email_hash, e.state)
}

/// An erasure: the headline, then when and by whom it was requested and the leader's passes.
fn erasure_report(e: &ErasureView, created: Option<bool>) -> String {
    let time = |t: Option<String>| t.unwrap_or_else(|| "-".to_owned());
    let mut out = erasure_headline(e, created);
    for (label, value) in [
        ("requested", format!("{} by {}", e.requested_at.format(TIME), e.requested_by)),
        ("passes", e.passes.to_string()),
        ("objects rewritten", e.objects_rewritten.to_string()),
        ("last pass", time(e.last_pass_at.map(|t| t.format(TIME).to_string()))),
        ("completed", time(e.completed_at.map(|t| t.format(TIME).to_string()))),
    ] {
        let _ = writeln!(out, "  {label:<19}{value}");
    }
    if e.state == ErasureState::Pending {
        out.push_str(
            "every lookup of the hash already answers \"not a member\"; the leader is removing it from the store\n",
        );
    }
    out
}

/// Advertisers' lifespans: how long, until when, and whether the list matches nobody now.
fn lifespans_table(lifespans: &[LifespanView]) -> String {
    use Align::{Left, Right};
    let columns = [("advertiser", Left), ("lifespan", Right), ("expires", Left), ("state", Left)];
    let rows = lifespans
        .iter()
        .map(|l| {
            vec![
                l.advertiser_id.to_string(),
                l.lifespan_secs.map_or("unlimited".to_owned(), human_secs),
                l.expires_at.map_or("-".to_owned(), |t| t.format(TIME).to_string()),
                match (l.expires_at, l.expired) {
                    (_, true) => "expired".to_owned(),
                    (Some(_), false) => "matching".to_owned(),
                    (None, false) if l.lifespan_secs.is_some() => "no active list".to_owned(),
                    (None, false) => "matching".to_owned(),
                },
            ]
        })
        .collect();
    table(&columns, rows)
}

/// `540d`, `12h`, `90s`: the largest unit that divides the seconds.
fn human_secs(secs: u64) -> String {
    match secs {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn print_files(files: &[FileView]) {
    print!("{}", files_table(files));
}

/// The files as a table whose columns are as wide as their widest cell.
fn files_table(files: &[FileView]) -> String {
    use Align::{Left, Right};
    let columns = [
        ("id", Right),
        ("advertiser", Left),
        ("state", Left),
        ("size", Right),
        ("prio", Right),
        ("ranges", Right),
        ("rows", Right),
        ("rejected", Right),
        ("object", Left),
    ];
    let rows = files
        .iter()
        .map(|f| {
            vec![
                f.file_id.to_string(),
                f.advertiser_id.to_string(),
                f.state.to_string(),
                HumanBytes(f.size_bytes.max(0) as u64).to_string(),
                f.priority.to_string(),
                format!("{}/{}", f.ranges_done, f.ranges_total),
                f.rows_ingested.to_string(),
                f.rows_rejected.to_string(),
                format!(
                    "{}{}{}",
                    f.object_key,
                    if f.paused { "  [paused]" } else { "" },
                    if f.active { "  [active]" } else { "" }
                ),
            ]
        })
        .collect();
    table(&columns, rows)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// Renders `rows` under `columns`, each column as wide as its widest cell (counted in
/// characters), two spaces apart; the last column is not padded.
fn table(columns: &[(&str, Align)], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = columns.iter().map(|(h, _)| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, ((cell, (_, align)), width)) in cells.into_iter().zip(columns).zip(&widths).enumerate() {
            let pad = width.saturating_sub(cell.chars().count());
            match (align, i == last) {
                (_, true) if *align == Align::Left => out.push_str(cell),
                (Align::Left, _) => out.push_str(&format!("{cell}{}", " ".repeat(pad))),
                (Align::Right, _) => out.push_str(&format!("{}{cell}", " ".repeat(pad))),
            }
            if i != last {
                out.push_str("  ");
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(columns.iter().map(|(h, _)| *h).collect());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn print_detail(d: &FileDetailView) {
    print_files(std::slice::from_ref(&d.file));
    let r = &d.ranges;
    println!(
        "\nranges: {} queued, {} leased, {} done, {} failed · effective priority {:.1} · {:.0} rows/s · ETA {}",
        r.queued,
        r.leased,
        r.done,
        r.failed,
        d.effective_priority,
        d.rows_per_second,
        d.eta_seconds.map_or("-".to_owned(), |s| format!("{s:.0}s")),
    );
    print!("\n{}", version_report(&d.file));
    if let Some(reason) = &d.file.failure_reason {
        println!("failure: {reason}");
    }
    for e in &d.last_errors {
        println!("range {} (attempts {}): {}", e.range_index, e.attempts, e.error);
    }
    if !d.rejected_by_reason.is_empty() {
        let reasons: Vec<String> = d.rejected_by_reason.iter().map(|r| format!("{} {}", r.reason, r.rows)).collect();
        println!("rejected by reason: {}", reasons.join(", "));
    }
    for s in d.rejection_samples.iter().take(10) {
        println!("rejected at byte {}: {}", s.offset, s.reason.as_str());
    }
}

/// A file as a list version: what it changed against its base and what it wrote to the store;
/// if it is held, how to decide on it.
fn version_report(f: &FileView) -> String {
    let v = &f.version;
    let known = |n: Option<i64>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
    let mut lines = vec![
        ("members", known(v.members)),
        ("added", v.added.to_string()),
        ("removed", v.removed.to_string()),
        ("unchanged", known(v.unchanged)),
        ("rows written", v.rows_written.to_string()),
        ("rows deleted", v.rows_deleted.to_string()),
        ("erased", v.erased.to_string()),
        ("base version", v.base_version.map_or_else(|| "none (written in full)".to_owned(), |b| b.to_string())),
        ("held reason", v.held_reason.clone().unwrap_or_else(|| "-".to_owned())),
    ];
    // What only some versions have.
    let optional = [
        ("rollback of", v.rollback_of.map(|r| r.to_string())),
        ("superseded by", v.superseded_by.map(|s| s.to_string())),
        ("activated at", v.activated_at.map(|t| t.format(TIME).to_string())),
        ("manifest expired", v.manifest_expired_at.map(|t| t.format(TIME).to_string())),
    ];
    lines.extend(optional.into_iter().filter_map(|(label, value)| Some((label, value?))));
    let mut out = format!("version ({} format):\n", v.store_format);
    for (label, value) in lines {
        let _ = writeln!(out, "  {label:<17}{value}");
    }
    if f.state == FileState::Held {
        let id = f.file_id;
        let _ = writeln!(out, "held for an operator: `memberlake approve {id}` or `memberlake reject {id}`");
    }
    out
}

/// What `memberlake rollback` started: the new version and the one it restores.
fn rollback_started(f: &FileView) -> String {
    let restores = f.version.rollback_of.map_or_else(|| "the previous version".to_owned(), |v| format!("version {v}"));
    format!(
        "advertiser {}: rollback to {restores} started as version {id} ({}); follow it with `memberlake file {id}`\n",
        f.advertiser_id,
        f.state,
        id = f.file_id,
    )
}

fn print_done(action: &str, f: &FileView) {
    println!("file {}: {action} done; state {}{}", f.file_id, f.state, if f.paused { ", paused" } else { "" });
}

fn print_actions(r: &ActionsResponse) {
    use Align::Left;
    let columns = [("at", Left), ("actor", Left), ("action", Left), ("target", Left), ("details", Left)];
    let rows = r
        .actions
        .iter()
        .map(|a| {
            vec![
                a.at.format(TIME).to_string(),
                a.actor.clone(),
                a.action.to_string(),
                a.target.to_string(),
                a.details.to_string(),
            ]
        })
        .collect();
    print!("{}", table(&columns, rows));
}

/// Waits for file `id` to end, with a progress bar over its units (ranges, then buckets).
async fn wait(client: &AdminClient, id: FileId, interval: Duration, json: bool) -> Result<(), Failed> {
    use indicatif::{ProgressBar, ProgressStyle};
    let bar = if json { ProgressBar::hidden() } else { ProgressBar::new(0) };
    bar.set_style(
        ProgressStyle::with_template("file {prefix} [{bar:40}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(id.to_string());
    loop {
        let d = client.file(id).await?;
        let f = &d.file;
        match f.state {
            FileState::Merging => {
                let buckets = f.version.bucket_bits.map_or(0, |b| 1u64 << b);
                bar.set_length(buckets);
                bar.set_position(f.version.buckets_done.max(0) as u64);
                bar.set_message("buckets merged (writing the difference)");
            }
            _ => {
                bar.set_length(f.ranges_total.max(0) as u64);
                bar.set_position(f.ranges_done.max(0) as u64);
                bar.set_message(format!("ranges · {} rows · {}", f.rows_ingested, f.state));
            }
        }
        let ended = match f.state {
            FileState::Ingested => Some(Ok(())),
            FileState::Failed | FileState::Cancelled => Some(Err(Failed::new(
                Exit::FileFailed,
                anyhow::anyhow!(
                    "file {id} {}: {}",
                    f.state,
                    f.failure_reason.as_deref().unwrap_or("no reason recorded")
                ),
            )
            .hint(format!("`memberlake file {id}` shows its errors; `memberlake retry {id}` queues it again")))),
            FileState::Held => Some(Err(Failed::new(
                Exit::FileHeld,
                anyhow::anyhow!(
                    "file {id} is held: {}",
                    f.version.held_reason.as_deref().unwrap_or("awaiting an operator")
                ),
            )
            .hint(format!("`memberlake approve {id}` or `memberlake reject {id}`")))),
            _ => None,
        };
        if let Some(outcome) = ended {
            bar.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string_pretty(&d).map_err(anyhow::Error::from)?);
            } else {
                print_files(std::slice::from_ref(f));
            }
            return outcome;
        }
        tokio::time::sleep(interval).await;
    }
}

/// Waits for `erasure` (recorded by this run if `created`) to complete, with a spinner over the
/// leader's passes, at most `timeout`; then prints its report.
async fn wait_erasure(
    client: &AdminClient,
    mut erasure: ErasureView,
    created: bool,
    interval: Duration,
    timeout: Option<Duration>,
    json: bool,
) -> Result<(), Failed> {
    use indicatif::{ProgressBar, ProgressStyle};
    if !json && erasure.state == ErasureState::Pending {
        print!("{}", erasure_headline(&erasure, Some(created)));
    }
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let bar = if json { ProgressBar::hidden() } else { ProgressBar::new_spinner() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} erasure {prefix} {msg} ({elapsed})").expect("a valid template"),
    );
    bar.set_prefix(erasure.email_hash.to_string());
    let hash = erasure.email_hash;
    loop {
        bar.set_message(format!(
            "· {} · {} passes · {} objects rewritten",
            erasure.state, erasure.passes, erasure.objects_rewritten
        ));
        bar.tick();
        if erasure.state == ErasureState::Complete {
            bar.finish_and_clear();
            return show(json, &erasure, |e| print!("{}", erasure_report(e, Some(created)))).map_err(Failed::from);
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            bar.finish_and_clear();
            let waited = timeout.map_or(0, |t| t.as_secs());
            return Err(Failed::new(
                Exit::WaitTimedOut,
                anyhow::anyhow!(
                    "the erasure of {hash} is not complete after {}: {} passes so far",
                    human_secs(waited),
                    erasure.passes
                ),
            )
            .hint(format!(
                "it goes on, and every lookup already answers \"not a member\"; `memberlake erasure {hash}` shows how far it is"
            )));
        }
        let sleep = match deadline {
            Some(d) => interval.min(d.saturating_duration_since(tokio::time::Instant::now())),
            None => interval,
        };
        tokio::time::sleep(sleep).await;
        erasure = client.erasure(hash).await.map_err(not_requested)?;
    }
}

/// One progress bar per file in flight, updated every `interval`.
async fn watch(client: &AdminClient, interval: Duration) -> anyhow::Result<()> {
    use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:>28} [{bar:40}] {pos}/{len} ranges {msg}")?.progress_chars("=> ");
    let header = multi.add(ProgressBar::new_spinner());
    let mut bars: HashMap<FileId, ProgressBar> = HashMap::new();
    loop {
        let o = client.overview().await?;
        header.set_message(format!(
            "queued: {} express, {} bulk · leased: {}",
            o.queued_express, o.queued_bulk, o.leased
        ));
        header.tick();
        for f in &o.files_in_flight {
            let bar = bars.entry(f.file_id).or_insert_with(|| {
                let b = multi.add(ProgressBar::new(0));
                b.set_style(style.clone());
                b.set_prefix(format!("{} #{}", f.advertiser_id, f.file_id));
                b
            });
            bar.set_length(f.ranges_total.max(0) as u64);
            bar.set_position(f.ranges_done.max(0) as u64);
            bar.set_message(format!("{} rows{}", f.rows_ingested, if f.paused { " (paused)" } else { "" }));
        }
        bars.retain(|id, bar| {
            let keep = o.files_in_flight.iter().any(|f| f.file_id == *id);
            if !keep {
                bar.finish_with_message("finished");
            }
            keep
        });
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use memberlake_admin::views::VersionView;

    use super::*;

    fn file(state: FileState, version: VersionView) -> FileView {
        FileView {
            file_id: FileId(42),
            advertiser_id: AdvertiserId::parse("acme").unwrap(),
            object_key: "advertisers/acme/v2.csv".into(),
            etag: "\"e\"".into(),
            size_bytes: 1024,
            compression: "none".into(),
            state,
            priority: 0,
            paused: false,
            ranges_total: 1,
            ranges_done: 1,
            rows_ingested: 10,
            rows_rejected: 0,
            failure_reason: None,
            registered_at: Default::default(),
            finished_at: None,
            retired_at: None,
            active: false,
            version,
        }
    }

    fn version() -> VersionView {
        VersionView {
            store_format: "changes".into(),
            base_version: Some(FileId(41)),
            superseded_by: None,
            bucket_bits: Some(2),
            buckets_done: 4,
            members: Some(10),
            added: 2,
            removed: 92,
            unchanged: Some(8),
            rows_written: 94,
            rows_deleted: 0,
            erased: 0,
            held_reason: Some("shrinks the active list from 100 to 10 members".into()),
            activated_at: None,
            rollback_of: None,
            manifest_expired_at: None,
        }
    }

    #[test]
    fn lifespans_parse_and_print() {
        assert_eq!(parse_lifespan("540d"), Ok(Lifespan(Some(540 * 86_400))));
        assert_eq!(parse_lifespan("12h"), Ok(Lifespan(Some(12 * 3600))));
        assert_eq!(parse_lifespan("90"), Ok(Lifespan(Some(90))));
        assert_eq!(parse_lifespan("unlimited"), Ok(Lifespan(None)));
        for bad in ["0d", "1y", "-5d", "", "99999999999999999999d", "36501d"] {
            assert!(parse_lifespan(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            (human_secs(540 * 86_400), human_secs(7200), human_secs(61)),
            ("540d".into(), "2h".into(), "61s".into())
        );
    }

    fn erasure(state: ErasureState) -> ErasureView {
        let at = "2026-01-02T03:04:05Z".parse().unwrap();
        let done = (state == ErasureState::Complete).then_some(at);
        ErasureView {
            email_hash: EmailHash::from_hex(b"c160f8cc69a4f0bf2b0362752353d060").unwrap(),
            requested_at: at,
            requested_by: "ops".into(),
            state,
            passes: if done.is_some() { 2 } else { 0 },
            objects_rewritten: if done.is_some() { 17 } else { 0 },
            completed_at: done,
            last_pass_at: done,
        }
    }

    #[test]
    fn an_erasure_report_says_what_was_recorded_and_how_far_it_is() {
        assert_eq!(
            erasure_report(&erasure(ErasureState::Pending), Some(true)),
            "email hash c160f8cc69a4f0bf2b0362752353d060: erasure recorded now (pending)
  requested          2026-01-02T03:04:05Z by ops
  passes             0
  objects rewritten  0
  last pass          -
  completed          -
every lookup of the hash already answers \"not a member\"; the leader is removing it from the store
"
        );
        let complete = erasure_report(&erasure(ErasureState::Complete), Some(false));
        assert!(
            complete.starts_with("email hash c160f8cc69a4f0bf2b0362752353d060: erasure already requested (complete)\n")
        );
        assert!(
            complete.contains("  objects rewritten  17\n  last pass          2026-01-02T03:04:05Z\n"),
            "{complete}"
        );
        assert!(!complete.contains("removing"), "{complete}");
        assert!(erasure_headline(&erasure(ErasureState::Complete), None).ends_with(": erasure (complete)\n"));
    }

    #[test]
    fn emails_are_hashed_here_and_never_shown() {
        let jane = EmailOrHash::from("  \"Jane.Doe@Example.com\"".to_owned());
        let hash = jane.hash().unwrap();
        assert_eq!(hash, EmailOrHash::from("jane.doe@example.com".to_owned()).hash().unwrap());
        assert_eq!(EmailOrHash::from(hash.to_hex().to_uppercase()).hash().unwrap(), hash, "a hash is taken as is");
        assert!(!format!("{jane:?}").contains("Jane"));
        for bad in ["jane.doe", "", "jane@doe@example.com"] {
            let failed = EmailOrHash::from(bad.to_owned()).hash().unwrap_err();
            assert_eq!(failed.exit, Exit::Usage, "{bad:?}");
            let text = failed.render();
            assert!(text.starts_with("error: email ") && (bad.is_empty() || !text.contains(bad)), "{text}");
        }
        assert_eq!(parse_timeout("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_timeout("90"), Ok(Duration::from_secs(90)));
        for bad in ["0s", "soon", "-1m", ""] {
            assert!(parse_timeout(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tables_align_whatever_the_cell_widths() {
        let mut long = file(FileState::Ingested, version());
        long.advertiser_id = AdvertiserId::parse("a-very-long-advertiser-identifier-of-forty-chars").unwrap();
        long.rows_ingested = 123_456_789;
        long.active = true;
        let short = file(FileState::Cancelled, version());
        let text = files_table(&[long, short]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        // Every column starts at the same character offset on every line.
        let starts = |line: &str, word: &str| line.find(word).unwrap_or_else(|| panic!("{word} in {line:?}"));
        let object = starts(lines[0], "object");
        assert!(lines[1..].iter().all(|l| starts(l, "advertisers/acme/v2.csv") == object), "{text}");
        let state = starts(lines[0], "state");
        assert_eq!((starts(lines[1], "ingested"), starts(lines[2], "cancelled")), (state, state), "{text}");
        // Numbers are right-aligned: their last digits share a column.
        let rows_end = starts(lines[0], "rows") + "rows".len();
        let end_of = |line: &str, n: &str| {
            let end = line[..rows_end + 10].rfind(n).unwrap_or_else(|| panic!("{n} in {line:?}")) + n.len();
            end
        };
        assert!(end_of(lines[1], "123456789") >= rows_end && end_of(lines[2], "10") == end_of(lines[1], "123456789"));
        assert!(lines[1].ends_with("[active]"));
    }

    #[test]
    fn a_held_versions_report_says_what_it_changed_and_how_to_decide() {
        let report = version_report(&file(FileState::Held, version()));
        let expected = "version (changes format):
  members          10
  added            2
  removed          92
  unchanged        8
  rows written     94
  rows deleted     0
  erased           0
  base version     41
  held reason      shrinks the active list from 100 to 10 members
held for an operator: `memberlake approve 42` or `memberlake reject 42`
";
        assert_eq!(report, expected);
    }

    #[test]
    fn a_report_shows_what_is_unknown_and_what_only_some_versions_have() {
        let v = VersionView {
            base_version: None,
            members: None,
            unchanged: None,
            held_reason: None,
            rollback_of: Some(FileId(40)),
            superseded_by: Some(FileId(43)),
            ..version()
        };
        let report = version_report(&file(FileState::Ingested, v));
        for line in [
            "  members          -\n",
            "  unchanged        -\n",
            "  base version     none (written in full)\n",
            "  held reason      -\n",
            "  rollback of      40\n",
            "  superseded by    43\n",
        ] {
            assert!(report.contains(line), "{line:?} in {report}");
        }
        assert!(!report.contains("activated at") && !report.contains("memberlake approve"), "{report}");
        let v = VersionView { rollback_of: Some(FileId(40)), ..version() };
        assert_eq!(
            rollback_started(&file(FileState::Merging, v)),
            "advertiser acme: rollback to version 40 started as version 42 (merging); follow it with `memberlake file 42`\n"
        );
    }
}
