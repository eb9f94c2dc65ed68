//! The work location: memberlake's own derived data — the sorted hash runs of ingested ranges,
//! version manifests and diffs (see `docs/versions.md` and `memberlake_records::manifest`) — kept
//! apart from the lake. The lake is the advertisers' data; the work location is ours, and it
//! holds personal data in hashed form, so erasure reaches it too.
//!
//! Configured by `MEMBERLAKE_WORK_URL` (`s3://bucket/prefix` or `file:///abs/path`). For the
//! embedded default (a `file://` lake) it defaults to a `work` directory beside the lake; an S3
//! lake needs it set. It must not lie inside the lake: objects there would be listed (and
//! counted as ignored) by discovery, or taken for member lists under `advertisers/`.

use std::ops::Range;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};

use crate::error::{Classify, ErrorClass};
use crate::ids::{AdvertiserId, ListVersion};
use crate::lake::{Lake, LakeError, ObjectRoot};
use crate::manifest::ManifestError;

/// A run that does not decode is corrupt: reading it again gives the same bytes. Only a failed
/// write to the sink could go better next time.
impl Classify for ManifestError {
    fn class(&self) -> ErrorClass {
        match self {
            ManifestError::Write(_) => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        }
    }
}

/// Why a work location cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error("MEMBERLAKE_WORK_URL: {0}")]
    Open(#[source] LakeError),
    #[error("MEMBERLAKE_WORK_URL must be set for a lake that is not file:// (the lake is {lake})")]
    Unset { lake: String },
    #[error("MEMBERLAKE_WORK_URL ({work}) lies inside the lake ({lake}): use a location of its own")]
    InsideLake { work: String, lake: String },
}

/// A handle on the work location. Cheap to clone (clones share the run-index cache).
#[derive(Clone)]
pub struct WorkLocation {
    root: ObjectRoot,
    run_indexes: crate::versions::RunIndexCache,
}

impl std::fmt::Debug for WorkLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkLocation").field("url", &self.root.url).finish()
    }
}

impl WorkLocation {
    /// Opens the configured work location (`configured`), or the default beside a `file://`
    /// lake, refusing one inside the lake.
    pub fn open(configured: Option<&str>, lake: &Lake) -> Result<Self, WorkError> {
        let url = match configured.filter(|u| !u.is_empty()) {
            Some(url) => url.to_owned(),
            None => default_url(lake.url()).ok_or_else(|| WorkError::Unset { lake: lake.url().to_owned() })?,
        };
        let root = ObjectRoot::open(&url).map_err(WorkError::Open)?;
        if lake.root().contains(&root) {
            return Err(WorkError::InsideLake { work: url, lake: lake.url().to_owned() });
        }
        Ok(Self { root, run_indexes: Default::default() })
    }

    /// A private scratch location at local directory `dir` (a dry run's runs and manifest),
    /// never a deployment's work location.
    pub fn scratch(dir: &std::path::Path) -> Result<Self, WorkError> {
        let url = format!("file://{}", dir.display());
        Ok(Self { root: ObjectRoot::open(&url).map_err(WorkError::Open)?, run_indexes: Default::default() })
    }

    /// The indexes of runs read so far (see [`crate::versions::RunIndexCache`]).
    pub(crate) fn run_indexes(&self) -> &crate::versions::RunIndexCache {
        &self.run_indexes
    }

    pub fn url(&self) -> &str {
        &self.root.url
    }

    fn path(&self, key: &str) -> Path {
        Path::from(self.root.key(key))
    }

    /// Writes (or replaces) an object.
    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), LakeError> {
        self.root.store.put(&self.path(key), data.into()).await.map(|_| ()).map_err(|e| LakeError::from_store(key, e))
    }

    /// Reads a whole object.
    pub async fn get(&self, key: &str) -> Result<Bytes, LakeError> {
        let result = self.root.store.get(&self.path(key)).await.map_err(|e| LakeError::from_store(key, e))?;
        result.bytes().await.map_err(|e| LakeError::from_store(key, e))
    }

    /// Reads `range` of an object with one ranged GET (one bucket of a run).
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, LakeError> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let options = GetOptions { range: Some(GetRange::Bounded(range)), ..Default::default() };
        let result =
            self.root.store.get_opts(&self.path(key), options).await.map_err(|e| LakeError::from_store(key, e))?;
        result.bytes().await.map_err(|e| LakeError::from_store(key, e))
    }

    /// Reads the last `len` bytes of an object (a run's footer).
    pub async fn get_suffix(&self, key: &str, len: u64) -> Result<Bytes, LakeError> {
        let options = GetOptions { range: Some(GetRange::Suffix(len)), ..Default::default() };
        let result =
            self.root.store.get_opts(&self.path(key), options).await.map_err(|e| LakeError::from_store(key, e))?;
        result.bytes().await.map_err(|e| LakeError::from_store(key, e))
    }

    /// Deletes every object under `prefix`; returns how many.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, LakeError> {
        let root = self.path(prefix);
        let keys: Vec<Path> = self
            .root
            .store
            .list(Some(&root))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|e| LakeError::from_store(prefix, e))?;
        for key in &keys {
            match self.root.store.delete(key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(LakeError::from_store(key.as_ref(), e)),
            }
        }
        Ok(keys.len() as u64)
    }

    /// The keys under `prefix` (relative to the work location root), sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, LakeError> {
        let root = self.path(prefix);
        let strip = if self.root.prefix.is_empty() { String::new() } else { format!("{}/", self.root.prefix) };
        let mut keys: Vec<String> = self
            .root
            .store
            .list(Some(&root))
            .map_ok(|meta| meta.location.to_string().strip_prefix(&strip).map(str::to_owned).unwrap_or_default())
            .try_collect()
            .await
            .map_err(|e| LakeError::from_store(prefix, e))?;
        keys.sort();
        Ok(keys)
    }
}

/// The default work location of a `file://` lake: `work` beside it (`file:///srv/lake` →
/// `file:///srv/work`). None for other lakes, which must configure one.
pub fn default_url(lake_url: &str) -> Option<String> {
    let parsed = url::Url::parse(lake_url).ok().filter(|u| u.scheme() == "file")?;
    let path = parsed.to_file_path().ok()?;
    let parent = path.parent()?;
    let name = path.file_name()?.to_string_lossy();
    let work = if name == "work" { parent.join("work-data") } else { parent.join("work") };
    url::Url::from_file_path(work).ok().map(String::from)
}

/// The names of one list version's objects at the work location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionDir {
    prefix: String,
}

impl VersionDir {
    pub fn new(advertiser: &AdvertiserId, version: ListVersion) -> Self {
        Self { prefix: format!("versions/{advertiser}/{version}") }
    }

    /// Everything of this version (for deletion).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Every run of the version (deleted once it is active).
    pub fn runs_prefix(&self) -> String {
        format!("{}/runs", self.prefix)
    }

    /// Sorted hash run `part` of ingest range `range_index` (a range spills a run every so many
    /// hashes).
    pub fn run(&self, range_index: i32, part: u32) -> String {
        format!("{}/runs/{range_index:06}.{part:03}.run", self.prefix)
    }

    /// Bucket `bucket` of the version's manifest (its member set).
    pub fn manifest(&self, bucket: u32) -> String {
        format!("{}/manifest/{bucket:05}.run", self.prefix)
    }

    /// One side of bucket `bucket` of the version's diff against its base.
    pub fn diff(&self, bucket: u32, side: DiffSide) -> String {
        format!("{}/diff/{bucket:05}.{}.run", self.prefix, side.name())
    }

    /// Bucket `bucket`'s membership filter (`memberlake_records::filter`), built with its
    /// manifest bucket; the matchers load them.
    pub fn filter(&self, bucket: u32) -> String {
        format!("{}/filter/{bucket:05}.fuse", self.prefix)
    }
}

/// One side of a bucket's diff against the base version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffSide {
    Added,
    Removed,
}

impl DiffSide {
    fn name(self) -> &'static str {
        match self {
            DiffSide::Added => "added",
            DiffSide::Removed => "removed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_lies_beside_a_file_lake() {
        assert_eq!(default_url("file:///srv/memberlake/lake").as_deref(), Some("file:///srv/memberlake/work"));
        assert_eq!(default_url("file:///srv/work").as_deref(), Some("file:///srv/work-data"));
        assert_eq!(default_url("s3://bucket/lake"), None);
    }

    #[test]
    fn a_work_location_inside_the_lake_is_refused() {
        let dir = std::env::temp_dir().join(format!("memberlake-work-test-{}", std::process::id()));
        let lake = Lake::open(&format!("file://{}/lake", dir.display())).unwrap();
        let inside = format!("file://{}/lake/work", dir.display());
        assert!(matches!(WorkLocation::open(Some(&inside), &lake), Err(WorkError::InsideLake { .. })));
        let same = format!("file://{}/lake", dir.display());
        assert!(matches!(WorkLocation::open(Some(&same), &lake), Err(WorkError::InsideLake { .. })));
        let beside = WorkLocation::open(None, &lake).unwrap();
        assert_eq!(beside.url(), format!("file://{}/work", dir.display()));
        let sibling = format!("file://{}/lake-work", dir.display());
        assert!(WorkLocation::open(Some(&sibling), &lake).is_ok(), "a sibling sharing a name prefix is apart");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn s3_work_locations_must_be_set_and_apart() {
        // Building an S3 handle needs no network.
        let lake = Lake::open("s3://bucket/lake").unwrap();
        assert!(matches!(WorkLocation::open(None, &lake), Err(WorkError::Unset { .. })));
        assert!(matches!(
            WorkLocation::open(Some("s3://bucket/lake/advertisers/x"), &lake),
            Err(WorkError::InsideLake { .. })
        ));
        assert!(WorkLocation::open(Some("s3://bucket/work"), &lake).is_ok());
        assert!(WorkLocation::open(Some("s3://other/lake"), &lake).is_ok());
        let whole_bucket = Lake::open("s3://bucket").unwrap();
        assert!(matches!(
            WorkLocation::open(Some("s3://bucket/work"), &whole_bucket),
            Err(WorkError::InsideLake { .. })
        ));
    }

    #[test]
    fn version_objects_are_named_under_their_version() {
        let dir = VersionDir::new(&AdvertiserId::parse("acme").unwrap(), ListVersion(42));
        assert_eq!(dir.run(3, 1), "versions/acme/42/runs/000003.001.run");
        assert_eq!(dir.manifest(255), "versions/acme/42/manifest/00255.run");
        assert_eq!(dir.diff(7, DiffSide::Added), "versions/acme/42/diff/00007.added.run");
        assert_eq!(dir.diff(7, DiffSide::Removed), "versions/acme/42/diff/00007.removed.run");
        assert_eq!(dir.filter(7), "versions/acme/42/filter/00007.fuse");
        assert!(dir.run(0, 0).starts_with(dir.prefix()));
    }
}
