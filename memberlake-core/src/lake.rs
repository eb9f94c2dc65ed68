//! The data lake: `s3://bucket/prefix` (any S3-compatible server, through `object_store`) or
//! `file:///abs/path`. Lists advertisers' objects and reads byte windows of them.
//!
//! Layout: `advertisers/<advertiser_id>/<any name>` under the lake root; anything else is
//! reported as [`LakeEntry::Ignored`]. Objects are immutable per etag; every read names the etag
//! it expects, so a file replaced under the same key is detected rather than half-read.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::ClientConfigKey;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};

use crate::error::{Classify, ErrorClass};
use crate::ids::AdvertiserId;
use crate::ranges::ByteRange;

/// Where the advertisers' folders live below the lake root.
pub const ADVERTISERS_DIR: &str = "advertisers";

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("invalid object-store URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The object is gone: permanent for the file.
    #[error("object {key:?} not found in the lake")]
    NotFound { key: String },
    /// The object under this key is no longer the registered version: permanent for the file.
    #[error("object {key:?} changed since it was registered (etag mismatch)")]
    Changed { key: String },
    /// A compressed object that does not decode: permanent for the file.
    #[error("cannot decompress the object: {0}")]
    Corrupt(String),
    /// The lake refused this process's credentials (401/403): a fault of this replica's
    /// configuration (`AWS_*`), not of the file — a worker gives the range back without spending
    /// an attempt. Retrying the same call gives the same answer.
    #[error("the lake refused this process's credentials for {key:?} (check its AWS_* settings): {source}")]
    AccessDenied {
        key: String,
        #[source]
        source: object_store::Error,
    },
    /// Anything else (network, throttling, server error): worth retrying.
    #[error("lake request for {key:?} failed: {source}")]
    Transient {
        key: String,
        #[source]
        source: object_store::Error,
    },
}

impl Classify for LakeError {
    fn class(&self) -> ErrorClass {
        match self {
            LakeError::InvalidUrl { .. }
            | LakeError::NotFound { .. }
            | LakeError::Changed { .. }
            | LakeError::Corrupt(_)
            | LakeError::AccessDenied { .. } => ErrorClass::Permanent,
            LakeError::Transient { .. } => ErrorClass::Transient,
        }
    }
}

impl LakeError {
    /// Whether retrying the same read gives the same answer: [`Classify::is_permanent`], kept
    /// as an inherent method so that callers need not import the trait.
    pub fn is_permanent(&self) -> bool {
        Classify::is_permanent(self)
    }

    pub(crate) fn from_store(key: &str, e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => LakeError::NotFound { key: key.to_owned() },
            object_store::Error::Precondition { .. } | object_store::Error::NotModified { .. } => {
                LakeError::Changed { key: key.to_owned() }
            }
            source @ (object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }) => {
                LakeError::AccessDenied { key: key.to_owned(), source }
            }
            source => LakeError::Transient { key: key.to_owned(), source },
        }
    }

    /// Whether the fault lies with this process's configuration rather than with the object
    /// (see [`LakeError::AccessDenied`]).
    pub fn is_replica_fault(&self) -> bool {
        matches!(self, LakeError::AccessDenied { .. })
    }
}

/// An object found by a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LakeEntry {
    Member(LakeObject),
    /// Outside `advertisers/<advertiser_id>/`, or with an invalid advertiser id.
    Ignored {
        key: String,
    },
}

/// A member-list object: what the catalog registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeObject {
    pub advertiser_id: AdvertiserId,
    /// Key relative to the object store's root (for S3: the full key in the bucket).
    pub key: String,
    pub etag: String,
    pub size: u64,
    pub last_modified: DateTime<Utc>,
    pub compression: Compression,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn from_key(key: &str) -> Self {
        let lower = key.to_ascii_lowercase();
        if lower.ends_with(".gz") || lower.ends_with(".gzip") {
            Compression::Gzip
        } else if lower.ends_with(".zst") || lower.ends_with(".zstd") {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Compression::None),
            "gzip" => Some(Compression::Gzip),
            "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// Compressed streams cannot be entered at an arbitrary byte: one range per object.
    pub fn is_splittable(self) -> bool {
        self == Compression::None
    }
}

/// A handle on the lake root.
#[derive(Clone)]
pub struct Lake {
    /// Its `bucket` identifies the lake in the catalog's (bucket, key, etag) uniqueness.
    root: ObjectRoot,
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lake").field("url", &self.root.url).finish()
    }
}

/// Bound on one S3 request, body included (`AWS_TIMEOUT` overrides it). A worker reads a range
/// at the pace of the store writes behind it (back-pressure), so a 64 MiB GET lasts a minute or
/// more; object_store's default of 30 s cut every range's read short in the 2 GB benchmark,
/// forcing re-reads and sometimes giving the whole range back.
const S3_REQUEST_TIMEOUT: &str = "15m";

/// An object store and the root inside it that a URL names: `s3://bucket/prefix` or
/// `file:///abs/path`. The lake and the work location are both opened this way.
#[derive(Clone)]
pub(crate) struct ObjectRoot {
    pub(crate) store: Arc<dyn ObjectStore>,
    /// The bucket name for S3, `file://<root>` for a local directory.
    pub(crate) bucket: String,
    /// Key prefix of the root inside the store (empty for `file://`).
    pub(crate) prefix: String,
    pub(crate) url: String,
}

impl ObjectRoot {
    pub(crate) fn open(url: &str) -> Result<Self, LakeError> {
        let invalid = |reason: &str| LakeError::InvalidUrl { url: url.to_owned(), reason: reason.to_owned() };
        let parsed = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        match parsed.scheme() {
            "s3" => {
                let bucket = parsed.host_str().filter(|b| !b.is_empty()).ok_or_else(|| invalid("missing bucket"))?;
                let prefix = parsed.path().trim_matches('/').to_owned();
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
                if std::env::var_os("AWS_TIMEOUT").is_none() {
                    builder =
                        builder.with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), S3_REQUEST_TIMEOUT);
                }
                let store = builder.build().map_err(|e| invalid(&e.to_string()))?;
                Ok(Self { store: Arc::new(store), bucket: bucket.to_owned(), prefix, url: url.to_owned() })
            }
            "file" => {
                let root = parsed.to_file_path().map_err(|_| invalid("file URL must be an absolute path"))?;
                std::fs::create_dir_all(&root)
                    .map_err(|e| invalid(&format!("cannot create {}: {e}", root.display())))?;
                let store = LocalFileSystem::new_with_prefix(&root).map_err(|e| invalid(&e.to_string()))?;
                Ok(Self {
                    store: Arc::new(store),
                    bucket: format!("file://{}", root.display()),
                    prefix: String::new(),
                    url: url.to_owned(),
                })
            }
            other => Err(invalid(&format!("unsupported scheme {other:?}: use s3:// or file://"))),
        }
    }

    /// The store key of `relative` (a path below the root).
    pub(crate) fn key(&self, relative: &str) -> String {
        if self.prefix.is_empty() {
            relative.to_owned()
        } else {
            format!("{}/{relative}", self.prefix)
        }
    }

    /// Where the root is, as one comparable string: `s3://bucket/prefix` or `file:///path`.
    fn location(&self) -> String {
        let base =
            if self.bucket.starts_with("file://") { self.bucket.clone() } else { format!("s3://{}", self.bucket) };
        let joined = if self.prefix.is_empty() { base } else { format!("{base}/{}", self.prefix) };
        joined.trim_end_matches('/').to_owned()
    }

    /// Whether `other` is this root or lies inside it.
    pub(crate) fn contains(&self, other: &ObjectRoot) -> bool {
        let (outer, inner) = (self.location(), other.location());
        inner == outer || inner.starts_with(&format!("{outer}/"))
    }
}

/// An object's etag; a store without etags gets one made of its size and modification time.
fn etag_of(meta: &object_store::ObjectMeta) -> String {
    meta.e_tag
        .clone()
        .unwrap_or_else(|| format!("{}-{}", meta.size, meta.last_modified.timestamp_nanos_opt().unwrap_or(0)))
}

impl Lake {
    /// Opens `s3://bucket/prefix` or `file:///abs/path`.
    pub fn open(url: &str) -> Result<Self, LakeError> {
        Ok(Self { root: ObjectRoot::open(url)? })
    }

    /// The lake's root, for comparing with other locations.
    pub(crate) fn root(&self) -> &ObjectRoot {
        &self.root
    }

    pub fn bucket(&self) -> &str {
        &self.root.bucket
    }

    pub fn url(&self) -> &str {
        &self.root.url
    }

    fn advertisers_root(&self) -> String {
        if self.root.prefix.is_empty() {
            ADVERTISERS_DIR.to_owned()
        } else {
            format!("{}/{ADVERTISERS_DIR}", self.root.prefix)
        }
    }

    /// Lists every object under the lake root (ListObjectsV2 for S3): member lists and the
    /// objects the layout ignores, so those can be counted.
    pub fn list(&self) -> BoxStream<'_, Result<LakeEntry, LakeError>> {
        let root = (!self.root.prefix.is_empty()).then(|| Path::from(self.root.prefix.as_str()));
        self.root
            .store
            .list(root.as_ref())
            .map(move |item| {
                let meta = item.map_err(|e| LakeError::from_store(&self.root.prefix, e))?;
                Ok(self.classify(meta))
            })
            .boxed()
    }

    fn classify(&self, meta: object_store::ObjectMeta) -> LakeEntry {
        let key = meta.location.to_string();
        let rest = key.strip_prefix(&self.advertisers_root()).and_then(|r| r.strip_prefix('/'));
        let Some(rest) = rest else { return LakeEntry::Ignored { key } };
        let Some((advertiser, name)) = rest.split_once('/') else { return LakeEntry::Ignored { key } };
        let Ok(advertiser_id) = AdvertiserId::parse(advertiser) else { return LakeEntry::Ignored { key } };
        if name.is_empty() {
            return LakeEntry::Ignored { key };
        }
        LakeEntry::Member(LakeObject {
            advertiser_id,
            compression: Compression::from_key(name),
            etag: etag_of(&meta),
            size: meta.size,
            last_modified: meta.last_modified,
            key,
        })
    }

    /// The size and etag of object `key` (a HEAD request; the etag as [`Lake::list`] reports it).
    pub async fn stat(&self, key: &str) -> Result<(u64, String), LakeError> {
        let meta = self.root.store.head(&Path::from(key)).await.map_err(|e| LakeError::from_store(key, e))?;
        Ok((meta.size, etag_of(&meta)))
    }

    /// Streams `window` of the object `key`, failing with [`LakeError::Changed`] if its etag is
    /// no longer `etag`. `None` reads the whole object.
    pub async fn read(
        &self,
        key: &str,
        etag: &str,
        window: Option<ByteRange>,
    ) -> Result<BoxStream<'static, Result<Bytes, LakeError>>, LakeError> {
        let path = Path::from(key);
        let options = GetOptions {
            if_match: Some(etag.to_owned()),
            range: window.map(|w| GetRange::Bounded(w.start..w.end)),
            ..Default::default()
        };
        if window.is_some_and(|w| w.is_empty()) {
            return Ok(futures::stream::empty().boxed());
        }
        let result = self.root.store.get_opts(&path, options).await.map_err(|e| LakeError::from_store(key, e))?;
        let key = key.to_owned();
        Ok(result.into_stream().map_err(move |e| LakeError::from_store(&key, e)).boxed())
    }

    /// Writes an object (used by the demo and the tests; the product only reads).
    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), LakeError> {
        self.root.store.put(&Path::from(key), data.into()).await.map(|_| ()).map_err(|e| LakeError::from_store(key, e))
    }

    /// Deletes an object (tests).
    pub async fn delete(&self, key: &str) -> Result<(), LakeError> {
        self.root.store.delete(&Path::from(key)).await.map_err(|e| LakeError::from_store(key, e))
    }

    /// The store key of `relative` (a path below the lake root).
    pub fn key(&self, relative: &str) -> String {
        self.root().key(relative)
    }

    /// The store key of `advertisers/<advertiser>/<name>` in this lake.
    pub fn member_list_key(&self, advertiser: &AdvertiserId, name: &str) -> String {
        format!("{}/{advertiser}/{name}", self.advertisers_root())
    }

    /// Cheap reachability check for /readyz.
    pub async fn ping(&self) -> Result<(), LakeError> {
        let root = Path::from(self.advertisers_root());
        match self.root.store.list_with_delimiter(Some(&root)).await {
            // A lake without advertisers yet is reachable.
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(LakeError::from_store(&self.advertisers_root(), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(message: &str) -> object_store::Error {
        object_store::Error::Generic { store: "test", source: message.into() }
    }

    #[test]
    fn a_missing_or_changed_object_is_permanent_anything_else_transient() {
        let not_found = object_store::Error::NotFound { path: "k".into(), source: "gone".into() };
        assert_eq!(LakeError::from_store("k", not_found).class(), ErrorClass::Permanent);
        let changed = object_store::Error::Precondition { path: "k".into(), source: "etag".into() };
        assert_eq!(LakeError::from_store("k", changed).class(), ErrorClass::Permanent);
        assert!(LakeError::Corrupt("bad gzip header".into()).is_permanent());
        assert!(LakeError::InvalidUrl { url: "ftp://x".into(), reason: "scheme".into() }.is_permanent());
        let throttled = LakeError::from_store("k", generic("503 Slow Down"));
        assert_eq!(throttled.class(), ErrorClass::Transient);
        assert!(throttled.is_transient() && !throttled.is_permanent());
    }
}
