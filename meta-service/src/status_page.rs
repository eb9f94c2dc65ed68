//! The status page: server-rendered HTML (no JavaScript needed), refreshed every 5 s.
//! Queue depth per lane, versions held for an operator (first, with why and the commands that
//! decide them), files in flight with their progress (ranges hashed, then buckets merged) and
//! their change so far (members added and removed), throughput over the last 15 minutes as a
//! small bar chart, recent failures with their reasons, advertisers' list lifespans (an
//! expired list, which matches nobody, stands out) and the erasure backlog (erasures not
//! complete yet, and the oldest one's age).

use std::fmt::Write;

use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use memberlake::catalog::{AdvertiserLifespan, ErasureBacklog, FileRecord, FileState, MinuteRows, Overview};
use memberlake::http::ApiError;
use memberlake_admin::routes;

use crate::state::AdminState;

pub async fn page(State(state): State<AdminState>) -> Response {
    let read = async {
        Ok::<_, memberlake::catalog::CatalogError>((
            state.overview().await?,
            state.catalog.lifespans().await?,
            state.catalog.erasure_backlog().await?,
        ))
    };
    match read.await {
        Ok((overview, lifespans, erasures)) => {
            let mut html = render(&overview);
            let end = html.rfind("<p style=").unwrap_or(html.len());
            let sections = render_lifespans(&lifespans, Utc::now()) + &render_erasures(&erasures);
            html.insert_str(end, &sections);
            Html(html).into_response()
        }
        Err(e) => ApiError::unavailable(format!("catalog unavailable: {e}")).into_response(),
    }
}

/// Advertisers with a list lifespan: an expired list (it answers "not a member" to every
/// lookup until a fresh upload) is marked `expired`.
fn render_lifespans(lifespans: &[AdvertiserLifespan], now: DateTime<Utc>) -> String {
    let mut html = String::from("<h2>List lifespans</h2>");
    if lifespans.is_empty() {
        html.push_str("<p>No advertiser has one: every list matches until replaced.</p>");
        return html;
    }
    html.push_str("<table id=lifespans><tr><th>advertiser</th><th>lifespan</th><th>expires</th><th>state</th></tr>");
    for l in lifespans {
        let expired = l.is_expired_at(now);
        let (class, state) = match (expired, l.expires_at) {
            (true, _) => (" class=fail", "expired"),
            (false, Some(_)) => ("", "matching"),
            (false, None) => ("", "no active list"),
        };
        let _ = write!(
            html,
            "<tr{class}><td>{}</td><td>{:.0} days</td><td>{}</td><td>{state}</td></tr>",
            esc(l.advertiser_id.as_str()),
            l.lifespan_secs / 86_400.0,
            l.expires_at.map_or("-".to_owned(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string()),
        );
    }
    html.push_str("</table>");
    html
}

/// The erasure backlog: erasures the splitter leader has yet to complete, and how long the
/// oldest has waited. (Each already answers "not a member" everywhere; completing it removes the
/// hash from the store and the work location.)
fn render_erasures(backlog: &ErasureBacklog) -> String {
    let mut html = String::from("<h2>Erasures</h2>");
    if backlog.pending == 0 {
        html.push_str("<p id=erasures>None pending.</p>");
        return html;
    }
    let _ = write!(
        html,
        "<p id=erasures><b>{}</b> pending, oldest {} ago. <code>memberlake erasure &lt;hash&gt;</code> shows one.</p>",
        backlog.pending,
        age(backlog.oldest_age_secs),
    );
    html
}

/// A duration for a reader: its two largest units (`3d 4h`, `2h 5m`, `4m 10s`, `12s`).
fn age(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// Whether a file in flight is past hashing: merging its buckets, or held after merging them (a
/// version can also be held before, for too many rejected rows, with no bucket merged).
fn diffing(f: &FileRecord) -> bool {
    f.state == FileState::Merging || (f.state == FileState::Held && f.version.buckets_done > 0)
}

/// How far a file in flight is: ranges hashed, then buckets merged (a rollback has no ranges).
/// `(done, total, unit)`.
fn progress(f: &FileRecord) -> (i64, i64, &'static str) {
    if diffing(f) {
        let total = f.version.bucket_bits.map_or(0, |bits| 1i64 << bits.clamp(0, 30));
        (f.version.buckets_done.into(), total, "buckets merged")
    } else {
        (f.ranges_done.into(), f.ranges_total.into(), "ranges")
    }
}

/// A version's change against the active one: members added and removed, counted as its
/// buckets merge (nothing to show before).
fn change(f: &FileRecord) -> String {
    if diffing(f) {
        format!("+{} −{}", f.version.added, f.version.removed)
    } else {
        "–".to_owned()
    }
}

/// The object cell: the key, and for a rollback the version it restores.
fn object(f: &FileRecord) -> String {
    let rollback = f.version.rollback_of.map_or(String::new(), |v| format!(" <b>rollback to {v}</b>"));
    format!("<td class=key>{}{rollback}</td>", esc(&f.object_key))
}

fn file_row(out: &mut String, f: &FileRecord) {
    let (done, total, unit) = progress(f);
    let pct = if total > 0 { 100.0 * done as f64 / total as f64 } else { 0.0 };
    let held = f.state == FileState::Held;
    let _ = write!(
        out,
        "<tr data-file-id=\"{id}\"{class}><td>{id}</td><td>{adv}</td>{object}<td>{size}</td><td>{prio}{paused}</td>\
         <td class=state>{state}</td><td><div class=bar><div class=fill style=\"width:{pct:.1}%\"></div></div>\
         <span class=pct>{done}/{total} {unit} ({pct:.0}%)</span></td><td class=change>{change}</td><td>{rows}</td>\
         <td>{rej}</td></tr>",
        id = f.file_id,
        class = if held { " class=held" } else { "" },
        adv = esc(f.advertiser_id.as_str()),
        object = object(f),
        size = memberlake::config::format_bytes(f.size_bytes.max(0) as u64),
        prio = f.priority,
        paused = if f.paused { " <b>paused</b>" } else { "" },
        state = if held { "<b>held</b>" } else { f.state.as_str() },
        change = change(f),
        rows = f.rows_ingested,
        rej = f.rows_rejected,
    );
}

/// A held version: why the guard held it, and how an operator decides.
fn held_row(out: &mut String, f: &FileRecord) {
    let v = &f.version;
    let _ = write!(
        out,
        "<tr class=held data-held-file-id=\"{id}\"><td>{id}</td><td>{adv}</td>{object}<td>{members}</td>\
         <td class=change>{change}</td><td class=reason>{reason}</td>\
         <td><code>memberlake approve {id}</code> or <code>memberlake reject {id}</code></td></tr>",
        id = f.file_id,
        adv = esc(f.advertiser_id.as_str()),
        object = object(f),
        members = v.members.map_or("–".to_owned(), |m| m.to_string()),
        change = change(f),
        reason = esc(v.held_reason.as_deref().unwrap_or("")),
    );
}

/// Renders the page from an overview.
pub fn render(o: &Overview) -> String {
    let held: Vec<&FileRecord> = o.files_in_flight.iter().filter(|f| f.state == FileState::Held).collect();
    let mut html = String::with_capacity(8192);
    html.push_str(
        "<!doctype html><html><head><meta charset=utf-8><meta http-equiv=refresh content=5>\
         <title>memberlake status</title><style>\
         body{font:14px system-ui,sans-serif;margin:24px;color:#222}h1{font-size:20px}h2{font-size:16px;margin-top:28px}\
         table{border-collapse:collapse;width:100%}td,th{padding:4px 8px;border-bottom:1px solid #ddd;text-align:left}\
         .key{font-family:monospace;font-size:12px}.bar{display:inline-block;width:160px;height:12px;background:#eee;\
         border-radius:3px;vertical-align:middle;margin-right:8px}.fill{height:100%;background:#2a7;border-radius:3px}\
         .cards{display:flex;gap:16px}.card{border:1px solid #ddd;border-radius:6px;padding:10px 16px}\
         .card b{display:block;font-size:22px}.fail{color:#b22}.held{background:#fff4d6}\
         .card.warn{border-color:#d90;background:#fff4d6}\
         code{background:#f3f3f3;padding:1px 4px;white-space:nowrap}</style></head><body>\
         <h1>memberlake — ingestion status</h1>",
    );
    let _ = write!(
        html,
        "<div class=cards><div class=card id=queued-express><b>{}</b>queued ranges · express lane</div>\
         <div class=card id=queued-bulk><b>{}</b>queued ranges · bulk lane</div>\
         <div class=card id=leased><b>{}</b>ranges being processed</div>\
         <div class=card><b>{}</b>files in flight</div>\
         <div class=\"card{}\" id=held-count><b>{}</b>held for an operator</div></div>",
        o.queued_express,
        o.queued_bulk,
        o.leased,
        o.files_in_flight.len(),
        if held.is_empty() { "" } else { " warn" },
        held.len(),
    );

    if !held.is_empty() {
        html.push_str(
            "<h2 class=fail>Held for an operator</h2><p>A guard held these versions (see why). Their advertiser's \
             active version keeps answering until an operator approves one (it goes on to activation) or rejects \
             it (it is cancelled and any rows it wrote undone).</p><table id=held><tr><th>id</th><th>advertiser</th>\
             <th>object</th><th>members</th><th>change</th><th>why</th><th>decide</th></tr>",
        );
        for f in &held {
            held_row(&mut html, f);
        }
        let _ = write!(
            html,
            "</table><p>Over the API: <code>{}</code> or <code>{}</code>.</p>",
            routes::APPROVE,
            routes::REJECT
        );
    }

    html.push_str("<h2>Files in flight</h2>");
    if o.files_in_flight.is_empty() {
        html.push_str("<p>No file is being ingested.</p>");
    } else {
        html.push_str(
            "<table id=in-flight><tr><th>id</th><th>advertiser</th><th>object</th><th>size</th><th>priority</th>\
             <th>state</th><th>progress</th><th>change</th><th>rows</th><th>rejected</th></tr>",
        );
        for f in &o.files_in_flight {
            file_row(&mut html, f);
        }
        html.push_str("</table>");
    }

    html.push_str("<h2>Throughput, rows per minute (last 15 minutes)</h2>");
    let max = o.rows_per_minute.iter().map(|m| m.rows).max().unwrap_or(0).max(1);
    let (w, h, bar) = (600, 120, 600 / o.rows_per_minute.len().max(1));
    let _ = write!(html, "<svg id=throughput width={w} height={} role=img aria-label=\"rows per minute\">", h + 20);
    for (i, MinuteRows { minute, rows }) in o.rows_per_minute.iter().enumerate() {
        let bh = (*rows as f64 / max as f64 * h as f64).round() as usize;
        let _ = write!(
            html,
            "<rect x={} y={} width={} height={} fill=\"#2a7\"><title>{} — {} rows</title></rect>",
            i * bar + 1,
            h - bh,
            bar.saturating_sub(2),
            bh,
            minute.format("%H:%M"),
            rows
        );
    }
    let _ = write!(html, "<text x=0 y={} font-size=11>max {max} rows/min</text></svg>", h + 15);

    html.push_str("<h2>Failures (last 24 hours)</h2>");
    if o.recent_failures.is_empty() {
        html.push_str("<p>None.</p>");
    } else {
        html.push_str("<table id=failures><tr><th>id</th><th>advertiser</th><th>object</th><th>reason</th></tr>");
        for f in &o.recent_failures {
            let _ = write!(
                html,
                "<tr class=fail><td>{}</td><td>{}</td>{}<td>{}</td></tr>",
                f.file_id,
                esc(f.advertiser_id.as_str()),
                object(f),
                esc(f.failure_reason.as_deref().unwrap_or("")),
            );
        }
        html.push_str("</table>");
    }
    let json = routes::OVERVIEW.template;
    let _ = write!(html, "<p style=\"color:#888\">Refreshes every 5 s. JSON: {json}</p></body></html>");
    html
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use memberlake::catalog::VersionRecord;
    use memberlake::ids::{AdvertiserId, FileId};
    use memberlake::lake::Compression;

    use super::*;

    #[test]
    fn an_expired_list_is_marked() {
        let now = Utc::now();
        let lifespan = |adv: &str, expires_at| AdvertiserLifespan {
            advertiser_id: AdvertiserId::parse(adv).unwrap(),
            lifespan_secs: 30.0 * 86_400.0,
            expires_at,
        };
        let html = render_lifespans(
            &[
                lifespan("old", Some(now - chrono::Duration::hours(1))),
                lifespan("fresh", Some(now + chrono::Duration::days(3))),
            ],
            now,
        );
        assert!(html.contains("<tr class=fail><td>old</td><td>30 days</td>"), "{html}");
        assert!(html.contains("<td>fresh</td><td>30 days</td>") && html.contains("matching"), "{html}");
        assert!(render_lifespans(&[], now).contains("No advertiser has one"));
    }

    #[test]
    fn the_erasure_backlog_says_how_many_and_how_old() {
        let html = render_erasures(&ErasureBacklog { pending: 3, oldest_age_secs: 3725.4 });
        assert!(html.contains("<p id=erasures><b>3</b> pending, oldest 1h 2m ago."), "{html}");
        assert!(render_erasures(&ErasureBacklog { pending: 0, oldest_age_secs: 0.0 }).contains("None pending."));
        let ages = [0.2, 12.0, 250.0, 86_400.0 * 3.0 + 4.0 * 3600.0 + 59.0].map(age);
        assert_eq!(ages, ["0s", "12s", "4m 10s", "3d 4h"].map(String::from));
    }

    #[test]
    fn escapes_what_it_shows() {
        assert_eq!(esc("<script>&\"'"), "&lt;script&gt;&amp;&quot;&#39;");
    }

    fn file(id: i64, state: FileState, version: VersionRecord) -> FileRecord {
        FileRecord {
            file_id: FileId(id),
            advertiser_id: AdvertiserId::parse("acme").unwrap(),
            object_key: format!("advertisers/acme/v{id}.csv"),
            etag: "\"e\"".into(),
            size_bytes: 4096,
            compression: Compression::None,
            state,
            priority: 0,
            paused: false,
            ranges_total: 4,
            ranges_done: 3,
            rows_ingested: 300,
            rows_rejected: 0,
            failure_reason: None,
            registered_at: Utc::now(),
            finished_at: None,
            retired_at: None,
            active: false,
            version,
        }
    }

    fn overview(files_in_flight: Vec<FileRecord>) -> Overview {
        Overview {
            queued_express: 0,
            queued_bulk: 0,
            leased: 0,
            files_in_flight,
            rows_per_minute: Vec::new(),
            recent_failures: Vec::new(),
        }
    }

    /// The `<tr>` of `marker` (an attribute of the row) in `html`.
    fn row<'a>(html: &'a str, marker: &str) -> &'a str {
        let start = html.find(marker).unwrap_or_else(|| panic!("no {marker} in {html}"));
        let start = html[..start].rfind("<tr").unwrap();
        &html[start..start + html[start..].find("</tr>").unwrap()]
    }

    #[test]
    fn a_held_version_stands_out_with_why_and_how_to_decide() {
        let reason = "shrinks the active list from 100 to 10 members (90.0% fewer; <the guard>)";
        let held = VersionRecord {
            bucket_bits: Some(2),
            buckets_done: 4,
            members: Some(10),
            added: 2,
            removed: 92,
            held_reason: Some(reason.into()),
            ..Default::default()
        };
        let html = render(&overview(vec![file(12, FileState::Held, held)]));
        assert!(html.contains("<div class=\"card warn\" id=held-count><b>1</b>held for an operator"), "{html}");
        let decide = row(&html, "data-held-file-id=\"12\"");
        assert!(decide.contains(&esc(reason)) && !decide.contains("<the guard>"), "escaped: {decide}");
        assert!(decide.contains("<td>10</td><td class=change>+2 −92</td>"), "{decide}");
        assert!(decide.contains("<code>memberlake approve 12</code> or <code>memberlake reject 12</code>"), "{decide}");
        assert!(html.contains("POST /admin/v1/files/{id}/approve"), "{html}");
        let in_flight = row(&html, "data-file-id=\"12\"");
        assert!(in_flight.contains("class=held") && in_flight.contains("<b>held</b>"), "{in_flight}");
        assert!(in_flight.contains("4/4 buckets merged (100%)"), "{in_flight}");

        // Held before merging (too many rejected rows): its ranges, and no change yet.
        let rejects =
            VersionRecord { bucket_bits: Some(2), held_reason: Some("too many".into()), ..Default::default() };
        let html = render(&overview(vec![file(13, FileState::Held, rejects)]));
        let in_flight = row(&html, "data-file-id=\"13\"");
        assert!(in_flight.contains("3/4 ranges") && in_flight.contains("<td class=change>–</td>"), "{in_flight}");
        assert!(row(&html, "data-held-file-id=\"13\"").contains("<code>memberlake reject 13</code>"));
    }

    #[test]
    fn versions_in_flight_show_their_progress_and_change() {
        let merging =
            VersionRecord { bucket_bits: Some(3), buckets_done: 2, added: 7, removed: 1, ..Default::default() };
        let rollback = VersionRecord { bucket_bits: Some(1), rollback_of: Some(FileId(3)), ..Default::default() };
        let html = render(&overview(vec![
            file(21, FileState::Ingesting, VersionRecord::default()),
            file(22, FileState::Merging, merging),
            file(23, FileState::Merging, rollback),
        ]));
        assert!(!html.contains("id=held>") && html.contains("id=held-count><b>0</b>"), "nothing held: {html}");
        let ingesting = row(&html, "data-file-id=\"21\"");
        assert!(ingesting.contains("<td class=state>ingesting</td>") && ingesting.contains("3/4 ranges (75%)"));
        assert!(ingesting.contains("<td class=change>–</td>"), "not diffed yet: {ingesting}");
        let merging = row(&html, "data-file-id=\"22\"");
        assert!(merging.contains("2/8 buckets merged (25%)") && merging.contains("+7 −1"), "{merging}");
        let rollback = row(&html, "data-file-id=\"23\"");
        assert!(rollback.contains("<b>rollback to 3</b>") && rollback.contains("0/2 buckets merged"), "{rollback}");
    }
}
