//! The operator commands: a client of meta-service's `/admin/v1` API.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

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
        state: Option<String>,
        #[arg(long)]
        advertiser: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One file with progress, throughput, ETA, errors and rejection samples.
    File { id: i64 },
    /// Set a file's operator priority (higher runs first; >= MEMBERLAKE_URGENT_PRIORITY takes the express lane).
    Prioritize {
        id: i64,
        #[arg(allow_negative_numbers = true)]
        priority: i32,
    },
    /// Stop leasing a file's ranges (leases in flight finish).
    Pause { id: i64 },
    /// Resume a paused file.
    Resume { id: i64 },
    /// Cancel a file: it never activates.
    Cancel { id: i64 },
    /// Requeue a failed file's failed ranges.
    Retry { id: i64 },
    /// Set an advertiser's weight in the effective priority (1 = neutral).
    Weight { advertiser: String, weight: f64 },
    /// The operator audit log.
    Actions {
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

struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    fn new(args: &AdminArgs) -> Self {
        let base = if args.admin_addr.starts_with("http") {
            args.admin_addr.clone()
        } else {
            format!("http://{}", args.admin_addr)
        };
        Self {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            token: args.admin_token.clone(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).timeout(Duration::from_secs(30));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.with_context(|| format!("cannot reach meta-service at {}", self.base))?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = value["error"]["message"].as_str().unwrap_or("no details");
            bail!("{status}: {msg}");
        }
        Ok(value)
    }
}

fn print_files(files: &[Value]) {
    println!(
        "{:>6}  {:<20} {:<10} {:>10} {:>5} {:>14} {:>12} {:>9}  object",
        "id", "advertiser", "state", "size", "prio", "ranges", "rows", "rejected"
    );
    for f in files {
        println!(
            "{:>6}  {:<20} {:<10} {:>10} {:>5} {:>14} {:>12} {:>9}  {}{}{}",
            f["file_id"],
            f["advertiser_id"].as_str().unwrap_or(""),
            f["state"].as_str().unwrap_or(""),
            memberlake::config::format_bytes(f["size_bytes"].as_u64().unwrap_or(0)),
            f["priority"],
            format!("{}/{}", f["ranges_done"], f["ranges_total"]),
            f["rows_ingested"],
            f["rows_rejected"],
            f["object_key"].as_str().unwrap_or(""),
            if f["paused"].as_bool() == Some(true) { "  [paused]" } else { "" },
            if f["active"].as_bool() == Some(true) { "  [active]" } else { "" },
        );
    }
}

pub async fn run(args: AdminArgs, command: AdminCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let client = Client::new(&args);
    let show = |v: &Value| {
        if args.json {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
            true
        } else {
            false
        }
    };
    match command {
        AdminCommand::Files { state, advertiser, limit } => {
            let mut q = vec![format!("limit={limit}")];
            if let Some(s) = state {
                q.push(format!("state={s}"));
            }
            if let Some(a) = advertiser {
                q.push(format!("advertiser_id={a}"));
            }
            let v = client.call(Method::GET, &format!("/admin/v1/files?{}", q.join("&")), None).await?;
            if !show(&v) {
                print_files(v["files"].as_array().map(Vec::as_slice).unwrap_or(&[]));
            }
        }
        AdminCommand::File { id } => {
            let v = client.call(Method::GET, &format!("/admin/v1/files/{id}"), None).await?;
            if !show(&v) {
                print_files(std::slice::from_ref(&v));
                println!(
                    "\nranges: {} · effective priority {:.1} · {:.0} rows/s · ETA {}",
                    v["ranges"],
                    v["effective_priority"].as_f64().unwrap_or(0.0),
                    v["rows_per_second"].as_f64().unwrap_or(0.0),
                    v["eta_seconds"].as_f64().map_or("-".to_owned(), |s| format!("{s:.0}s")),
                );
                if let Some(reason) = v["failure_reason"].as_str() {
                    println!("failure: {reason}");
                }
                for e in v["last_errors"].as_array().into_iter().flatten() {
                    println!(
                        "range {} (attempts {}): {}",
                        e["range_index"],
                        e["attempts"],
                        e["error"].as_str().unwrap_or("")
                    );
                }
                for s in v["rejection_samples"].as_array().into_iter().flatten().take(10) {
                    println!("rejected at byte {}: {}", s["offset"], s["reason"].as_str().unwrap_or(""));
                }
            }
        }
        AdminCommand::Prioritize { id, priority } => {
            let v = client
                .call(Method::POST, &format!("/admin/v1/files/{id}/priority"), Some(json!({"priority": priority})))
                .await?;
            if !show(&v) {
                println!("file {id}: priority {priority}");
            }
        }
        AdminCommand::Pause { id } => lifecycle(&client, id, "pause", &show).await?,
        AdminCommand::Resume { id } => lifecycle(&client, id, "resume", &show).await?,
        AdminCommand::Cancel { id } => lifecycle(&client, id, "cancel", &show).await?,
        AdminCommand::Retry { id } => lifecycle(&client, id, "retry", &show).await?,
        AdminCommand::Weight { advertiser, weight } => {
            let v = client
                .call(
                    Method::PUT,
                    &format!("/admin/v1/advertisers/{advertiser}/weight"),
                    Some(json!({"weight": weight})),
                )
                .await?;
            if !show(&v) {
                println!("advertiser {advertiser}: weight {weight}");
            }
        }
        AdminCommand::Actions { limit } => {
            let v = client.call(Method::GET, &format!("/admin/v1/actions?limit={limit}"), None).await?;
            if !show(&v) {
                for a in v["actions"].as_array().into_iter().flatten() {
                    println!(
                        "{}  {:<12} {:<10} {:<20} {}",
                        a["at"].as_str().unwrap_or(""),
                        a["actor"].as_str().unwrap_or(""),
                        a["action"].as_str().unwrap_or(""),
                        a["target"].as_str().unwrap_or(""),
                        a["details"]
                    );
                }
            }
        }
        AdminCommand::Watch { interval } => watch(&client, Duration::from_secs_f64(interval.max(0.2))).await?,
    }
    Ok(())
}

async fn lifecycle(client: &Client, id: i64, action: &str, show: &dyn Fn(&Value) -> bool) -> anyhow::Result<()> {
    let v = client.call(reqwest::Method::POST, &format!("/admin/v1/files/{id}/{action}"), None).await?;
    if !show(&v) {
        let f = &v["file"];
        println!(
            "file {id}: {action} done; state {}{}",
            f["state"].as_str().unwrap_or("?"),
            if f["paused"].as_bool() == Some(true) { ", paused" } else { "" }
        );
    }
    Ok(())
}

/// One progress bar per file in flight, updated every `interval`.
async fn watch(client: &Client, interval: Duration) -> anyhow::Result<()> {
    use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
    use std::collections::HashMap;
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:>28} [{bar:40}] {pos}/{len} ranges {msg}")?.progress_chars("=> ");
    let header = multi.add(ProgressBar::new_spinner());
    let mut bars: HashMap<i64, ProgressBar> = HashMap::new();
    loop {
        let o = client.call(reqwest::Method::GET, "/admin/v1/overview", None).await?;
        header.set_message(format!(
            "queued: {} express, {} bulk · leased: {}",
            o["queued_express"], o["queued_bulk"], o["leased"]
        ));
        header.tick();
        let files = o["files_in_flight"].as_array().cloned().unwrap_or_default();
        let live: Vec<i64> = files.iter().filter_map(|f| f["file_id"].as_i64()).collect();
        for f in &files {
            let id = f["file_id"].as_i64().unwrap_or(0);
            let bar = bars.entry(id).or_insert_with(|| {
                let b = multi.add(ProgressBar::new(0));
                b.set_style(style.clone());
                b.set_prefix(format!("{} #{id}", f["advertiser_id"].as_str().unwrap_or("")));
                b
            });
            bar.set_length(f["ranges_total"].as_u64().unwrap_or(0));
            bar.set_position(f["ranges_done"].as_u64().unwrap_or(0));
            bar.set_message(format!(
                "{} rows{}",
                f["rows_ingested"],
                if f["paused"].as_bool() == Some(true) { " (paused)" } else { "" }
            ));
        }
        bars.retain(|id, bar| {
            let keep = live.contains(id);
            if !keep {
                bar.finish_with_message("finished");
            }
            keep
        });
        tokio::time::sleep(interval).await;
    }
}
