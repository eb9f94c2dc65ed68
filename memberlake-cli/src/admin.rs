//! The operator commands: meta-service's `/admin/v1` API through [`AdminClient`], printed as
//! tables, or with `--json` as the API's response re-serialized from its typed view.

use std::collections::HashMap;
use std::time::Duration;

use clap::{Args, Subcommand};
use indicatif::HumanBytes;
use memberlake_admin::{
    parse_file_id, ActionsResponse, AdminClient, AdvertiserId, FileDetailView, FileId, FileState, FileView, LimitQuery,
    ListFilesQuery,
};
use serde::Serialize;

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
    /// One file with progress, throughput, ETA, errors and rejection samples.
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
    /// Set an advertiser's weight in the effective priority (1 = neutral).
    Weight { advertiser: AdvertiserId, weight: f64 },
    /// The operator audit log.
    Actions {
        /// 1..=1000
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Live progress bars of the files in flight (ctrl-c to stop).
    Watch {
        /// Refresh interval in seconds.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
    },
}

pub async fn run(args: AdminArgs, command: AdminCommand) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.admin_addr, args.admin_token);
    let json = args.json;
    match command {
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
        AdminCommand::Weight { advertiser, weight } => {
            show(json, &client.set_weight(&advertiser, weight).await?, |r| {
                println!("advertiser {}: weight {}", r.advertiser_id, r.weight)
            })
        }
        AdminCommand::Actions { limit } => {
            show(json, &client.actions(&LimitQuery { limit: Some(limit) }).await?, print_actions)
        }
        AdminCommand::Watch { interval } => watch(&client, Duration::from_secs_f64(interval.max(0.2))).await,
    }
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

fn print_files(files: &[FileView]) {
    println!(
        "{:>6}  {:<20} {:<10} {:>10} {:>5} {:>14} {:>12} {:>9}  object",
        "id", "advertiser", "state", "size", "prio", "ranges", "rows", "rejected"
    );
    for f in files {
        println!(
            "{:>6}  {:<20} {:<10} {:>10} {:>5} {:>14} {:>12} {:>9}  {}{}{}",
            f.file_id,
            f.advertiser_id,
            f.state,
            HumanBytes(f.size_bytes.max(0) as u64).to_string(),
            f.priority,
            format!("{}/{}", f.ranges_done, f.ranges_total),
            f.rows_ingested,
            f.rows_rejected,
            f.object_key,
            if f.paused { "  [paused]" } else { "" },
            if f.active { "  [active]" } else { "" },
        );
    }
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
    if let Some(reason) = &d.file.failure_reason {
        println!("failure: {reason}");
    }
    for e in &d.last_errors {
        println!("range {} (attempts {}): {}", e.range_index, e.attempts, e.error);
    }
    for s in d.rejection_samples.iter().take(10) {
        println!("rejected at byte {}: {}", s.offset, s.reason.as_str());
    }
}

fn print_done(action: &str, f: &FileView) {
    println!("file {}: {action} done; state {}{}", f.file_id, f.state, if f.paused { ", paused" } else { "" });
}

fn print_actions(r: &ActionsResponse) {
    for a in &r.actions {
        println!(
            "{}  {:<12} {:<10} {:<20} {}",
            a.at.format("%Y-%m-%dT%H:%M:%SZ"),
            a.actor,
            a.action,
            a.target,
            a.details
        );
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
