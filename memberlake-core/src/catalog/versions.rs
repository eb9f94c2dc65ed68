//! Advertisers' active list versions, as the matcher reads and follows them.
//!
//! Architecture invariant: a version becomes active only in the splitter's settle transaction
//! (`queries/advertisers/activate.sql`), when every range of its file is done, and only forward
//! (by `(last_modified, file_id)`); the notification on [`ACTIVATIONS_CHANNEL`] is delivered at
//! commit.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgListener;

use super::{sql, Catalog, Result};
use crate::ids::{AdvertiserId, ListVersion};

/// The channel the splitter notifies when a list version is activated (`advertiser:version`).
pub const ACTIVATIONS_CHANNEL: &str = "memberlake_activations";

/// An advertiser's active list version.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ActiveVersion {
    pub advertiser_id: AdvertiserId,
    pub version: ListVersion,
    /// Ingested before change-proportional versions: its rows are in `memberships`.
    pub legacy: bool,
    /// When it stops matching: its upload plus the advertiser's lifespan (`None`: never).
    pub expires_at: Option<DateTime<Utc>>,
    /// Its manifest's (and filter's) buckets are `1 << bucket_bits`; `None` for a legacy one.
    pub bucket_bits: Option<i16>,
    /// Its members (`None` for a legacy version).
    pub members: Option<i64>,
}

/// Whether a list that stops matching at `expires_at` (`None`: never) has expired at `now`:
/// from that instant on, every lookup of it answers "not a member". The one definition the
/// matcher, the status views and the leader's gauges share.
pub fn list_expired(expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    expires_at.is_some_and(|at| at <= now)
}

/// An advertiser's list lifespan, and when its active list stops (or stopped) matching.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AdvertiserLifespan {
    pub advertiser_id: AdvertiserId,
    pub lifespan_secs: f64,
    /// `None` while the advertiser has no active list.
    pub expires_at: Option<DateTime<Utc>>,
}

impl AdvertiserLifespan {
    /// Its active list matches nobody at `now` ([`list_expired`]).
    pub fn is_expired_at(&self, now: DateTime<Utc>) -> bool {
        list_expired(self.expires_at, now)
    }
}

/// An advertiser's active version, as a dry run reads its manifest.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ActiveManifest {
    pub version: ListVersion,
    pub bucket_bits: Option<i16>,
    /// Ingested before change-proportional versions: it has no manifest.
    pub legacy: bool,
    pub manifest_expired: bool,
}

impl Catalog {
    /// `advertiser`'s active version and its manifest's facts, if it has an active version.
    pub async fn active_manifest(&self, advertiser: &AdvertiserId) -> Result<Option<ActiveManifest>> {
        Ok(sqlx::query_as(sql!("advertisers", "active_manifest")).bind(advertiser).fetch_optional(&self.pool).await?)
    }

    /// Every advertiser's active list version.
    pub async fn active_versions(&self) -> Result<Vec<ActiveVersion>> {
        Ok(sqlx::query_as(sql!("advertisers", "active_versions")).fetch_all(&self.pool).await?)
    }

    /// Every advertiser that has a lifespan, by id.
    pub async fn lifespans(&self) -> Result<Vec<AdvertiserLifespan>> {
        Ok(sqlx::query_as(sql!("advertisers", "lifespans")).fetch_all(&self.pool).await?)
    }

    /// A listener on what changes a matcher's answers: [`ACTIVATIONS_CHANNEL`] and
    /// [`ERASURES_CHANNEL`](super::ERASURES_CHANNEL).
    pub async fn listen_activations(&self) -> Result<PgListener> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen_all([ACTIVATIONS_CHANNEL, super::ERASURES_CHANNEL]).await?;
        Ok(listener)
    }
}
