//! [`RemoteLog`]: a C2SP tlog-tiles log read over HTTP, as a read-only [`Storage`].
//!
//! `read("tile/...")` GETs `<base>/tile/...` (404 is [`Error::NotFound`], so readers fall back
//! from a deleted partial tile to the full one); `read_checkpoint` GETs `<base>/checkpoint` and
//! accepts it only if it is signed by the log key with the key's name as its origin, is no
//! smaller than the last checkpoint accepted, and is proven from the log's own tiles to extend
//! it (RFC 9162 §2.1.4). The last accepted checkpoint can be kept in a file, so a restart keeps
//! refusing what the log could not have signed honestly. Writes are refused.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rekor_note::{Checkpoint, LogVerifier, MAX_NOTE_SIZE};
use rekor_storage::{Error, Object, ObjectVersion, Result, Storage, Versioned, check_object_path};
use rekor_tlog::{
    HASH_SIZE, Hash, MAX_ENTRY_SIZE, TilePath, TileRecorder, TreeSize, consistency_proof,
    verify_consistency,
};
use tokio::sync::Mutex;

use crate::error::{IndexerError, Refusal, RemoteError};

/// The backend name in [`Error`]s.
const BACKEND: &str = "http";
/// Hashes in a full tile, entries in a full bundle.
const FULL_WIDTH: usize = 256;
/// The largest hash tile.
const MAX_TILE_BYTES: usize = FULL_WIDTH * HASH_SIZE;
/// The largest entry bundle: 256 entries of the largest size, each behind a 2-byte length.
const MAX_BUNDLE_BYTES: usize = FULL_WIDTH * (2 + MAX_ENTRY_SIZE);

/// The last checkpoint accepted.
#[derive(Clone, Debug)]
struct Head {
    size: u64,
    root: Hash,
}

/// A log read over HTTP from its tlog-tiles base URL, its checkpoints verified with its key.
#[derive(Debug)]
pub struct RemoteLog {
    http: reqwest::Client,
    base: String,
    verifier: LogVerifier,
    /// The last accepted checkpoint; held while a new one is checked, so checks run one at a time.
    head: Mutex<Option<Head>>,
    /// Where the last accepted checkpoint is kept, if anywhere.
    head_file: Option<PathBuf>,
    /// The last refused note, so a log that keeps serving it is not reported on every read.
    refused: std::sync::Mutex<Option<Bytes>>,
    /// Tiles' nodes and entries that verified answers used: each read here is a GET to the log.
    read_cache: rekor_storage::ReadCache,
}

impl RemoteLog {
    /// A log at `base_url` (such as `http://127.0.0.1:3000/api/v2`: tiles at
    /// `<base_url>/tile/...`, the checkpoint at `<base_url>/checkpoint`), trusted through
    /// `verifier`. Each request may take at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`IndexerError::Flag`] for a URL that is not `http(s)://` or has a query or fragment;
    /// [`IndexerError::HttpClient`].
    pub fn new(
        base_url: &str,
        verifier: LogVerifier,
        timeout: Duration,
    ) -> Result<RemoteLog, IndexerError> {
        let invalid = |reason: &str| IndexerError::Flag {
            flag: "--log-url",
            reason: format!("{base_url:?}: {reason}"),
        };
        let url = reqwest::Url::parse(base_url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("a query or fragment is not allowed"));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("rekor-search-indexer/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(IndexerError::HttpClient)?;
        Ok(RemoteLog {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            verifier,
            head: Mutex::new(None),
            head_file: None,
            refused: std::sync::Mutex::new(None),
            read_cache: rekor_storage::ReadCache::default(),
        })
    }

    /// The same log, keeping the last accepted checkpoint in `path` and starting from the one
    /// already there, if any.
    ///
    /// # Errors
    ///
    /// [`IndexerError::Read`] if the file exists but cannot be read;
    /// [`IndexerError::ForeignIndex`] if it does not verify with the log key.
    pub async fn with_head_file(mut self, path: PathBuf) -> Result<RemoteLog, IndexerError> {
        match tokio::fs::read(&path).await {
            Ok(note) => {
                let checkpoint = self.verifier.verify_checkpoint(&note).map_err(|source| {
                    IndexerError::ForeignIndex {
                        path: path.display().to_string(),
                        source,
                    }
                })?;
                tracing::info!(
                    size = checkpoint.size,
                    "resuming from the last verified checkpoint"
                );
                *self.head.get_mut() = Some(Head {
                    size: checkpoint.size,
                    root: Hash(checkpoint.root),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(IndexerError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        }
        self.head_file = Some(path);
        Ok(self)
    }

    /// The log's base URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The size of the last accepted checkpoint (0 before the first).
    pub async fn verified_size(&self) -> u64 {
        self.head.lock().await.as_ref().map_or(0, |h| h.size)
    }

    /// Fetches the log's checkpoint and accepts it as [`Storage::read_checkpoint`] describes;
    /// `None` if the log has published none yet.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] when the log cannot be read or the checkpoint is refused (the
    /// [`Refusal`] is logged, once per distinct note); [`Error::Other`] for answers no log
    /// would give.
    pub async fn checkpoint(&self) -> Result<Option<(Bytes, Checkpoint)>> {
        let Some(note) = self.get("checkpoint", MAX_NOTE_SIZE).await? else {
            return match self.head.lock().await.as_ref() {
                None => Ok(None),
                Some(head) => Err(self.refuse(
                    Bytes::new(),
                    Refusal::Vanished {
                        verified: head.size,
                    },
                )),
            };
        };
        match self.accept(&note).await {
            Ok(checkpoint) => Ok(Some((note, checkpoint))),
            Err(Rejected::Refused(refusal)) => Err(self.refuse(note, refusal)),
            Err(Rejected::Storage(e)) => Err(e),
        }
    }

    /// Checks `note` against the key and the last accepted checkpoint, and remembers it.
    async fn accept(&self, note: &[u8]) -> Result<Checkpoint, Rejected> {
        let checkpoint = self
            .verifier
            .verify_checkpoint(note)
            .map_err(|e| Rejected::Refused(Refusal::Unverified(e)))?;
        let root = Hash(checkpoint.root);
        let mut head = self.head.lock().await;
        if let Some(old) = head.as_ref() {
            if checkpoint.size < old.size {
                return Err(Rejected::Refused(Refusal::Rollback {
                    verified: old.size,
                    offered: checkpoint.size,
                }));
            }
            if checkpoint.size == old.size {
                if root != old.root {
                    return Err(Rejected::Refused(Refusal::Fork { size: old.size }));
                }
                return Ok(checkpoint);
            }
            self.prove_consistency(old, checkpoint.size, &root).await?;
        }
        self.persist(note).await.map_err(Rejected::Storage)?;
        if head.as_ref().is_none_or(|old| old.size != checkpoint.size) {
            tracing::debug!(size = checkpoint.size, "accepted a new checkpoint");
        }
        *head = Some(Head {
            size: checkpoint.size,
            root,
        });
        Ok(checkpoint)
    }

    /// Proves from the log's tiles that the tree of `size` with `root` extends `old`.
    async fn prove_consistency(&self, old: &Head, size: u64, root: &Hash) -> Result<(), Rejected> {
        let (old_size, new_size) = (TreeSize::new(old.size), TreeSize::new(size));
        let inconsistent = |source| {
            Rejected::Refused(Refusal::Inconsistent {
                old: old.size,
                new: size,
                source,
            })
        };
        let recorder = TileRecorder::new();
        // The recorder holds no tiles, so this fails; it only lists the tiles needed.
        let _ = consistency_proof(old_size, new_size, &recorder);
        let tiles = rekor_search::read_tiles(self, recorder.into_tile_ids())
            .await
            .map_err(|e| match e {
                rekor_search::SearchError::Storage(e) => Rejected::Storage(e),
                other => Rejected::Storage(Error::Other {
                    backend: BACKEND,
                    source: Box::new(other),
                }),
            })?;
        let proof = consistency_proof(old_size, new_size, &tiles).map_err(inconsistent)?;
        verify_consistency(old_size, new_size, &old.root, root, &proof).map_err(inconsistent)
    }

    /// Writes the accepted note to the head file, atomically.
    async fn persist(&self, note: &[u8]) -> Result<()> {
        let Some(path) = &self.head_file else {
            return Ok(());
        };
        let failed = |source| Error::Unavailable {
            backend: BACKEND,
            source: Box::new(RemoteError::Persist {
                path: path.display().to_string(),
                source,
            }),
        };
        let staging = path.with_extension("tmp");
        let file = tokio::fs::File::create(&staging).await.map_err(failed)?;
        {
            use tokio::io::AsyncWriteExt as _;
            let mut file = file;
            file.write_all(note).await.map_err(failed)?;
            file.sync_all().await.map_err(failed)?;
        }
        tokio::fs::rename(&staging, path).await.map_err(failed)
    }

    /// Logs a refusal (once per distinct note) and returns the error readers see.
    fn refuse(&self, note: Bytes, refusal: Refusal) -> Error {
        let mut last = self
            .refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.as_ref() != Some(&note) {
            tracing::error!(error = %refusal, log = %self.base, "refused the log's checkpoint; nothing is indexed or answered against it");
            *last = Some(note);
        } else {
            tracing::debug!(error = %refusal, "refused the log's checkpoint again");
        }
        Error::Unavailable {
            backend: BACKEND,
            source: Box::new(RemoteError::Refused(refusal)),
        }
    }

    /// `GET <base>/<path>`, at most `limit` bytes; `None` for a 404.
    async fn get(&self, path: &str, limit: usize) -> Result<Option<Bytes>> {
        let url = format!("{}/{path}", self.base);
        let transport = |source| Error::Unavailable {
            backend: BACKEND,
            source: Box::new(RemoteError::Transport {
                url: url.clone(),
                source,
            }),
        };
        let mut response = self.http.get(&url).send().await.map_err(transport)?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if status != reqwest::StatusCode::OK {
            let error = Box::new(RemoteError::Status {
                url: url.clone(),
                status: status.as_u16(),
            });
            return Err(
                if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                    Error::Unavailable {
                        backend: BACKEND,
                        source: error,
                    }
                } else {
                    Error::Other {
                        backend: BACKEND,
                        source: error,
                    }
                },
            );
        }
        let too_large = || Error::Other {
            backend: BACKEND,
            source: Box::new(RemoteError::TooLarge {
                url: url.clone(),
                limit,
            }),
        };
        if response
            .content_length()
            .is_some_and(|len| usize::try_from(len).map_or(true, |len| len > limit))
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(Bytes::from(body)))
    }
}

/// Why a checkpoint was not accepted: the log's fault, or a read that failed.
enum Rejected {
    Refused(Refusal),
    Storage(Error),
}

fn read_only(what: &'static str) -> Error {
    Error::Other {
        backend: BACKEND,
        source: Box::new(RemoteError::ReadOnly(what)),
    }
}

#[async_trait]
impl Storage for RemoteLog {
    /// Refused: the log is read over HTTP.
    async fn write_objects(&self, _objects: Vec<Object>) -> Result<()> {
        Err(read_only("write tiles or entry bundles"))
    }

    /// GETs a hash tile or entry bundle (`tile/...`); any other path is [`Error::InvalidPath`].
    async fn read(&self, path: &str) -> Result<Bytes> {
        check_object_path(path)?;
        let limit = match TilePath::parse(path) {
            Ok(TilePath::Hash(_)) => MAX_TILE_BYTES,
            Ok(TilePath::Entries(_)) => MAX_BUNDLE_BYTES,
            Err(_) => {
                return Err(Error::InvalidPath {
                    path: path.to_string(),
                    reason: "not a tile or entry bundle path",
                });
            }
        };
        self.get(path, limit).await?.ok_or_else(|| Error::NotFound {
            path: path.to_string(),
        })
    }

    fn read_cache(&self) -> Option<&rekor_storage::ReadCache> {
        Some(&self.read_cache)
    }

    /// The log's checkpoint, accepted only as [`RemoteLog::checkpoint`] says; its version is
    /// its size and root.
    async fn read_checkpoint(&self) -> Result<Option<Versioned>> {
        Ok(self
            .checkpoint()
            .await?
            .map(|(data, checkpoint)| Versioned {
                data,
                version: ObjectVersion(format!(
                    "{}-{}",
                    checkpoint.size,
                    hex::encode(checkpoint.root)
                )),
            }))
    }

    /// Refused: the log is read over HTTP.
    async fn write_checkpoint(
        &self,
        _data: Bytes,
        _expected: Option<&ObjectVersion>,
    ) -> Result<ObjectVersion> {
        Err(read_only("write the checkpoint"))
    }

    /// Refused: the log is read over HTTP.
    async fn delete_partials(&self, _paths: Vec<String>) -> Result<()> {
        Err(read_only("delete partial tiles"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex as StdMutex};

    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use rekor_note::{KeyName, LogSigner, Origin};
    use rekor_tlog::{TreeBuilder, leaf_hash};

    use super::*;

    const ORIGIN: &str = "fake-log.test";

    type Objects = Arc<StdMutex<HashMap<String, Bytes>>>;

    /// A log over HTTP on 127.0.0.1 that serves whatever the test puts in `objects`.
    struct FakeLog {
        objects: Objects,
        base: String,
        signer: LogSigner,
    }

    impl FakeLog {
        async fn start() -> FakeLog {
            let objects: Objects = Arc::default();
            let router = axum::Router::new()
                .route(
                    "/log/{*path}",
                    axum::routing::get(
                        |State(objects): State<Objects>, Path(path): Path<String>| async move {
                            let found = objects.lock().unwrap().get(&path).cloned();
                            match found {
                                Some(bytes) => (StatusCode::OK, bytes),
                                None => (StatusCode::NOT_FOUND, Bytes::new()),
                            }
                        },
                    ),
                )
                .with_state(Arc::clone(&objects));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, router).await });
            FakeLog {
                objects,
                base: format!("http://{address}/log"),
                signer: signer([1; 32], ORIGIN),
            }
        }

        /// Publishes the tiles of the tree `leaves` (numbered entries with `salt`), and returns
        /// its checkpoint signed by `signer`.
        fn grow(&self, tree: &mut TreeBuilder, count: u64, salt: &str) -> Bytes {
            let leaves: Vec<Hash> = (tree.size().get()..tree.size().get() + count)
                .map(|n| leaf_hash(format!("{salt} {n}").as_bytes()))
                .collect();
            let mut objects = self.objects.lock().unwrap();
            for tile in tree.append(&leaves) {
                objects.insert(tile.id.path(), Bytes::from(tile.to_bytes()));
            }
            drop(objects);
            self.sign(&self.signer, ORIGIN, tree.size().get(), tree.root())
        }

        fn sign(&self, signer: &LogSigner, origin: &str, size: u64, root: Hash) -> Bytes {
            let checkpoint = Checkpoint::new(Origin::new(origin).unwrap(), size, root.0);
            Bytes::from(signer.sign_checkpoint(&checkpoint).unwrap())
        }

        fn serve_checkpoint(&self, note: &Bytes) {
            self.objects
                .lock()
                .unwrap()
                .insert("checkpoint".to_string(), note.clone());
        }

        fn remote(&self) -> RemoteLog {
            RemoteLog::new(&self.base, self.signer.verifier(), Duration::from_secs(10)).unwrap()
        }
    }

    fn signer(seed: [u8; 32], name: &str) -> LogSigner {
        LogSigner::from_ed25519_seed(seed, KeyName::new(name).unwrap())
    }

    fn refusal(result: Result<Option<(Bytes, Checkpoint)>>) -> Refusal {
        let error = result.unwrap_err();
        assert!(error.is_transient(), "{error}");
        let Error::Unavailable { source, .. } = error else {
            panic!("not unavailable: {error}");
        };
        match *source.downcast::<RemoteError>().unwrap() {
            RemoteError::Refused(refusal) => refusal,
            other => panic!("not a refusal: {other}"),
        }
    }

    #[tokio::test]
    async fn accepts_a_growing_log_and_refuses_forgeries_rollbacks_and_forks() {
        let log = FakeLog::start().await;
        let remote = log.remote();
        // Nothing published yet.
        assert!(remote.checkpoint().await.unwrap().is_none());

        let mut tree = TreeBuilder::new();
        let three = log.grow(&mut tree, 3, "entry");
        log.serve_checkpoint(&three);
        let (note, checkpoint) = remote.checkpoint().await.unwrap().unwrap();
        assert_eq!((note, checkpoint.size), (three.clone(), 3));

        // Growth across a tile boundary is proven from the tiles.
        let big = log.grow(&mut tree, 300, "entry");
        log.serve_checkpoint(&big);
        assert_eq!(remote.checkpoint().await.unwrap().unwrap().1.size, 303);
        assert_eq!(remote.verified_size().await, 303);

        // An older checkpoint of the same log is a rollback.
        log.serve_checkpoint(&three);
        assert!(matches!(
            refusal(remote.checkpoint().await),
            Refusal::Rollback {
                verified: 303,
                offered: 3
            }
        ));
        // The same size with another root is a fork.
        let fork = log.sign(&log.signer, ORIGIN, 303, Hash([7; 32]));
        log.serve_checkpoint(&fork);
        assert!(matches!(
            refusal(remote.checkpoint().await),
            Refusal::Fork { size: 303 }
        ));
        // Another key, or the right key under another name, does not verify.
        let other = signer([2; 32], ORIGIN);
        let forged = log.sign(&other, ORIGIN, 400, tree.root());
        log.serve_checkpoint(&forged);
        assert!(matches!(
            refusal(remote.checkpoint().await),
            Refusal::Unverified(_)
        ));
        let renamed = signer([1; 32], "other-log.test");
        let wrong_origin = log.sign(&renamed, "other-log.test", 400, tree.root());
        log.serve_checkpoint(&wrong_origin);
        assert!(matches!(
            refusal(remote.checkpoint().await),
            Refusal::Unverified(_)
        ));
        // A signed checkpoint for a tree that does not extend the verified one: its tiles
        // prove nothing about the old root.
        let mut other_tree = TreeBuilder::new();
        let rewritten = log.grow(&mut other_tree, 310, "rewritten");
        log.serve_checkpoint(&rewritten);
        assert!(matches!(
            refusal(remote.checkpoint().await),
            Refusal::Inconsistent {
                old: 303,
                new: 310,
                ..
            }
        ));
        // Nothing refused was taken as the head.
        assert_eq!(remote.verified_size().await, 303);

        // The log goes back to serving its own checkpoint: accepted again.
        log.serve_checkpoint(&big);
        assert_eq!(remote.checkpoint().await.unwrap().unwrap().1.size, 303);
        // A log that stops serving a checkpoint after serving one is refused.
        log.objects.lock().unwrap().remove("checkpoint");
        assert!(matches!(
            refusal(remote.checkpoint().await),
            Refusal::Vanished { verified: 303 }
        ));
    }

    #[tokio::test]
    async fn reads_tiles_and_refuses_writes() {
        let log = FakeLog::start().await;
        let remote = log.remote();
        let mut tree = TreeBuilder::new();
        log.grow(&mut tree, 2, "entry");
        assert_eq!(remote.read("tile/0/000.p/2").await.unwrap().len(), 64);
        assert!(matches!(
            remote.read("tile/0/000.p/3").await,
            Err(Error::NotFound { .. })
        ));
        for path in ["checkpoint", "tile/x", "../tile/0/000"] {
            assert!(
                matches!(remote.read(path).await, Err(Error::InvalidPath { .. })),
                "{path}"
            );
        }
        assert!(remote.write_objects(Vec::new()).await.is_err());
        assert!(remote.write_checkpoint(Bytes::new(), None).await.is_err());
        assert!(remote.delete_partials(Vec::new()).await.is_err());
    }

    #[tokio::test]
    async fn the_head_survives_a_restart_and_belongs_to_one_log() {
        let dir = tempfile::tempdir().unwrap();
        let head = dir.path().join("checkpoint");
        let log = FakeLog::start().await;
        let mut tree = TreeBuilder::new();
        let five = log.grow(&mut tree, 5, "entry");
        log.serve_checkpoint(&five);
        let remote = log.remote().with_head_file(head.clone()).await.unwrap();
        remote.checkpoint().await.unwrap();
        assert_eq!(std::fs::read(&head).unwrap(), five.as_ref());

        // After a restart, a rollback is still refused.
        let resumed = log.remote().with_head_file(head.clone()).await.unwrap();
        assert_eq!(resumed.verified_size().await, 5);
        let two = log.sign(&log.signer, ORIGIN, 2, Hash([3; 32]));
        log.serve_checkpoint(&two);
        assert!(matches!(
            refusal(resumed.checkpoint().await),
            Refusal::Rollback { verified: 5, .. }
        ));

        // The directory of one log cannot be used for another.
        let other = RemoteLog::new(
            &log.base,
            signer([2; 32], ORIGIN).verifier(),
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(matches!(
            other.with_head_file(head).await,
            Err(IndexerError::ForeignIndex { .. })
        ));
    }
}
