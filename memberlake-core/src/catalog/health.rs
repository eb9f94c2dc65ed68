//! The pipeline's health as an operator alerts on it: the queue per lane (depth and the age of
//! its oldest unit), files per state, and the files whose 2-hour SLA is at risk. Read by the
//! splitter leader every few seconds and exported as gauges (`memberlake::telemetry`); each
//! query is index-backed and costs O(work in flight), never O(history) (see each `.sql`).

use std::time::Duration;

use super::{secs, sql, Catalog, FileState, Result};

/// The catalog's answer to "is work flowing, and will it finish in time?" at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineHealth {
    /// Both lanes, express first, each present even when empty.
    pub lanes: [LaneQueue; 2],
    /// Every [`FileState`], each present even when zero: in-flight states count every file in
    /// them; terminal states (ingested, failed, cancelled) count the files that reached them
    /// within [`HealthQuery::finished_window`].
    pub files: Vec<(FileState, i64)>,
    /// Files whose projected finish passes their registration + [`HealthQuery::sla`] at the rate
    /// they have progressed so far. With `done` of `total` work units (ingest ranges plus merge
    /// buckets) after `elapsed` since registration, the projected finish is
    /// `registered_at + elapsed × total / done`; it passes `registered_at + sla` exactly when
    /// `done / total < elapsed / sla`: the fraction of units done lags the fraction of the SLA
    /// spent. A file with nothing done is projected past any deadline. A file is judged only
    /// from `sla / 10` after registration on (before that one unit is the whole rate: noise).
    /// Held and paused files wait for an operator by design and are not counted; a file past its
    /// deadline still in flight always is.
    pub sla_at_risk: i64,
    /// Active lists that stop matching within [`LIST_EXPIRY_WARNING`] (their advertiser's
    /// lifespan runs out), and those that already did: both need the advertiser to upload a
    /// fresh list (or an operator to change the lifespan).
    pub lists_expiring: i64,
    pub lists_expired: i64,
}

/// How long before its expiry a list counts as expiring (`memberlake_lists_expiring`).
pub const LIST_EXPIRY_WARNING: Duration = Duration::from_secs(7 * 24 * 3600);

/// The queued work units of one lane.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct LaneQueue {
    /// `express`: units the express lane may take (small or urgent files; the bulk lane may take
    /// them too). `bulk`: units only the bulk lane takes.
    pub lane: String,
    /// Units a worker could claim now: queued, of a stage their file's state lets run, file not
    /// paused.
    pub units: i64,
    /// Seconds the oldest of them has waited since it last became claimable (0 when none).
    pub oldest_seconds: f64,
}

/// What [`Catalog::pipeline_health`] measures against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthQuery {
    /// The express lane's bounds, as the workers' (`MEMBERLAKE_EXPRESS_MAX_FILE_SIZE`,
    /// `MEMBERLAKE_URGENT_PRIORITY`).
    pub express_max_bytes: u64,
    pub urgent_priority: i32,
    /// The time from registration to an active version that the product promises (2 h).
    pub sla: Duration,
    /// How far back files that reached a terminal state are counted.
    pub finished_window: Duration,
}

impl Catalog {
    /// The pipeline's health now: three short read-only queries, each O(work in flight).
    pub async fn pipeline_health(&self, q: &HealthQuery) -> Result<PipelineHealth> {
        let queued: Vec<LaneQueue> = sqlx::query_as(sql!("ranges", "queue_by_lane"))
            .bind(i64::try_from(q.express_max_bytes).unwrap_or(i64::MAX))
            .bind(q.urgent_priority)
            .fetch_all(&self.pool)
            .await?;
        let lane = |name: &str| {
            queued.iter().find(|l| l.lane == name).cloned().unwrap_or(LaneQueue {
                lane: name.to_owned(),
                units: 0,
                oldest_seconds: 0.0,
            })
        };
        let counted: Vec<(FileState, i64)> =
            sqlx::query_as(sql!("files", "count_by_state")).bind(secs(q.finished_window)).fetch_all(&self.pool).await?;
        let files =
            FileState::ALL.iter().map(|s| (*s, counted.iter().find(|(c, _)| c == s).map_or(0, |(_, n)| *n))).collect();
        let sla_at_risk: i64 =
            sqlx::query_scalar(sql!("files", "sla_at_risk")).bind(secs(q.sla)).fetch_one(&self.pool).await?;
        // One row per advertiser with a lifespan (few): counted here rather than in SQL.
        let now = chrono::Utc::now();
        let warn_until = now + chrono::Duration::from_std(LIST_EXPIRY_WARNING).unwrap_or(chrono::Duration::MAX);
        let lifespans = self.lifespans().await?;
        let lists_expired = lifespans.iter().filter(|l| l.is_expired_at(now)).count() as i64;
        let lists_expiring =
            lifespans.iter().filter(|l| !l.is_expired_at(now) && l.is_expired_at(warn_until)).count() as i64;
        Ok(PipelineHealth { lanes: [lane("express"), lane("bulk")], files, sla_at_risk, lists_expiring, lists_expired })
    }
}
