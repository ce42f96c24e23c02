//! Storage for a tile-based transparency log: the [`Storage`] and [`Coordinator`] traits and their backends.
//!
//! A log needs two kinds of state:
//!
//! - [`Storage`] holds what readers fetch, laid out as C2SP tlog-tiles: immutable hash tiles
//!   (`tile/<L>/<N>[.p/<W>]`) and entry bundles (`tile/entries/<N>[.p/<W>]`), plus the one mutable object,
//!   the `checkpoint`. It is an object store (a directory, GCS, S3) that a CDN or static file server can serve.
//! - [`Coordinator`] holds what only the log itself reads: durable sequencing (which entry got which index,
//!   until its tiles are written) and the persistent dedup index.
//!
//! Integration is deterministic: tiles are a pure function of the sequenced entries. That is what lets
//! several frontends integrate concurrently (their writes are identical, so create-only writes succeed)
//! and lets a crashed log finish integrating on restart. The checkpoint is swapped by version, so it never
//! moves backwards.
//!
//! Backends: [`memory`] (always built, for tests), `posix` (feature `posix`, the default: a
//! directory with its own journal and dedup index, one process), `gcp` (feature `gcp`: GCS +
//! Cloud Spanner) and `aws` (feature `aws`: S3 + MySQL). The cloud backends may be shared by
//! several frontends.
//!
//! ```
//! # tokio_test_block_on(async {
//! use rekor_storage::{memory::MemoryStorage, Object, Storage};
//! let storage = MemoryStorage::default();
//! storage.write_objects(vec![Object::new("tile/0/000.p/1", vec![0u8; 32])]).await?;
//! assert_eq!(storage.read("tile/0/000.p/1").await?.len(), 32);
//! # Ok::<(), rekor_storage::Error>(()) });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

#[cfg(feature = "aws")]
pub mod aws;
mod error;
#[cfg(feature = "gcp")]
pub mod gcp;
pub mod memory;
#[cfg(any(feature = "gcp", feature = "aws"))]
mod packed;
#[cfg(feature = "posix")]
pub mod posix;
mod read_cache;
pub mod search;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
#[cfg(any(test, feature = "testing"))]
pub mod fault;

use std::fmt::Debug;

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest, Sha256};

pub use error::{BoxError, Error, Result};
pub use read_cache::{DEFAULT_ENTRY_BYTES, DEFAULT_TILE_NODES_BYTES, ReadCache};
pub use search::{MAX_LOOKUP, MemorySearchIndex, Posting, SearchIndex, StoredPosting};

/// How many reads the default [`Storage::read_many`] keeps in flight: enough to overlap the
/// round trips of an object store, few enough not to queue behind each other.
pub const READ_MANY_IN_FLIGHT: usize = 8;

/// The path of the checkpoint object, relative to the storage root.
pub const CHECKPOINT_PATH: &str = "checkpoint";

/// `Cache-Control` for tiles and entry bundles: they never change once written.
pub const IMMUTABLE_CACHE_CONTROL: &str = "max-age=604800,immutable";
/// `Cache-Control` for the checkpoint: it changes with every published tree.
pub const CHECKPOINT_CACHE_CONTROL: &str = "no-cache";

/// An immutable object to write: a hash tile or an entry bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    /// Path relative to the storage root, e.g. `tile/0/x001/234.p/7`.
    pub path: String,
    /// The object's bytes.
    pub data: Bytes,
}

impl Object {
    /// Builds an object from a path and its bytes.
    pub fn new(path: impl Into<String>, data: impl Into<Bytes>) -> Self {
        Object {
            path: path.into(),
            data: data.into(),
        }
    }
}

/// The kinds of object a log publishes, each with the headers a reader or CDN should see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// The signed checkpoint note.
    Checkpoint,
    /// A hash tile or an entry bundle.
    Tile,
}

impl ObjectKind {
    /// The kind of object stored at `path`.
    pub fn of_path(path: &str) -> Self {
        if path == CHECKPOINT_PATH {
            ObjectKind::Checkpoint
        } else {
            ObjectKind::Tile
        }
    }

    /// The `Content-Type` for this kind.
    pub fn content_type(self) -> &'static str {
        match self {
            ObjectKind::Checkpoint => "text/plain; charset=utf-8",
            ObjectKind::Tile => "application/octet-stream",
        }
    }

    /// The `Cache-Control` for this kind.
    pub fn cache_control(self) -> &'static str {
        match self {
            ObjectKind::Checkpoint => CHECKPOINT_CACHE_CONTROL,
            ObjectKind::Tile => IMMUTABLE_CACHE_CONTROL,
        }
    }
}

/// An opaque version of a mutable object, used for compare-and-swap (a generation, an ETag, a content hash).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectVersion(pub String);

impl std::fmt::Display for ObjectVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A mutable object's bytes and the version they were read at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    /// The object's bytes.
    pub data: Bytes,
    /// The version to pass back when replacing it.
    pub version: ObjectVersion,
}

/// The public, readable half of a log's state: tiles, entry bundles and the checkpoint.
#[async_trait]
pub trait Storage: Send + Sync + Debug + 'static {
    /// Writes immutable objects (hash tiles and entry bundles), create-only.
    ///
    /// Contract: an object that already exists with identical bytes is left as it is (so the call is
    /// idempotent); one that exists with different bytes fails the call with [`Error::AlreadyExists`],
    /// because two integrations of the same sequence disagreed. On error some objects may have been
    /// written; none is referenced until a checkpoint names it.
    ///
    /// Durability: every object is durable when `Ok` is returned, or, for a backend that pairs this
    /// storage with its own coordinator (POSIX), recoverable: that coordinator keeps the leaves the
    /// objects are made from until they are durable, and recovery rewrites what a power loss damaged.
    async fn write_objects(&self, objects: Vec<Object>) -> Result<()>;

    /// Reads an object by path. A missing object is [`Error::NotFound`].
    async fn read(&self, path: &str) -> Result<Bytes>;

    /// Reads several objects: one answer per path, in the order asked, each what
    /// [`Storage::read`] would answer for it (one failure does not fail the others).
    ///
    /// The default keeps [`READ_MANY_IN_FLIGHT`] reads in flight. A backend whose reads each
    /// block a thread (POSIX) does them all in one hand-off to the blocking pool instead: a
    /// search page reads about 200 objects, and a hand-off per read cost more than the reads.
    async fn read_many(&self, paths: Vec<String>) -> Vec<Result<Bytes>> {
        use futures::StreamExt as _;
        futures::stream::iter(paths)
            .map(|path| async move { self.read(&path).await })
            .buffered(READ_MANY_IN_FLIGHT)
            .collect()
            .await
    }

    /// Reads some entries of entry bundles: for each of `reads`, the entries at its
    /// `positions` (ascending), in that order, as small buffers of their own. A bundle is
    /// C2SP tlog-tiles' encoding: each entry a 2-byte big-endian length, then its bytes.
    ///
    /// One answer per read, in order: [`Error::NotFound`] for a missing bundle, as
    /// [`Storage::read`] would answer; otherwise the wanted entries the bundle holds, so fewer
    /// than asked if it ends first (an entry cut short by the end of the object, and all after
    /// it, are not returned). Nothing past the last wanted entry is looked at, so a bundle's
    /// tail is not validated; the caller proves each entry it uses against the tree.
    ///
    /// The default reads each whole bundle with [`Storage::read_many`]. The POSIX backend reads
    /// each file only up to its last wanted entry, all in one hand-off: a search page wants
    /// one entry from each of about 100 bundles of about 256 entries.
    async fn read_bundle_entries(&self, reads: Vec<BundleRead>) -> Vec<Result<Vec<Bytes>>> {
        let paths = reads.iter().map(|read| read.path.clone()).collect();
        let objects = self.read_many(paths).await;
        reads
            .into_iter()
            .zip(objects)
            .map(|(read, object)| object.map(|bytes| bundle_entries(&bytes, &read.positions)))
            .collect()
    }

    /// The cache of decoded, immutable log content this storage keeps for readers that prove
    /// entries from it, shared across calls and bounded in memory; `None` if it keeps none
    /// (the default: wrappers and test doubles keep none).
    fn read_cache(&self) -> Option<&ReadCache> {
        None
    }

    /// Reads the checkpoint and its version; `None` before the first checkpoint is published.
    async fn read_checkpoint(&self) -> Result<Option<Versioned>>;

    /// Replaces the checkpoint atomically and durably, if its current version is `expected`
    /// (`None`: no checkpoint may exist yet). Returns the new version.
    ///
    /// A version mismatch is [`Error::Precondition`] and changes nothing. Readers see the old or the
    /// new checkpoint, never a mix.
    async fn write_checkpoint(
        &self,
        data: Bytes,
        expected: Option<&ObjectVersion>,
    ) -> Result<ObjectVersion>;

    /// Deletes partial hash tiles and entry bundles (`<N>.p/<W>` paths) that a full tile or
    /// bundle has superseded. C2SP tlog-tiles lets a log delete them once the full one is
    /// available: a reader holding an older checkpoint reads the full one and uses its prefix.
    ///
    /// A path already gone is not an error. Any path that is not a partial tile or bundle is
    /// [`Error::InvalidPath`], checked before anything is deleted. On another error some of the
    /// paths may have been deleted.
    async fn delete_partials(&self, paths: Vec<String>) -> Result<()>;

    /// Whether this storage deletes superseded partials by itself. The POSIX backend does, after
    /// its background sync has made the full tiles durable. For the others the log deletes the
    /// partials it wrote, once the coordinator's integrated size has passed their full tile.
    fn deletes_partials_itself(&self) -> bool {
        false
    }
}

/// Entries to read from one entry bundle ([`Storage::read_bundle_entries`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleRead {
    /// The bundle's path (`tile/entries/...`).
    pub path: String,
    /// The positions of the entries wanted in it, ascending.
    pub positions: Vec<usize>,
}

/// The entries of `bundle` (C2SP tlog-tiles encoding) at `positions` (ascending), as views
/// into it; stops at the first position the bundle does not hold whole.
#[must_use]
pub fn bundle_entries(bundle: &Bytes, positions: &[usize]) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(positions.len());
    let mut wanted = positions.iter().copied().peekable();
    let mut rest: &[u8] = bundle;
    let mut position = 0;
    while let Some(&next) = wanted.peek() {
        let Some((prefix, after)) = rest.split_first_chunk::<2>() else {
            break;
        };
        let len = usize::from(u16::from_be_bytes(*prefix));
        let Some((entry, following)) = after.split_at_checked(len) else {
            break;
        };
        if position == next {
            out.push(bundle.slice_ref(entry));
            wanted.next();
        } else if position > next {
            // Not ascending: skip the position already passed.
            wanted.next();
            continue;
        }
        rest = following;
        position += 1;
    }
    out
}

/// The dedup key of an entry: SHA-256 of its canonical bytes (not the RFC 6962 leaf hash).
#[must_use]
pub fn dedup_key(entry: &[u8]) -> [u8; 32] {
    Sha256::digest(entry).into()
}

/// A leaf to sequence: the canonical entry bytes and their SHA-256 (the dedup key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequenceLeaf {
    /// [`dedup_key`] of `data` (not the RFC 6962 leaf hash). It must be: a backend may derive
    /// it again from the data it logged (the POSIX backend rebuilds its index from the bundles).
    pub dedup_key: [u8; 32],
    /// The canonical entry bytes, as they will appear in the entry bundle.
    pub data: Bytes,
}

/// How far the log has got: entries below `integrated` are in tiles; those in
/// `integrated..sequenced` have indices but their tiles may not be written yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SequenceState {
    /// The tree size whose tiles and bundles are all written.
    pub integrated: u64,
    /// The next index to assign.
    pub sequenced: u64,
}

/// The private half of a log's state: durable sequencing and the dedup index.
#[async_trait]
pub trait Coordinator: Send + Sync + Debug + 'static {
    /// Assigns consecutive indices to `leaves`, atomically and durably, and returns the first index.
    ///
    /// Contract: when `Ok` is returned the leaves survive a crash and will be integrated at those indices;
    /// on error none of them was sequenced. The leaf bytes are kept until [`Coordinator::mark_integrated`]
    /// covers them. Each leaf's `dedup_key → index` is in the dedup index when the call returns, and is
    /// as durable as the leaf.
    /// Not idempotent: sequencing the same leaves twice gives them two indices.
    async fn sequence(&self, leaves: &[SequenceLeaf]) -> Result<u64>;

    /// Freezes the log for every frontend sharing this coordinator: from now on [`sequence`]
    /// refuses with [`Error::Frozen`], so no checkpoint larger than the returned size can ever be
    /// signed. Leaves already sequenced are still integrated and published. Returns the final
    /// size (the sequenced size at the freeze); durable when it returns; idempotent (a second
    /// call returns the same size). There is no unfreeze: a frozen log is read-only forever.
    ///
    /// [`sequence`]: Coordinator::sequence
    async fn freeze(&self) -> Result<u64>;

    /// The size the log was frozen at, or `None` if it takes entries.
    async fn frozen(&self) -> Result<Option<u64>>;

    /// Looks up dedup keys; returns the index each was sequenced at, or `None`.
    async fn lookup(&self, dedup_keys: &[[u8; 32]]) -> Result<Vec<Option<u64>>>;

    /// The current sequencing state.
    async fn state(&self) -> Result<SequenceState>;

    /// Reads the bytes of sequenced leaves in `from..to` (all must be sequenced and not yet released).
    /// A missing leaf is [`Error::NotFound`].
    async fn read_sequenced(&self, from: u64, to: u64) -> Result<Vec<Bytes>>;

    /// Records that the tiles for `..to` are written, if the integrated size is still `from`,
    /// and releases the leaf bytes below `to`: they are no longer readable with
    /// [`Coordinator::read_sequenced`]. (A backend may keep them on disk longer: POSIX keeps them
    /// until the objects made from them are durable.)
    ///
    /// A different integrated size is [`Error::Precondition`] and changes nothing. This commit need not
    /// be durable: if it is lost, integration is repeated and produces identical objects.
    async fn mark_integrated(&self, from: u64, to: u64) -> Result<()>;

    /// Claims the next checkpoint write for this frontend, when several frontends share the
    /// backend and the storage limits how often one object may be written (GCS: about once a
    /// second). Returns `true`, recording the claim, when no frontend has claimed within
    /// `min_interval`; `false` otherwise, and the caller then leaves the write to the frontend
    /// that claimed it.
    ///
    /// Backends with a single writer keep the default, which always grants the claim.
    async fn claim_publication(&self, min_interval: std::time::Duration) -> Result<bool> {
        let _ = min_interval;
        Ok(true)
    }

    /// `Err` once the coordinator has stopped after a failure only a restart recovers from (the
    /// POSIX journal after a write it could not cut off again). Health checks report it, so an
    /// orchestrator restarts the process. Transient failures (a database briefly unreachable)
    /// are not reported here: each call reports those itself.
    fn health(&self) -> Result<()> {
        Ok(())
    }
}

/// Checks that `path` is a public object path: relative, no empty, `.` or `..` components, and no
/// component starting with `.` (private state lives in hidden directories and is never served).
///
/// # Errors
///
/// [`Error::InvalidPath`] naming the rule the path broke.
pub fn check_object_path(path: &str) -> Result<()> {
    const MAX_PATH_LEN: usize = 256;
    let invalid = |reason| {
        Err(Error::InvalidPath {
            path: path.chars().take(MAX_PATH_LEN).collect(),
            reason,
        })
    };
    if path.is_empty() || path.len() > MAX_PATH_LEN {
        return invalid("empty or too long");
    }
    if path.starts_with('/') {
        return invalid("absolute path");
    }
    for component in path.split('/') {
        if component.is_empty() {
            return invalid("empty path component");
        }
        if component.starts_with('.') {
            return invalid("hidden or relative path component");
        }
        if !component
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        {
            return invalid("unexpected character");
        }
    }
    Ok(())
}

/// Checks that `path` names a partial hash tile or entry bundle (`tile/<L>/<N>.p/<W>` or
/// `tile/entries/<N>.p/<W>`), the only objects [`Storage::delete_partials`] deletes.
///
/// # Errors
///
/// [`Error::InvalidPath`] for any other path.
pub fn check_partial_path(path: &str) -> Result<()> {
    check_object_path(path)?;
    let partial = match rekor_tlog::TilePath::parse(path) {
        Ok(rekor_tlog::TilePath::Hash(tile)) => !tile.is_full(),
        Ok(rekor_tlog::TilePath::Entries(bundle)) => !bundle.is_full(),
        Err(_) => false,
    };
    if partial {
        Ok(())
    } else {
        Err(Error::InvalidPath {
            path: path.to_owned(),
            reason: "not a partial tile or entry bundle",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_partial_tiles_and_bundles_may_be_deleted() {
        for partial in [
            "tile/0/000.p/1",
            "tile/2/x001/234.p/255",
            "tile/entries/007.p/9",
        ] {
            check_partial_path(partial).unwrap();
        }
        for other in [
            "tile/0/000",
            "tile/entries/000",
            "checkpoint",
            ".rekor/db",
            "tile/0/000.p/256",
            "tile/0/000.p/0",
            "tile/0/../000.p/1",
            "tile/0/000.p",
        ] {
            assert!(
                matches!(check_partial_path(other), Err(Error::InvalidPath { .. })),
                "{other} was accepted"
            );
        }
    }

    #[test]
    fn object_paths_are_checked() {
        for good in ["checkpoint", "tile/0/000", "tile/entries/x001/234.p/7"] {
            assert!(check_object_path(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/checkpoint",
            "tile//0",
            "../x",
            "tile/../../etc",
            ".rekor/db",
            "tile/.hidden",
            "tile/0/a b",
            "tile/0/\u{0}",
        ] {
            assert!(
                matches!(check_object_path(bad), Err(Error::InvalidPath { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn kinds_have_the_read_api_headers() {
        assert_eq!(
            ObjectKind::of_path("checkpoint").cache_control(),
            "no-cache"
        );
        assert_eq!(
            ObjectKind::of_path("tile/0/000").cache_control(),
            "max-age=604800,immutable"
        );
        assert_eq!(
            ObjectKind::of_path("tile/entries/000").content_type(),
            "application/octet-stream"
        );
    }
}
