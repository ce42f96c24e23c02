//! The pipeline over storage that fails: `rekor_storage::fault` wrappers around the memory and
//! POSIX backends refuse, tear, delay or lose the replies of storage calls while entries are added.
//!
//! What every test checks, through [`audit`]:
//! - while a store refuses writes, every `add` fails and the published checkpoint stays put;
//! - no acknowledged entry is lost: each is at its index in the stored entry bundles, with an
//!   inclusion proof, computed from the stored hash tiles, that verifies against the latest
//!   stored checkpoint;
//! - the log never forks: every checkpoint ever stored or returned is consistent with the latest
//!   (consistency proofs from the stored tiles), and their sizes never decrease;
//! - there is no gap and nothing foreign: the stored bundles hold exactly the tree the checkpoint
//!   signs, each leaf one of the submitted entries, none twice;
//! - reopening the log on the same backend recovers with no manual step.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test by panicking"
)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rekor_log::{Appended, Log, LogConfig, LogError};
use rekor_note::Origin;
use rekor_storage::fault::{FaultHandle, FaultyCoordinator, FaultyStorage, Operation};
use rekor_storage::memory::{MemoryCoordinator, MemoryStorage};
use rekor_storage::posix::PosixBackend;
use rekor_storage::{Coordinator, Object, ObjectVersion, SequenceLeaf, Storage, Versioned};
use rekor_tlog::{
    BundleId, FULL_TILE_WIDTH, Hash, LeafIndex, MemoryTree, Prover, Tile, TileIndex, TileMap,
    TilePath, TileRecorder, TileWidth, TreeSize, consistency_proof, decode_bundle_exact,
    inclusion_proof, leaf_hash, tile_width_at, verify_consistency, verify_inclusion,
};

mod support;
use support::{ORIGIN, signer};

/// The longest any test waits for the pipeline to settle.
const SETTLE: Duration = Duration::from_secs(10);

fn config() -> LogConfig {
    LogConfig {
        batch_max_age: Duration::from_millis(2),
        retry_backoff: Duration::from_millis(10),
        ..LogConfig::default()
    }
}

fn entry(n: u64) -> Bytes {
    Bytes::from(format!("{{\"fault-test-entry\":{n}}}"))
}

/// Storage that remembers every checkpoint the backend accepted, so the audit can check that no
/// two of them fork, including those whose writer was told the write failed.
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn Storage>,
    checkpoints: Arc<Mutex<Vec<Bytes>>>,
}

#[async_trait]
impl Storage for Recording {
    async fn write_objects(&self, objects: Vec<Object>) -> rekor_storage::Result<()> {
        self.inner.write_objects(objects).await
    }
    async fn read(&self, path: &str) -> rekor_storage::Result<Bytes> {
        self.inner.read(path).await
    }
    async fn read_checkpoint(&self) -> rekor_storage::Result<Option<Versioned>> {
        self.inner.read_checkpoint().await
    }
    async fn write_checkpoint(
        &self,
        data: Bytes,
        expected: Option<&ObjectVersion>,
    ) -> rekor_storage::Result<ObjectVersion> {
        let version = self.inner.write_checkpoint(data.clone(), expected).await?;
        self.checkpoints.lock().unwrap().push(data);
        Ok(version)
    }
    async fn delete_partials(&self, paths: Vec<String>) -> rekor_storage::Result<()> {
        self.inner.delete_partials(paths).await
    }
    fn deletes_partials_itself(&self) -> bool {
        self.inner.deletes_partials_itself()
    }
}

/// What the test has seen: the entries it submitted, those acknowledged, and every checkpoint.
#[derive(Debug, Default)]
struct Ledger {
    submitted: HashSet<Bytes>,
    acked: BTreeMap<u64, Bytes>,
    /// Checkpoints returned with acknowledgements: (size, root).
    returned: Vec<(u64, Hash)>,
    /// Every checkpoint the backend accepted, in order (shared with [`Recording`]).
    stored: Arc<Mutex<Vec<Bytes>>>,
}

impl Ledger {
    fn record(&mut self, leaf: &Bytes, appended: &Appended) {
        assert_eq!(appended.leaf_hash, leaf_hash(leaf));
        if let Some(previous) = self.acked.insert(appended.index, leaf.clone()) {
            panic!(
                "index {} acknowledged twice: {previous:?} and {leaf:?}",
                appended.index
            );
        }
        self.returned
            .push((appended.checkpoint.size, appended.checkpoint.root));
    }
}

/// A log over fault-injecting wrappers, and the backends beneath them.
struct Harness {
    log: Log,
    faults: FaultHandle,
    storage: Arc<dyn Storage>,
    coordinator: Arc<dyn Coordinator>,
    ledger: Ledger,
}

impl Harness {
    /// Opens a log over `storage` and `coordinator` (the bare backends), wrapped for faults.
    async fn open(
        storage: Arc<dyn Storage>,
        coordinator: Arc<dyn Coordinator>,
        ledger: Ledger,
    ) -> Harness {
        let faults = FaultHandle::new();
        let log = open_faulty(&storage, &coordinator, &faults, &ledger)
            .await
            .unwrap();
        Harness {
            log,
            faults,
            storage,
            coordinator,
            ledger,
        }
    }

    async fn memory() -> Harness {
        Harness::open(
            Arc::new(MemoryStorage::default()),
            Arc::new(MemoryCoordinator::default()),
            Ledger::default(),
        )
        .await
    }

    /// Adds entries `range` concurrently; returns each entry's number and outcome.
    async fn add_all(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> Vec<(u64, Result<Appended, LogError>)> {
        let mut tasks = Vec::new();
        for n in range {
            self.ledger.submitted.insert(entry(n));
            let log = self.log.clone();
            tasks.push(tokio::spawn(async move { (n, log.add(entry(n)).await) }));
        }
        let mut outcomes = Vec::new();
        for task in tasks {
            let (n, outcome) = task.await.unwrap();
            if let Ok(appended) = &outcome {
                self.ledger.record(&entry(n), appended);
            }
            outcomes.push((n, outcome));
        }
        outcomes
    }

    /// Adds entries that must all be acknowledged.
    async fn add_ok(&mut self, range: std::ops::Range<u64>) {
        for (n, outcome) in self.add_all(range).await {
            if let Err(e) = outcome {
                panic!("entry {n} was refused on a healthy store: {e}");
            }
        }
    }

    /// Adds entries while the store fails: every one must be refused and nothing published.
    async fn add_refused(&mut self, range: std::ops::Range<u64>) {
        let before = self.published_size().await;
        let log_before = self.log.checkpoint().size;
        for (n, outcome) in self.add_all(range).await {
            match outcome {
                Err(LogError::Storage(_)) => {}
                other => {
                    panic!("entry {n} on a failing store: expected a storage error, got {other:?}")
                }
            }
        }
        assert_eq!(
            self.published_size().await,
            before,
            "the stored checkpoint advanced while the store failed"
        );
        assert_eq!(
            self.log.checkpoint().size,
            log_before,
            "the log's checkpoint advanced while the store failed"
        );
    }

    /// The size of the checkpoint in the backend (read past the faults).
    async fn published_size(&self) -> Option<u64> {
        let stored = self.storage.read_checkpoint().await.unwrap()?;
        Some(
            signer()
                .verifier()
                .verify_checkpoint(&stored.data)
                .unwrap()
                .size,
        )
    }

    /// Re-adds every submitted entry that was not acknowledged. Each must now be acknowledged, or
    /// be a duplicate of an entry sequenced before its failure, which must then be in the log at
    /// that index once published. Returns the duplicates' (index, entry).
    async fn retry_unacknowledged(&mut self) -> Vec<(u64, Bytes)> {
        let acked: HashSet<Bytes> = self.ledger.acked.values().cloned().collect();
        let pending: Vec<Bytes> = self
            .ledger
            .submitted
            .iter()
            .filter(|e| !acked.contains(*e))
            .cloned()
            .collect();
        let mut duplicates = Vec::new();
        for leaf in pending {
            match self.log.add(leaf.clone()).await {
                Ok(appended) => self.ledger.record(&leaf, &appended),
                Err(LogError::Duplicate { index }) => duplicates.push((index, leaf)),
                Err(e) => panic!("retrying {leaf:?} on a healed store: {e}"),
            }
        }
        duplicates
    }

    /// Waits until the log has published everything the coordinator sequenced.
    async fn settle(&self) -> u64 {
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            let sequenced = self.coordinator.state().await.unwrap().sequenced;
            if self.log.checkpoint().size == sequenced
                && self.published_size().await == Some(sequenced)
            {
                return sequenced;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the log did not publish the {sequenced} sequenced entries within {SETTLE:?} \
                 (log checkpoint {}, stored {:?})",
                self.log.checkpoint().size,
                self.published_size().await
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Shuts the log down, with its faults as they are (heal them first for a clean stop), and
    /// opens it again on the same backends with no fault planned.
    async fn reopen(self) -> Harness {
        let Harness {
            log,
            faults: _,
            storage,
            coordinator,
            ledger,
        } = self;
        log.shutdown().await;
        drop(log);
        Harness::open(storage, coordinator, ledger).await
    }

    async fn audit(&self) -> u64 {
        audit(self.storage.as_ref(), &self.ledger).await
    }
}

async fn open_faulty(
    storage: &Arc<dyn Storage>,
    coordinator: &Arc<dyn Coordinator>,
    faults: &FaultHandle,
    ledger: &Ledger,
) -> Result<Log, LogError> {
    let recording: Arc<dyn Storage> = Arc::new(Recording {
        inner: Arc::clone(storage),
        checkpoints: Arc::clone(&ledger.stored),
    });
    let storage = Arc::new(FaultyStorage::from_arc(recording, faults.clone()));
    let coordinator = Arc::new(FaultyCoordinator::from_arc(
        Arc::clone(coordinator),
        faults.clone(),
    ));
    Log::open(
        storage,
        coordinator,
        signer(),
        Origin::new(ORIGIN).unwrap(),
        config(),
    )
    .await
}

/// Reads the hash tiles `wanted` names from storage.
async fn fetch_tiles(storage: &dyn Storage, wanted: Vec<rekor_tlog::TileId>) -> TileMap {
    let mut map = TileMap::new();
    for id in wanted {
        let bytes = storage
            .read(&id.path())
            .await
            .unwrap_or_else(|e| panic!("stored tile {}: {e}", id.path()));
        map.insert(Tile::from_bytes(id, &bytes).unwrap());
    }
    map
}

/// Checks the stored log against everything the test saw; returns the stored tree size.
async fn audit(storage: &dyn Storage, ledger: &Ledger) -> u64 {
    let verifier = signer().verifier();
    let stored = storage
        .read_checkpoint()
        .await
        .unwrap()
        .expect("a checkpoint");
    let latest = verifier.verify_checkpoint(&stored.data).unwrap();
    let size = TreeSize::new(latest.size);
    let root = Hash(latest.root);

    // The entry bundles hold exactly `size` leaves, each a distinct submitted entry.
    let full = u64::from(FULL_TILE_WIDTH);
    let mut leaves: Vec<Bytes> = Vec::new();
    for index in 0..latest.size.div_ceil(full) {
        let count = (latest.size - index * full).min(full);
        let width = TileWidth::new(u16::try_from(count).unwrap()).unwrap();
        let id = BundleId::new(TileIndex::new(index), width);
        let bytes = storage
            .read(&id.path())
            .await
            .unwrap_or_else(|e| panic!("bundle {}: {e}", id.path()));
        for leaf in decode_bundle_exact(&bytes, width).unwrap() {
            leaves.push(Bytes::copy_from_slice(leaf));
        }
    }
    assert_eq!(leaves.len(), usize::try_from(latest.size).unwrap());
    let distinct: HashSet<&Bytes> = leaves.iter().collect();
    assert_eq!(distinct.len(), leaves.len(), "an entry is logged twice");
    for leaf in &leaves {
        assert!(ledger.submitted.contains(leaf), "foreign leaf {leaf:?}");
    }

    // The checkpoint signs the tree of those leaves.
    let mut tree = MemoryTree::new();
    for leaf in &leaves {
        tree.append(leaf_hash(leaf));
    }
    assert_eq!(
        tree.root(size).unwrap(),
        root,
        "checkpoint root differs from the bundles' tree"
    );

    // Every acknowledged entry is at its index.
    for (&index, leaf) in &ledger.acked {
        let at = usize::try_from(index).unwrap();
        assert_eq!(
            leaves.get(at),
            Some(leaf),
            "acknowledged entry {index} is lost or moved"
        );
    }

    // Every checkpoint ever stored or returned, in order of storing: sizes never decrease.
    let mut earlier: BTreeSet<(u64, Hash)> = ledger.returned.iter().copied().collect();
    let mut last_stored = 0;
    for note in ledger.stored.lock().unwrap().iter() {
        let checkpoint = verifier.verify_checkpoint(note).unwrap();
        assert!(
            checkpoint.size >= last_stored,
            "stored checkpoint went back from {last_stored} to {}",
            checkpoint.size
        );
        last_stored = checkpoint.size;
        earlier.insert((checkpoint.size, Hash(checkpoint.root)));
    }

    // Proofs from the stored hash tiles: first note which tiles they need, then read those.
    let recorder = TileRecorder::new();
    for &index in ledger.acked.keys() {
        let _ = inclusion_proof(LeafIndex::new(index), size, &recorder);
    }
    for &(old, _) in &earlier {
        let _ = consistency_proof(TreeSize::new(old), size, &recorder);
    }
    let tiles = fetch_tiles(storage, recorder.into_tile_ids()).await;
    // One prover hashes each tile once for all the proofs.
    let mut prover = Prover::new(size, &tiles);
    for (&index, leaf) in &ledger.acked {
        let proof = prover.inclusion_proof(LeafIndex::new(index)).unwrap();
        verify_inclusion(&leaf_hash(leaf), LeafIndex::new(index), size, &proof, &root)
            .unwrap_or_else(|e| panic!("inclusion of acknowledged entry {index}: {e}"));
    }
    for &(old, old_root) in &earlier {
        let proof = prover.consistency_proof(TreeSize::new(old)).unwrap();
        verify_consistency(TreeSize::new(old), size, &old_root, &root, &proof)
            .unwrap_or_else(|e| panic!("checkpoint {old} is not a prefix of {}: {e}", size.get()));
    }
    latest.size
}

#[tokio::test]
async fn while_tile_writes_fail_nothing_is_acknowledged_and_the_log_resumes() {
    let mut h = Harness::memory().await;
    h.add_ok(0..20).await;
    h.faults.fail_always(Operation::WriteObjects);
    h.add_refused(20..40).await;
    // Later adds are refused too, including after the retry backoff has passed.
    tokio::time::sleep(Duration::from_millis(20)).await;
    h.add_refused(40..45).await;
    assert!(h.faults.injected(Operation::WriteObjects) >= 1);

    h.faults.heal_all();
    let sequenced = h.settle().await;
    assert!(sequenced >= 20);
    h.add_ok(100..130).await;
    let duplicates = h.retry_unacknowledged().await;
    let size = h.settle().await;
    assert_eq!(h.audit().await, size);
    // An entry refused after being sequenced is logged at the index its duplicate names.
    assert!(
        !duplicates.is_empty(),
        "the first failing batch was sequenced before the failure"
    );

    let h = h.reopen().await;
    assert_eq!(
        h.log.checkpoint().size,
        size,
        "reopening lost or invented entries"
    );
    assert_eq!(h.audit().await, size);
    h.log.shutdown().await;
}

#[tokio::test]
async fn while_checkpoint_writes_fail_nothing_is_acknowledged_and_the_log_resumes() {
    let mut h = Harness::memory().await;
    h.add_ok(0..5).await;
    h.faults.fail_always(Operation::WriteCheckpoint);
    h.add_refused(5..30).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    h.add_refused(30..35).await;

    h.faults.heal(Operation::WriteCheckpoint);
    h.settle().await;
    h.add_ok(35..60).await;
    h.retry_unacknowledged().await;
    let size = h.settle().await;
    assert_eq!(h.audit().await, size);

    let mut h = h.reopen().await;
    h.add_ok(60..70).await;
    let size = h.settle().await;
    assert_eq!(h.audit().await, size);
    h.log.shutdown().await;
}

#[tokio::test]
async fn torn_tile_writes_never_acknowledge_an_entry() {
    let mut h = Harness::memory().await;
    h.add_ok(0..3).await;
    let mut next = 1000;
    // Tear after 0, 1, 2, ... objects: the batches cross bundle and tile boundaries as the log
    // grows, so the torn prefix is sometimes a bundle, sometimes a tile.
    for (tears, written) in (1u64..).zip(0..6) {
        h.faults.tear_next_write(written);
        let outcomes = h.add_all(next..next + 40).await;
        next += 40;
        // The torn call fails the batch it carried. Batches that come after the retry backoff
        // may be acknowledged (the tear was one call); the audit checks that each one is logged.
        assert!(
            outcomes.iter().any(|(_, o)| o.is_err()),
            "no entry saw the torn write"
        );
        assert_eq!(h.faults.injected(Operation::WriteObjects), tears);
        h.settle().await;
        h.add_ok(next..next + 300).await;
        next += 300;
        assert_eq!(h.audit().await, h.settle().await);
    }
    h.retry_unacknowledged().await;
    let size = h.settle().await;
    assert_eq!(h.audit().await, size);

    // A tear, then the store fails until the process stops: the next process integrates and
    // publishes what was torn, with no manual step.
    let before = h.published_size().await;
    h.faults.tear_next_write(1);
    let outcomes = h.add_all(next..next + 10).await;
    h.faults.fail_always(Operation::WriteObjects);
    assert!(outcomes.iter().any(|(_, o)| o.is_err()));
    let h = h.reopen().await;
    let size = h.settle().await;
    assert!(Some(size) > before, "the torn batch was not recovered");
    assert_eq!(h.audit().await, size);
    h.log.shutdown().await;
}

#[tokio::test]
async fn refused_sequencing_leaves_no_gap() {
    let mut h = Harness::memory().await;
    h.add_ok(0..10).await;
    h.faults.fail_always(Operation::Sequence);
    h.add_refused(10..30).await;
    assert_eq!(
        h.coordinator.state().await.unwrap().sequenced,
        10,
        "a refused sequence call assigned indices"
    );
    h.faults.heal_all();
    h.faults.fail_next(Operation::Sequence, 3);
    h.settle().await;
    // Some batches fail, later ones pass; indices stay dense.
    for round in 0..6 {
        h.add_all(100 + round * 10..110 + round * 10).await;
    }
    let duplicates = h.retry_unacknowledged().await;
    assert!(
        duplicates.is_empty(),
        "a refused sequence call recorded dedup keys: {duplicates:?}"
    );
    let size = h.settle().await;
    assert_eq!(size, u64::try_from(h.ledger.acked.len()).unwrap());
    let indices: Vec<u64> = h.ledger.acked.keys().copied().collect();
    assert_eq!(indices, (0..size).collect::<Vec<_>>(), "gap in the indices");
    assert_eq!(h.audit().await, size);
    h.log.shutdown().await;
}

#[tokio::test]
async fn slow_and_failing_storage_with_many_waiters_acknowledges_only_published_entries() {
    let mut h = Harness::memory().await;
    h.add_ok(0..5).await;
    // Slow checkpoint writes make batches pile up behind one publication, then fail it.
    h.faults
        .set_delay(Operation::WriteCheckpoint, Duration::from_millis(30));
    h.faults.fail_next(Operation::WriteCheckpoint, 2);
    let outcomes = h.add_all(5..205).await;
    let refused = outcomes.iter().filter(|(_, o)| o.is_err()).count();
    assert!(refused > 0, "no add saw the failure");
    h.faults.heal_all();
    h.settle().await;
    h.retry_unacknowledged().await;
    let size = h.settle().await;
    assert_eq!(h.audit().await, size);
    assert_eq!(
        size, 205,
        "every entry is logged once, acknowledged or found as a duplicate"
    );
    h.log.shutdown().await;
}

#[tokio::test]
async fn a_failed_lookup_refuses_the_add_and_sequences_nothing() {
    let mut h = Harness::memory().await;
    h.add_ok(0..3).await;
    h.faults.fail_next(Operation::Lookup, 1);
    let outcome = h.log.add(entry(3)).await;
    h.ledger.submitted.insert(entry(3));
    assert!(matches!(outcome, Err(LogError::Storage(_))), "{outcome:?}");
    assert_eq!(h.coordinator.state().await.unwrap().sequenced, 3);
    h.add_ok(4..6).await;
    h.retry_unacknowledged().await;
    assert_eq!(h.audit().await, 6);
    h.log.shutdown().await;
}

#[tokio::test]
async fn opening_on_failing_storage_fails_cleanly_and_recovers_once_healed() {
    // A log that crashed after sequencing entries it never integrated.
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::default());
    let coordinator: Arc<dyn Coordinator> = Arc::new(MemoryCoordinator::default());
    let mut h = Harness::open(
        Arc::clone(&storage),
        Arc::clone(&coordinator),
        Ledger::default(),
    )
    .await;
    h.add_ok(0..300).await;
    h.log.shutdown().await;
    let ledger = std::mem::take(&mut h.ledger);
    drop(h);
    let leaves: Vec<SequenceLeaf> = (300..700)
        .map(|n| SequenceLeaf {
            dedup_key: rekor_log::dedup_key(&entry(n)),
            data: entry(n),
        })
        .collect();
    coordinator.sequence(&leaves).await.unwrap();
    let mut ledger = ledger;
    ledger.submitted.extend((300..700).map(entry));

    for operation in [
        Operation::State,
        Operation::ReadCheckpoint,
        Operation::Read,
        Operation::ReadSequenced,
        Operation::WriteObjects,
        Operation::WriteCheckpoint,
    ] {
        let faults = FaultHandle::new();
        faults.fail_always(operation);
        let opened = open_faulty(&storage, &coordinator, &faults, &ledger).await;
        match opened {
            Err(LogError::Storage(e)) => {
                assert!(rekor_storage::fault::is_injected(&e), "{operation}: {e}")
            }
            Err(e) => panic!("{operation}: expected a storage error, got {e}"),
            Ok(_) => panic!("{operation}: the log opened on failing storage"),
        }
        assert!(
            faults.injected(operation) > 0,
            "{operation} was never called"
        );
        // Nothing was published by the failed attempt.
        assert_eq!(audit(storage.as_ref(), &ledger).await, 300);
    }
    // A torn write during recovery fails the open too.
    let faults = FaultHandle::new();
    faults.tear_next_write(1);
    assert!(
        open_faulty(&storage, &coordinator, &faults, &ledger)
            .await
            .is_err()
    );

    let mut h = Harness::open(storage, coordinator, ledger).await;
    assert_eq!(h.log.checkpoint().size, 700);
    h.add_ok(700..710).await;
    assert_eq!(h.audit().await, 710);
    h.log.shutdown().await;
}

#[tokio::test]
async fn a_lost_sequence_reply_does_not_fork_and_reopening_logs_the_entries() {
    let mut h = Harness::memory().await;
    h.add_ok(0..10).await;
    // The coordinator commits the batch, but the pipeline hears a failure.
    h.faults.lose_next_replies(Operation::Sequence, 1);
    let outcomes = h.add_all(10..11).await;
    assert!(outcomes.iter().all(|(_, o)| o.is_err()), "{outcomes:?}");
    assert_eq!(h.coordinator.state().await.unwrap().sequenced, 11);
    // Whatever the live log does next, it must not acknowledge anything that is not logged,
    // nor sign a checkpoint that skips or rewrites index 10.
    for (n, outcome) in h.add_all(11..20).await {
        if let Ok(appended) = outcome {
            assert!(
                appended.index >= 11,
                "entry {n} took the lost batch's index"
            );
        }
    }
    assert_eq!(h.audit().await, h.published_size().await.unwrap());

    let mut h = h.reopen().await;
    let size = h.settle().await;
    assert_eq!(h.audit().await, size);
    // The entry whose reply was lost is in the log, and its retry says where.
    match h.log.add(entry(10)).await {
        Err(LogError::Duplicate { index }) => assert_eq!(index, 10),
        other => panic!("expected entry 10 to be a duplicate, got {other:?}"),
    }
    h.retry_unacknowledged().await;
    h.add_ok(20..30).await;
    let size = h.settle().await;
    assert_eq!(h.audit().await, size);
    h.log.shutdown().await;
}

#[tokio::test]

async fn a_lost_sequence_reply_heals_without_a_restart() {
    let mut h = Harness::memory().await;
    h.add_ok(0..10).await;
    h.faults.lose_next_replies(Operation::Sequence, 1);
    assert!(h.add_all(10..11).await[0].1.is_err());
    eventually_accepts(&mut h, 100).await;
    let size = h.settle().await;
    assert_eq!(h.audit().await, size);
    h.log.shutdown().await;
}

#[tokio::test]
async fn a_lost_checkpoint_reply_does_not_fork_and_reopening_recovers() {
    let mut h = Harness::memory().await;
    h.add_ok(0..10).await;
    // The checkpoint is stored, but the publisher hears a failure.
    h.faults.lose_next_replies(Operation::WriteCheckpoint, 1);
    let outcomes = h.add_all(10..15).await;
    assert!(outcomes.iter().all(|(_, o)| o.is_err()), "{outcomes:?}");
    for (_, outcome) in h.add_all(15..25).await {
        if let Ok(appended) = outcome {
            assert!(appended.index >= 10);
        }
    }
    assert_eq!(h.audit().await, h.published_size().await.unwrap());

    let mut h = h.reopen().await;
    h.retry_unacknowledged().await;
    h.add_ok(25..35).await;
    let size = h.settle().await;
    assert_eq!(h.audit().await, size);
    h.log.shutdown().await;
}

#[tokio::test]
async fn a_lost_checkpoint_reply_heals_without_a_restart() {
    let mut h = Harness::memory().await;
    h.add_ok(0..10).await;
    h.faults.lose_next_replies(Operation::WriteCheckpoint, 1);
    assert!(h.add_all(10..11).await[0].1.is_err());
    eventually_accepts(&mut h, 100).await;
    let size = h.settle().await;
    assert_eq!(h.audit().await, size);
    h.log.shutdown().await;
}

#[tokio::test]
async fn a_lost_mark_integrated_reply_is_harmless() {
    let mut h = Harness::memory().await;
    h.add_ok(0..10).await;
    h.faults.lose_next_replies(Operation::MarkIntegrated, 1);
    h.add_ok(10..20).await;
    h.add_ok(20..30).await;
    let size = h.settle().await;
    assert_eq!(h.audit().await, size);
    let h = h.reopen().await;
    assert_eq!(h.audit().await, 30);
    h.log.shutdown().await;
}

#[tokio::test]
async fn a_lost_mark_integrated_reply_does_not_stall_integration_bookkeeping() {
    let mut h = Harness::memory().await;
    h.add_ok(0..10).await;
    h.faults.lose_next_replies(Operation::MarkIntegrated, 1);
    h.add_ok(10..20).await;
    h.add_ok(20..30).await;
    h.settle().await;
    let state = h.coordinator.state().await.unwrap();
    assert_eq!(state.integrated, 30, "{state:?}");
    h.log.shutdown().await;
}

/// Adds fresh entries one at a time until one is acknowledged, within `tries` attempts 10 ms apart.
async fn eventually_accepts(h: &mut Harness, tries: u64) {
    for n in 0..tries {
        let outcomes = h.add_all(5000 + n..5001 + n).await;
        if outcomes[0].1.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the log accepted nothing within {tries} attempts after the fault");
}

/// A deterministic mix of faults, rounds of concurrent adds, and restarts.
#[tokio::test]
async fn a_seeded_mix_of_faults_and_restarts_keeps_every_invariant() {
    let mut h = Harness::memory().await;
    let mut rng: u64 = 0x5eed_f00d;
    let mut next_rng = move || {
        // xorshift64: a fixed sequence, so a failure reproduces.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut next = 0;
    for round in 0..24 {
        let pick = next_rng() % 7;
        match pick {
            0 => h
                .faults
                .fail_next(Operation::WriteObjects, 1 + next_rng() % 3),
            1 => h
                .faults
                .fail_next(Operation::WriteCheckpoint, 1 + next_rng() % 3),
            2 => h.faults.fail_next(Operation::Sequence, 1 + next_rng() % 3),
            3 => h
                .faults
                .tear_next_write(usize::try_from(next_rng() % 4).unwrap()),
            4 => h.faults.fail_next(Operation::Lookup, 1),
            5 => h.faults.set_delay(
                Operation::WriteObjects,
                Duration::from_millis(next_rng() % 8),
            ),
            _ => {}
        }
        let count = 1 + next_rng() % 60;
        h.add_all(next..next + count).await;
        next += count;
        h.faults.heal_all();
        if round % 6 == 5 {
            h = h.reopen().await;
        }
        h.settle().await;
        h.audit().await;
    }
    h.retry_unacknowledged().await;
    let size = h.settle().await;
    assert_eq!(h.audit().await, size);
    assert_eq!(
        size,
        u64::try_from(h.ledger.submitted.len()).unwrap(),
        "every entry is logged once, acknowledged or found as a duplicate"
    );
    h.log.shutdown().await;
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "rekor-log-faults-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn posix(dir: &TempDir, ledger: Ledger) -> Harness {
    let backend = PosixBackend::open(&dir.0).unwrap();
    Harness::open(backend.storage, backend.coordinator, ledger).await
}

/// Stops a log with its faults as they are and drops every handle on the backend (releasing the
/// POSIX directory lock); returns the ledger.
async fn close(h: Harness) -> Ledger {
    h.log.shutdown().await;
    h.ledger
}

#[tokio::test]
async fn posix_storage_failures_tears_and_restarts_keep_every_invariant() {
    let dir = TempDir::new();
    let mut h = posix(&dir, Ledger::default()).await;
    h.add_ok(0..40).await;

    h.faults.fail_always(Operation::WriteObjects);
    h.add_refused(40..60).await;
    h.faults.heal_all();
    h.settle().await;

    h.faults.tear_next_write(1);
    let outcomes = h.add_all(60..80).await;
    assert!(outcomes.iter().any(|(_, o)| o.is_err()));
    h.settle().await;
    h.add_ok(80..300).await;
    assert_eq!(h.audit().await, h.settle().await);

    // A tear, then failing writes until the process stops: the next one finishes what was torn.
    let before = h.published_size().await;
    h.faults.tear_next_write(2);
    h.add_all(300..320).await;
    h.faults.fail_always(Operation::WriteObjects);
    let ledger = close(h).await;
    let mut h = posix(&dir, ledger).await;
    let size = h.settle().await;
    assert!(Some(size) > before, "the torn batch was not recovered");
    assert_eq!(h.audit().await, size);

    h.retry_unacknowledged().await;
    h.add_ok(320..330).await;
    let size = h.settle().await;
    assert_eq!(h.audit().await, size);
    let ledger = close(h).await;

    // And once more from a fresh process, with no manual step.
    let h = posix(&dir, ledger).await;
    assert_eq!(u64::try_from(h.ledger.submitted.len()).unwrap(), size);
    assert_eq!(h.log.checkpoint().size, size);
    assert_eq!(h.audit().await, size);
    close(h).await;
}

/// Whether the stored object at `path` (a tile or bundle) belongs to a tree larger than
/// `durable`: its tile is absent, or narrower, in the tree of `durable` leaves.
fn written_beyond(path: &str, durable: u64) -> bool {
    let (tile, width) = match TilePath::parse(path).unwrap() {
        TilePath::Hash(tile) => (tile, tile.width),
        TilePath::Entries(bundle) => (bundle.hash_tile(), bundle.width),
    };
    tile_width_at(tile.level, tile.index, TreeSize::new(durable))
        .is_none_or(|at_durable| width.get() > at_durable.get())
}

/// Truncates or deletes, alternately, every stored object covering entries beyond `durable`;
/// returns how many.
fn damage_objects_beyond(root: &std::path::Path, durable: u64) -> usize {
    let mut damaged = 0;
    let mut stack = vec![root.join("tile")];
    while let Some(dir) = stack.pop() {
        for item in std::fs::read_dir(&dir).unwrap() {
            let path = item.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            if written_beyond(&relative, durable) {
                if damaged % 2 == 0 {
                    std::fs::File::options()
                        .write(true)
                        .open(&path)
                        .unwrap()
                        .set_len(0)
                        .unwrap();
                } else {
                    std::fs::remove_file(&path).unwrap();
                }
                damaged += 1;
            }
        }
    }
    damaged
}

#[test]
fn objects_belong_to_the_trees_from_their_last_leaf_on() {
    for (path, end) in [
        ("tile/0/000.p/7", 7),
        ("tile/entries/001", 512),
        ("tile/1/000.p/2", 512),
        ("tile/0/x001/002.p/3", 1002 * u64::from(FULL_TILE_WIDTH) + 3),
    ] {
        assert!(written_beyond(path, end - 1), "{path} at {}", end - 1);
        assert!(!written_beyond(path, end), "{path} at {end}");
    }
}

/// A power loss can lose or truncate tiles and bundles written since the last background sync
/// (POSIX fsyncs them lazily). The leaves they came from are kept until that sync, so reopening
/// rewrites every damaged object and the log audits clean.
#[tokio::test]
async fn posix_objects_lost_in_a_power_loss_are_rewritten_on_restart() {
    let dir = TempDir::new();
    // No background sync during the test: only the explicit one below.
    let never = Duration::from_secs(3600);
    let open = || PosixBackend::open_with_sync_interval(&dir.0, never).unwrap();

    let backend = open();
    let mut h = Harness::open(
        Arc::clone(&backend.storage) as _,
        Arc::clone(&backend.coordinator) as _,
        Ledger::default(),
    )
    .await;
    h.add_ok(0..300).await;
    h.settle().await;
    backend.sync().await.unwrap();
    h.add_ok(300..700).await;
    let size = h.settle().await;
    let ledger = close(h).await;
    drop(backend);

    // The sync made the first 300 durable; everything written after it is fair game.
    let backend = open();
    let durable = backend.coordinator.state().await.unwrap().integrated;
    assert_eq!(durable, 300, "the explicit sync was not persisted");
    drop(backend);
    let damaged = damage_objects_beyond(&dir.0, durable);
    assert!(damaged >= 4, "only {damaged} objects to damage");

    let backend = open();
    let h = Harness::open(
        Arc::clone(&backend.storage) as _,
        Arc::clone(&backend.coordinator) as _,
        ledger,
    )
    .await;
    assert_eq!(h.settle().await, size);
    assert_eq!(h.audit().await, size);
    // Once synced, the partial objects of the now full tiles are gone (C2SP lets a log delete
    // them), and the next start finds nothing to repair.
    let ledger = close(h).await;
    backend.sync().await.unwrap();
    assert!(!dir.0.join("tile/entries/000.p").exists());
    assert!(!dir.0.join("tile/0/001.p").exists());
    drop(backend);
    let backend = open();
    assert_eq!(backend.coordinator.state().await.unwrap().integrated, size);
    let h = Harness::open(backend.storage.clone(), backend.coordinator.clone(), ledger).await;
    assert_eq!(h.audit().await, size);
    close(h).await;
}
