//! Erasures (issue 20): a person removed from every advertiser's lists, for good.
//!
//! An erasure names an [`EmailHash`], never an email. Its row is durable and idempotent (one per
//! hash) and audited in the transaction that records it; matchers learn of it on
//! [`ERASURES_CHANNEL`] (and by polling [`Catalog::erasures_since`]) and answer "not a member"
//! from then on; every ingest unit drops erased hashes from its runs
//! ([`Catalog::erased_hashes`], counted as the file's `erased` rows) and every merge unit those
//! of its bucket from its inputs and its base ([`Catalog::erased_in_bucket`]: an erasure recorded
//! after the runs were written), so no later upload brings the person back; the splitter
//! leader's passes ([`Leadership::pending_erasures`], `splitter::duties::erase_once`) delete
//! the hash's store partitions and rewrite the work objects that hold it, and complete the
//! erasure with a pass that started once no merge unit could still write it
//! (`queries/erasures/pending.sql`).

use chrono::{DateTime, Utc};

use super::operator::record_action;
use super::{secs, sql, Catalog, Leadership, Result};
use crate::ids::{AdvertiserId, EmailHash, FileId};
use crate::manifest::Buckets;

/// The channel a new erasure is announced on (payload: its sequence number), at commit.
pub const ERASURES_CHANNEL: &str = "memberlake_erasures";

/// One erasure and how far it has come.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Erasure {
    /// Its place in the order erasures were recorded (what matchers poll by).
    pub seq: i64,
    pub email_hash: EmailHash,
    pub requested_at: DateTime<Utc>,
    pub requested_by: String,
    /// Leader passes over it so far (store partitions deleted, work objects rewritten).
    pub passes: i32,
    pub last_pass_at: Option<DateTime<Utc>>,
    /// Work objects (manifest buckets, diffs, runs) rewritten without the hash.
    pub objects_rewritten: i64,
    /// When the last pass that could find the hash anywhere finished.
    pub completed_at: Option<DateTime<Utc>>,
    /// Whether the request that returned it recorded it (false: it existed already).
    pub created: bool,
}

/// An erasure the leader has yet to complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct PendingErasure {
    pub email_hash: EmailHash,
    /// No ingest or merge unit that may not have seen it can still write: a pass that starts
    /// now ends it.
    pub settled: bool,
}

/// A list version whose objects may still be at the work location.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct VersionWithWork {
    pub file_id: FileId,
    pub advertiser_id: AdvertiserId,
    pub bucket_bits: i16,
    /// Its runs are not deleted yet.
    pub has_runs: bool,
}

/// The erasure backlog an operator alerts on.
#[derive(Debug, Clone, Copy, PartialEq, sqlx::FromRow)]
pub struct ErasureBacklog {
    pub pending: i64,
    pub oldest_age_secs: f64,
}

impl Catalog {
    /// Records an erasure of `hash` by `actor` (audited, announced at commit), or returns the
    /// one already recorded (`created` false).
    pub async fn request_erasure(&self, actor: &str, hash: EmailHash) -> Result<Erasure> {
        let mut tx = self.pool.begin().await?;
        let erasure: Erasure =
            sqlx::query_as(sql!("erasures", "request")).bind(hash).bind(actor).fetch_one(&mut *tx).await?;
        if erasure.created {
            // The audit log names the hash: it is what was erased, and it is not an email.
            record_action(&mut tx, actor, "erase", &format!("email_hash:{hash}"), serde_json::json!({})).await?;
            sqlx::query(sql!("advertisers", "notify_activation"))
                .bind(ERASURES_CHANNEL)
                .bind(erasure.seq.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(erasure)
    }

    /// The erasure of `hash`, if one was requested.
    pub async fn erasure(&self, hash: EmailHash) -> Result<Option<Erasure>> {
        Ok(sqlx::query_as(sql!("erasures", "by_hash")).bind(hash).fetch_optional(&self.pool).await?)
    }

    /// Erasures recorded after sequence number `seq`, in order: (seq, hash).
    pub async fn erasures_since(&self, seq: i64) -> Result<Vec<(i64, EmailHash)>> {
        Ok(sqlx::query_as(sql!("erasures", "since")).bind(seq).fetch_all(&self.pool).await?)
    }

    /// The erased hashes of bucket `b` at `buckets`, sorted: what a merge unit of that bucket
    /// drops from its inputs.
    pub async fn erased_in_bucket(&self, buckets: Buckets, b: u32) -> Result<Vec<EmailHash>> {
        let (lo, hi) = bucket_bounds(buckets, b);
        Ok(sqlx::query_scalar(sql!("erasures", "in_range"))
            .bind(&lo[..])
            .bind(hi.as_ref().map(|h| &h[..]))
            .fetch_all(&self.pool)
            .await?)
    }

    /// Every erased hash: an ingest unit drops them from its runs.
    pub async fn erased_hashes(&self) -> Result<std::collections::HashSet<EmailHash>> {
        let rows: Vec<EmailHash> = sqlx::query_scalar(sql!("erasures", "all")).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().collect())
    }

    /// Erasures not complete yet, and the oldest one's age.
    pub async fn erasure_backlog(&self) -> Result<ErasureBacklog> {
        Ok(sqlx::query_as(sql!("erasures", "pending_count")).fetch_one(&self.pool).await?)
    }
}

/// The byte bounds `[lo, hi)` of bucket `b` (a bucket is a hash prefix of `bits` bits); `hi` is
/// `None` for the last bucket.
fn bucket_bounds(buckets: Buckets, b: u32) -> ([u8; 2], Option<[u8; 2]>) {
    // Bucket bits are at most 16: two leading bytes hold every bucket boundary.
    let shift = 16 - u32::from(buckets.bits());
    let lo = (u64::from(b) << shift) as u16;
    let hi = (u64::from(b) + 1) << shift;
    (lo.to_be_bytes(), u16::try_from(hi).ok().map(u16::to_be_bytes))
}

impl Leadership {
    /// Erasures to work on (at most `limit`, oldest first), each marked settled if no merge
    /// lease drawn before its fence is held and `grace` (longer than a lease) has passed since.
    /// Fences the erasures seen for the first time (`queries/erasures/fence.sql`).
    pub async fn pending_erasures(&self, grace: std::time::Duration, limit: i64) -> Result<Vec<PendingErasure>> {
        let mut tx = self.begin().await?;
        sqlx::query(sql!("erasures", "fence")).execute(&mut *tx).await?;
        let rows =
            sqlx::query_as(sql!("erasures", "pending")).bind(secs(grace)).bind(limit).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// Every version that may hold objects at the work location.
    pub async fn versions_with_work(&self) -> Result<Vec<VersionWithWork>> {
        Ok(sqlx::query_as(sql!("erasures", "work_versions")).fetch_all(&self.catalog().pool).await?)
    }

    /// Records a pass over `hash` (fenced by the term): `rewritten` work objects; complete if
    /// the pass started `settled`.
    pub async fn record_erasure_pass(&self, hash: EmailHash, rewritten: u64, settled: bool) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(sql!("erasures", "record_pass"))
            .bind(hash)
            .bind(rewritten as i64)
            .bind(settled)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bounds_hold_exactly_the_buckets_hashes() {
        for bits in [1u8, 3, 8, 12, 16] {
            let buckets = Buckets::new(bits).unwrap();
            for b in [0, 1, buckets.count() / 2, buckets.count() - 1] {
                let (lo, hi) = bucket_bounds(buckets, b);
                let mut first = [0u8; 16];
                first[..2].copy_from_slice(&lo);
                assert_eq!(buckets.bucket_of(&first), b, "{bits} bits, bucket {b}: lo");
                match hi {
                    Some(hi) => {
                        let mut next = [0u8; 16];
                        next[..2].copy_from_slice(&hi);
                        assert_eq!(buckets.bucket_of(&next), b + 1, "{bits} bits, bucket {b}: hi");
                    }
                    None => assert_eq!(b, buckets.count() - 1),
                }
            }
        }
    }
}
