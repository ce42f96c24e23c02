//! `--duplicate-returns-entry`: a resubmitted entry is answered like its first submission.
//!
//! By default (as in Rekor v2) a resubmission gets 409 / `AlreadyExists` with `x-log-index: N`.
//! With the flag it gets what a fresh `CreateEntry` gets (HTTP 201 / gRPC OK and a
//! `TransparencyLogEntry`): the existing entry's index, its canonical body as logged, and its
//! inclusion proof into the log's latest checkpoint that covers it, with that checkpoint as the
//! proof's envelope. The answer also carries `x-log-index: N` (an HTTP header, gRPC metadata),
//! which a fresh entry's answer never does: that is how a client tells the two apart. There is
//! no other marker.
//!
//! The entry is read back from the entry bundles and proven from the hash tiles through the
//! [`rekor_storage::Storage`] trait alone ([`rekor_search::proven_entry`]), so every backend
//! answers the same way. Before answering, the stored bytes are compared with the resubmitted
//! canonical entry (the dedup index is keyed by its hash; a mismatch is answered with the 409,
//! never with another entry's proof), and the proof is verified against the checkpoint's root
//! (a failure is an internal error, counted in `rekor_v2_inclusion_proof_failure_total`).
//!
//! The dedup index knows an entry from the moment it is sequenced, before a checkpoint covers
//! it. A resubmission in that window waits for the checkpoint, as the first submission does, and
//! for no longer than a request may take (`--server-timeout`); then it gets the retryable
//! answer a fresh entry would ([`ApiError::Timeout`]).

use std::sync::Arc;
use std::time::Duration;

use rekor_api::rekor::v1::TransparencyLogEntry;
use rekor_entries::EntryKind;
use rekor_log::{Log, PublishedCheckpoint};
use rekor_search::{SearchError, SearchTree};
use tokio::sync::watch;

use crate::error::ApiError;
use crate::service::{AppState, ProvenInto};

impl AppState {
    /// The entry the log already holds at `index` for the canonical entry `body` (of `kind`),
    /// answered as `CreateEntry` answers a fresh one. Waits up to `wait` for a checkpoint that
    /// covers `index` if none does yet.
    ///
    /// # Errors
    ///
    /// [`ApiError::Duplicate`] if the entry at `index` is not `body`; [`ApiError::Timeout`] if
    /// no checkpoint covers it in time; [`ApiError::ShuttingDown`];
    /// [`ApiError::StorageUnavailable`] for a transient storage failure;
    /// [`ApiError::Internal`] if the stored objects do not prove the entry.
    pub(crate) async fn existing_entry(
        &self,
        log: &Log,
        index: u64,
        kind: EntryKind,
        body: &[u8],
        wait: Duration,
    ) -> Result<TransparencyLogEntry, ApiError> {
        tracing::Span::current().record("log_index", index);
        let checkpoint = self.covering_checkpoint(log, index, wait).await?;
        let tree = SearchTree {
            size: checkpoint.size,
            root: checkpoint.root,
        };
        let found = rekor_search::proven_entry(self.storage().as_ref(), tree, index)
            .await
            .map_err(|e| self.unproven(index, e))?;
        if found.body != body {
            // The dedup key is SHA-256 of the entry, so this is a dedup index that does not
            // belong to these tiles, not a collision. Refuse as without the flag.
            tracing::error!(
                index,
                "the dedup index names an entry whose logged bytes differ from the resubmission"
            );
            return Err(ApiError::Duplicate { index });
        }
        // The same bytes, so the same kind as the logged body's.
        self.transparency_log_entry(
            index,
            kind.kind(),
            &found.body,
            ProvenInto {
                size: checkpoint.size,
                root: &checkpoint.root,
                proof: &found.proof,
                note: &checkpoint.note,
            },
        )
    }

    /// The latest checkpoint that covers `index`: the one this log published last, else the
    /// stored one (another frontend sharing the backend may have sequenced and published the
    /// entry), else the first one this log publishes within `wait`.
    async fn covering_checkpoint(
        &self,
        log: &Log,
        index: u64,
        wait: Duration,
    ) -> Result<Arc<PublishedCheckpoint>, ApiError> {
        let checkpoints = log.watch_checkpoints();
        let latest = Arc::clone(&checkpoints.borrow());
        if latest.size > index {
            return Ok(latest);
        }
        if let Some(stored) = self.stored_checkpoint().await?
            && stored.size > index
        {
            return Ok(stored);
        }
        await_checkpoint(checkpoints, index, wait).await
    }

    /// The checkpoint in storage, if there is one.
    async fn stored_checkpoint(&self) -> Result<Option<Arc<PublishedCheckpoint>>, ApiError> {
        let Some(stored) = self.storage().read_checkpoint().await? else {
            return Ok(None);
        };
        let checkpoint = crate::search::parse_checkpoint(&stored.data)?;
        Ok(Some(Arc::new(PublishedCheckpoint {
            size: checkpoint.size,
            root: rekor_tlog::Hash(checkpoint.root),
            note: stored.data,
        })))
    }

    /// What a client hears when the stored objects do not give the entry and its proof.
    fn unproven(&self, index: u64, error: SearchError) -> ApiError {
        match error {
            SearchError::Storage(e) if e.is_transient() => {
                ApiError::StorageUnavailable(e.to_string())
            }
            SearchError::Proof { .. } => {
                self.metrics().inclusion_proof_failures.inc();
                ApiError::Internal(format!("proving existing entry {index}: {error}"))
            }
            other => ApiError::Internal(format!("reading existing entry {index}: {other}")),
        }
    }
}

/// The first checkpoint `checkpoints` sees (the current one included) whose tree holds `index`,
/// waiting at most `wait`.
///
/// # Errors
///
/// [`ApiError::Timeout`] after `wait`; [`ApiError::ShuttingDown`] if the log stops publishing.
async fn await_checkpoint(
    mut checkpoints: watch::Receiver<Arc<PublishedCheckpoint>>,
    index: u64,
    wait: Duration,
) -> Result<Arc<PublishedCheckpoint>, ApiError> {
    let covering = checkpoints.wait_for(|checkpoint| checkpoint.size > index);
    match tokio::time::timeout(wait, covering).await {
        Ok(Ok(checkpoint)) => Ok(Arc::clone(&checkpoint)),
        Ok(Err(_)) => Err(ApiError::ShuttingDown),
        Err(_) => Err(ApiError::Timeout(wait)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rekor_storage::Storage;
    use rekor_storage::memory::{MemoryCoordinator, MemoryStorage};
    use rekor_tlog::{LeafIndex, TreeSize, leaf_hash, verify_inclusion};

    fn checkpoint(size: u64) -> Arc<PublishedCheckpoint> {
        Arc::new(PublishedCheckpoint {
            size,
            root: rekor_tlog::Hash([7; 32]),
            note: format!("origin\n{size}\n").into_bytes().into(),
        })
    }

    #[tokio::test]
    async fn a_covered_index_needs_no_wait() {
        let (_publisher, checkpoints) = watch::channel(checkpoint(3));
        let found = await_checkpoint(checkpoints, 2, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(found.size, 3);
    }

    #[tokio::test]
    async fn a_sequenced_index_waits_for_the_checkpoint_that_covers_it() {
        let (publisher, checkpoints) = watch::channel(checkpoint(3));
        let waiting = tokio::spawn(await_checkpoint(checkpoints, 5, Duration::from_secs(60)));
        // A checkpoint that still lacks the entry does not end the wait.
        publisher.send_replace(checkpoint(5));
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "answered before a checkpoint covered it"
        );
        publisher.send_replace(checkpoint(8));
        let found = waiting.await.unwrap().unwrap();
        assert_eq!(found.size, 8);
    }

    #[tokio::test]
    async fn no_checkpoint_in_time_is_a_timeout_and_a_stopped_log_is_shutting_down() {
        let (publisher, checkpoints) = watch::channel(checkpoint(3));
        let err = await_checkpoint(checkpoints.clone(), 3, Duration::from_millis(20))
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::Timeout(_)), "{err:?}");
        assert_eq!(err.status().0, http::StatusCode::SERVICE_UNAVAILABLE);
        drop(publisher);
        let err = await_checkpoint(checkpoints, 3, Duration::from_secs(60))
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::ShuttingDown), "{err:?}");
    }

    const ORIGIN: &str = "duplicate.test.example";

    /// A log on memory storage holding `entries`.
    async fn log_with(entries: &[&[u8]]) -> (Log, Arc<dyn Storage>) {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::default());
        let signer = rekor_note::LogSigner::from_ed25519_seed(
            [3; 32],
            rekor_note::KeyName::new(ORIGIN).unwrap(),
        );
        let log = Log::open(
            Arc::clone(&storage),
            Arc::new(MemoryCoordinator::default()),
            Arc::new(signer),
            rekor_note::Origin::new(ORIGIN).unwrap(),
            rekor_log::LogConfig::default(),
        )
        .await
        .unwrap();
        for entry in entries {
            log.add(Bytes::copy_from_slice(entry)).await.unwrap();
        }
        (log, storage)
    }

    fn state(log: &Log, storage: Arc<dyn Storage>) -> AppState {
        AppState::new(
            Some(log.clone()),
            storage,
            rekor_entries::AlgorithmRegistry::default(),
            [5; 32],
            crate::metrics::Metrics::new(),
            1 << 20,
        )
    }

    const ENTRIES: [&[u8]; 3] = [b"entry zero", b"entry one", b"entry two"];

    #[tokio::test]
    async fn the_existing_entry_comes_with_a_proof_into_the_latest_checkpoint() {
        let (log, storage) = log_with(&ENTRIES).await;
        let state = state(&log, storage);
        let wait = Duration::from_secs(5);
        let entry = state
            .existing_entry(&log, 1, EntryKind::Dsse, ENTRIES[1], wait)
            .await
            .unwrap();
        let checkpoint = log.checkpoint();
        assert_eq!(entry.log_index, 1);
        assert_eq!(entry.canonicalized_body, ENTRIES[1]);
        assert_eq!(entry.kind_version.unwrap().kind, "dsse");
        let proof = entry.inclusion_proof.unwrap();
        assert_eq!(proof.tree_size, 3);
        assert_eq!(proof.root_hash, checkpoint.root.0);
        assert_eq!(
            proof.checkpoint.unwrap().envelope.as_bytes(),
            checkpoint.note
        );
        let hashes: Vec<rekor_tlog::Hash> = proof
            .hashes
            .iter()
            .map(|h| rekor_tlog::Hash(h.as_slice().try_into().unwrap()))
            .collect();
        verify_inclusion(
            &leaf_hash(ENTRIES[1]),
            LeafIndex::new(1),
            TreeSize::new(3),
            &hashes,
            &checkpoint.root,
        )
        .unwrap();
        log.shutdown().await;
    }

    #[tokio::test]
    async fn other_bytes_at_the_index_are_a_409_never_that_entry() {
        let (log, storage) = log_with(&ENTRIES).await;
        let state = state(&log, storage);
        let err = state
            .existing_entry(
                &log,
                1,
                EntryKind::HashedRekord,
                ENTRIES[2],
                Duration::from_secs(5),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::Duplicate { index: 1 }), "{err:?}");
        log.shutdown().await;
    }

    #[tokio::test]
    async fn tiles_that_do_not_prove_the_entry_are_an_internal_error_and_counted() {
        // The checkpoints come from one log, the tiles and bundles from another with other
        // entries: the proof read from them does not lead to the checkpoint's root.
        let (log, _) = log_with(&ENTRIES).await;
        let (other, other_storage) = log_with(&[b"entry zero", b"not one", b"entry two"]).await;
        let state = state(&log, other_storage);
        let err = state
            .existing_entry(
                &log,
                1,
                EntryKind::HashedRekord,
                b"not one",
                Duration::from_secs(5),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::Internal(_)), "{err:?}");
        assert_eq!(state.metrics().inclusion_proof_failures.get(), 1);
        log.shutdown().await;
        other.shutdown().await;
    }

    #[tokio::test]
    async fn an_index_no_checkpoint_covers_waits_then_times_out() {
        let (log, storage) = log_with(&ENTRIES).await;
        let state = state(&log, storage);
        let err = state
            .existing_entry(
                &log,
                3,
                EntryKind::HashedRekord,
                b"entry three",
                Duration::from_millis(50),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::Timeout(_)), "{err:?}");
        log.shutdown().await;
    }
}
