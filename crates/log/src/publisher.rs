//! The publisher: signs a checkpoint for the integrated tree and swaps it into storage.

use std::sync::Arc;

use bytes::Bytes;
use rekor_note::{Checkpoint, LogSigner, Origin};
use rekor_storage::{ObjectVersion, Storage};
use rekor_tlog::Hash;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::{LogError, PublishedCheckpoint};

#[derive(Debug)]
pub(crate) struct Publisher {
    signer: Arc<LogSigner>,
    origin: Origin,
    version: Option<ObjectVersion>,
    last_published: Option<Instant>,
    current: watch::Sender<Arc<PublishedCheckpoint>>,
}

impl Publisher {
    pub(crate) fn new(
        signer: Arc<LogSigner>,
        origin: Origin,
        version: Option<ObjectVersion>,
        current: watch::Sender<Arc<PublishedCheckpoint>>,
    ) -> Self {
        Publisher {
            signer,
            origin,
            version,
            last_published: None,
            current,
        }
    }

    pub(crate) fn current(&self) -> Arc<PublishedCheckpoint> {
        Arc::clone(&self.current.borrow())
    }

    /// Verifies a stored checkpoint note with this log's key and origin.
    pub(crate) fn verify(&self, note: &[u8]) -> Result<Checkpoint, LogError> {
        let checkpoint = self
            .signer
            .verifier()
            .verify_checkpoint(note)
            .map_err(|e| LogError::BadCheckpoint {
                reason: e.to_string(),
            })?;
        if checkpoint.origin != self.origin {
            return Err(LogError::BadCheckpoint {
                reason: "the stored checkpoint names another origin".into(),
            });
        }
        Ok(checkpoint)
    }

    /// Continues from a stored checkpoint version (see `Pipeline::reconcile_with_stored`).
    pub(crate) fn adopt(&mut self, version: ObjectVersion) {
        self.version = Some(version);
    }

    /// Takes a stored checkpoint that covers the whole tree as this log's latest publication:
    /// another frontend (or a write of ours whose reply was lost) published it just now.
    pub(crate) fn adopt_published(
        &mut self,
        version: ObjectVersion,
        published: Arc<PublishedCheckpoint>,
    ) {
        self.version = Some(version);
        self.last_published = Some(Instant::now());
        self.current.send_replace(published);
    }

    pub(crate) fn last_published(&self) -> Option<Instant> {
        self.last_published
    }

    /// Signs the checkpoint for a tree of `size` with `root`.
    pub(crate) fn sign(&self, size: u64, root: Hash) -> Result<Bytes, LogError> {
        let checkpoint = Checkpoint {
            origin: self.origin.clone(),
            size,
            root: root.0,
            extensions: Vec::new(),
        };
        let note = self
            .signer
            .sign_checkpoint(&checkpoint)
            .map_err(|e| LogError::internal(format!("signing the checkpoint: {e}")))?;
        Ok(Bytes::from(note))
    }

    /// Writes `note`, the signed (and possibly cosigned) checkpoint for a tree of `size` with
    /// `root` whose tiles are durable, in place of the stored one.
    pub(crate) async fn write(
        &mut self,
        storage: &dyn Storage,
        note: Bytes,
        size: u64,
        root: Hash,
    ) -> Result<Arc<PublishedCheckpoint>, LogError> {
        let version = storage
            .write_checkpoint(note.clone(), self.version.as_ref())
            .await?;
        self.version = Some(version);
        self.last_published = Some(Instant::now());
        let published = Arc::new(PublishedCheckpoint { size, root, note });
        self.current.send_replace(Arc::clone(&published));
        Ok(published)
    }
}
