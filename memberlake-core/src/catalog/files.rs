//! Files: lake objects registered once (discovery) and how operators and tests read them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef, Postgres};
use sqlx::types::Json;

use super::{sql, Catalog, CatalogError, FileState, RejectionSample, Result};
use crate::ids::{AdvertiserId, FileId};
use crate::lake::{Compression, LakeObject};

/// A file as operators and tests see it (the `file_records` view).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct FileRecord {
    pub file_id: FileId,
    pub advertiser_id: AdvertiserId,
    pub object_key: String,
    pub etag: String,
    pub size_bytes: i64,
    #[serde(serialize_with = "compression_name")]
    pub compression: Compression,
    pub state: FileState,
    pub priority: i32,
    pub paused: bool,
    pub ranges_total: i32,
    pub ranges_done: i32,
    pub rows_ingested: i64,
    pub rows_rejected: i64,
    pub failure_reason: Option<String>,
    pub registered_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub retired_at: Option<DateTime<Utc>>,
    /// Whether this file is its advertiser's active list.
    pub active: bool,
    /// The file as a list version.
    #[sqlx(flatten)]
    pub version: VersionRecord,
}

/// A file as a list version (`docs/versions.md`): its member count, its difference from the
/// version it was diffed against, and the store rows it wrote and deleted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, sqlx::FromRow)]
pub struct VersionRecord {
    /// `changes` (a change-proportional version) or `rows` (legacy: ingested before them).
    pub store_format: String,
    /// The version this one was diffed against (`None`: written in full).
    pub base_version: Option<FileId>,
    /// The version that replaced this one as active.
    pub superseded_by: Option<FileId>,
    /// Its buckets are `1 << bucket_bits`.
    pub bucket_bits: Option<i16>,
    pub buckets_done: i32,
    /// Distinct members (once every bucket merged).
    pub members: Option<i64>,
    /// Members added and removed against the base version.
    pub added: i64,
    pub removed: i64,
    /// Store rows written by merging, and deleted by undoing or retiring this version.
    pub rows_written: i64,
    pub rows_deleted: i64,
    /// Rows (ingest) and members (merge) dropped because their hash is erased.
    pub erased: i64,
    /// Why the version is held (the shrink guard), or `approved`.
    pub held_reason: Option<String>,
    pub activated_at: Option<DateTime<Utc>>,
    /// A rollback: the earlier version whose member set this one restores.
    pub rollback_of: Option<FileId>,
    /// When the version's manifest passed its retention: no rollback to it, no retry of it.
    pub manifest_expired_at: Option<DateTime<Utc>>,
}

impl VersionRecord {
    /// Members present in both this version and its base.
    pub fn unchanged(&self) -> Option<i64> {
        self.members.map(|m| m - self.added)
    }
}

fn compression_name<S: serde::Serializer>(c: &Compression, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.as_str())
}

#[derive(sqlx::FromRow)]
struct SeenObject {
    object_key: String,
    etag: String,
}

impl Catalog {
    /// Registers a lake object once; returns its id if this call registered it.
    pub async fn register_file(&self, bucket: &str, object: &LakeObject) -> Result<Option<FileId>> {
        let size = i64::try_from(object.size).map_err(|_| CatalogError::Invalid("object too large".into()))?;
        sqlx::query(sql!("advertisers", "ensure")).bind(&object.advertiser_id).execute(&self.pool).await?;
        let id: Option<FileId> = sqlx::query_scalar(sql!("files", "register"))
            .bind(&object.advertiser_id)
            .bind(bucket)
            .bind(&object.key)
            .bind(&object.etag)
            .bind(size)
            .bind(object.last_modified)
            .bind(object.compression)
            .fetch_optional(&self.pool)
            .await?;
        Ok(id)
    }

    /// The (key, etag) pairs already registered for `bucket`: the seen-set a meta-service
    /// starts from, so that a restart does not re-insert the whole lake.
    pub async fn registered_objects(&self, bucket: &str) -> Result<Vec<(String, String)>> {
        let rows: Vec<SeenObject> =
            sqlx::query_as(sql!("files", "registered_objects")).bind(bucket).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|r| (r.object_key, r.etag)).collect())
    }

    pub async fn file(&self, id: FileId) -> Result<Option<FileRecord>> {
        Ok(sqlx::query_as(sql!("files", "by_id")).bind(id).fetch_optional(&self.pool).await?)
    }

    /// Every file, oldest first.
    pub async fn files(&self) -> Result<Vec<FileRecord>> {
        Ok(sqlx::query_as(sql!("files", "all")).fetch_all(&self.pool).await?)
    }

    /// Rejection samples of a file's ranges, in offset order.
    pub async fn rejection_samples(&self, id: FileId) -> Result<Vec<RejectionSample>> {
        let per_range: Vec<Json<Vec<RejectionSample>>> =
            sqlx::query_scalar(sql!("ranges", "rejection_samples")).bind(id).fetch_all(&self.pool).await?;
        Ok(per_range.into_iter().flat_map(|Json(samples)| samples).collect())
    }
}

// `files.compression` is TEXT constrained to the names of [`Compression`].
impl sqlx::Type<Postgres> for Compression {
    fn type_info() -> PgTypeInfo {
        <String as sqlx::Type<Postgres>>::type_info()
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <String as sqlx::Type<Postgres>>::compatible(ty)
    }
}

impl sqlx::Encode<'_, Postgres> for Compression {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&str as sqlx::Encode<Postgres>>::encode(self.as_str(), buf)
    }
}

impl<'r> sqlx::Decode<'r, Postgres> for Compression {
    fn decode(value: PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let s = <&str as sqlx::Decode<Postgres>>::decode(value)?;
        Compression::parse(s).ok_or_else(|| format!("unknown compression {s:?}").into())
    }
}
