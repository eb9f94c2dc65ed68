//! The status page: server-rendered HTML (no JavaScript needed), refreshed every 5 s.
//! Queue depth per lane, files in flight with progress bars, throughput over the last 15
//! minutes as a small bar chart, and recent failures with their reasons.

use std::fmt::Write;

use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use memberlake::catalog::{FileRecord, MinuteRows, Overview};
use memberlake::http::ApiError;

use crate::state::AdminState;

pub async fn page(State(state): State<AdminState>) -> Response {
    match state.overview().await {
        Ok(overview) => Html(render(&overview)).into_response(),
        Err(e) => ApiError::unavailable(format!("catalog unavailable: {e}")).into_response(),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn file_row(out: &mut String, f: &FileRecord) {
    let pct = if f.ranges_total > 0 { 100.0 * f.ranges_done as f64 / f.ranges_total as f64 } else { 0.0 };
    let _ = write!(
        out,
        "<tr data-file-id=\"{id}\"><td>{id}</td><td>{adv}</td><td class=key>{key}</td><td>{size}</td><td>{prio}{paused}</td>\
         <td><div class=bar><div class=fill style=\"width:{pct:.1}%\"></div></div>\
         <span class=pct>{done}/{total} ranges ({pct:.0}%)</span></td><td>{rows}</td><td>{rej}</td></tr>",
        id = f.file_id,
        adv = esc(f.advertiser_id.as_str()),
        key = esc(&f.object_key),
        size = memberlake::config::format_bytes(f.size_bytes.max(0) as u64),
        prio = f.priority,
        paused = if f.paused { " <b>paused</b>" } else { "" },
        done = f.ranges_done,
        total = f.ranges_total,
        rows = f.rows_ingested,
        rej = f.rows_rejected,
    );
}

/// Renders the page from an overview.
pub fn render(o: &Overview) -> String {
    let mut html = String::with_capacity(8192);
    html.push_str(
        "<!doctype html><html><head><meta charset=utf-8><meta http-equiv=refresh content=5>\
         <title>memberlake status</title><style>\
         body{font:14px system-ui,sans-serif;margin:24px;color:#222}h1{font-size:20px}h2{font-size:16px;margin-top:28px}\
         table{border-collapse:collapse;width:100%}td,th{padding:4px 8px;border-bottom:1px solid #ddd;text-align:left}\
         .key{font-family:monospace;font-size:12px}.bar{display:inline-block;width:160px;height:12px;background:#eee;\
         border-radius:3px;vertical-align:middle;margin-right:8px}.fill{height:100%;background:#2a7;border-radius:3px}\
         .cards{display:flex;gap:16px}.card{border:1px solid #ddd;border-radius:6px;padding:10px 16px}\
         .card b{display:block;font-size:22px}.fail{color:#b22}</style></head><body>\
         <h1>memberlake — ingestion status</h1>",
    );
    let _ = write!(
        html,
        "<div class=cards><div class=card id=queued-express><b>{}</b>queued ranges · express lane</div>\
         <div class=card id=queued-bulk><b>{}</b>queued ranges · bulk lane</div>\
         <div class=card id=leased><b>{}</b>ranges being processed</div>\
         <div class=card><b>{}</b>files in flight</div></div>",
        o.queued_express,
        o.queued_bulk,
        o.leased,
        o.files_in_flight.len()
    );

    html.push_str("<h2>Files in flight</h2>");
    if o.files_in_flight.is_empty() {
        html.push_str("<p>No file is being ingested.</p>");
    } else {
        html.push_str("<table id=in-flight><tr><th>id</th><th>advertiser</th><th>object</th><th>size</th><th>priority</th><th>progress</th><th>rows</th><th>rejected</th></tr>");
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
                "<tr class=fail><td>{}</td><td>{}</td><td class=key>{}</td><td>{}</td></tr>",
                f.file_id,
                esc(f.advertiser_id.as_str()),
                esc(&f.object_key),
                esc(f.failure_reason.as_deref().unwrap_or("")),
            );
        }
        html.push_str("</table>");
    }
    let json = memberlake_admin::routes::OVERVIEW.template;
    let _ = write!(html, "<p style=\"color:#888\">Refreshes every 5 s. JSON: {json}</p></body></html>");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_it_shows() {
        assert_eq!(esc("<script>&\"'"), "&lt;script&gt;&amp;&quot;&#39;");
    }
}
