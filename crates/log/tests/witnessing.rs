//! Witnessing in the pipeline, with an in-process witness: cosignatures reach the stored and
//! returned checkpoint, consistency proofs verify, and a missed quorum fails open or closed.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test by panicking"
)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rekor_log::{Log, LogConfig, LogError, WitnessRequest, Witnessed, Witnessing};
use rekor_note::{CosignatureSigner, CosignatureVerifier, KeyName, Note};
use rekor_storage::Storage;
use rekor_storage::memory::{MemoryCoordinator, MemoryStorage};
use rekor_tlog::{Hash, TreeSize, empty_root, verify_consistency};

mod support;

/// Cosigns when `up`, as a witness would: from the size it last cosigned, with a consistency
/// proof it checks against the root it saw then.
#[derive(Debug)]
struct Witness {
    signer: CosignatureSigner,
    up: AtomicBool,
    /// The last cosigned (size, root), and every size it was asked to cosign.
    seen: Mutex<((u64, Hash), Vec<u64>)>,
}

impl Witness {
    fn new(up: bool) -> Arc<Self> {
        Arc::new(Witness {
            signer: CosignatureSigner::from_ed25519_seed(
                [5; 32],
                KeyName::new("witness.test").unwrap(),
            ),
            up: AtomicBool::new(up),
            seen: Mutex::new(((0, empty_root()), Vec::new())),
        })
    }

    fn verifier(&self) -> CosignatureVerifier {
        self.signer.verifier()
    }

    fn asked(&self) -> Vec<u64> {
        self.seen.lock().unwrap().1.clone()
    }
}

#[async_trait]
impl Witnessing for Witness {
    async fn cosign(&self, request: WitnessRequest) -> Witnessed {
        self.seen.lock().unwrap().1.push(request.size);
        if !self.up.load(Ordering::SeqCst) {
            return Witnessed::default();
        }
        let (old, old_root) = self.seen.lock().unwrap().0;
        let proof = request.proofs.proof(old).await.unwrap();
        verify_consistency(
            TreeSize::new(old),
            TreeSize::new(request.size),
            &old_root,
            &request.root,
            &proof,
        )
        .unwrap();
        let note = Note::parse(&request.note).unwrap();
        let line = self.signer.cosign(note.text(), 1_700_000_000).unwrap();
        self.seen.lock().unwrap().0 = (request.size, request.root);
        Witnessed {
            cosignatures: vec![line],
            quorum: true,
        }
    }
}

fn config(witness: &Arc<Witness>, fail_closed: bool) -> LogConfig {
    LogConfig {
        witnesses: Some(Arc::clone(witness) as Arc<dyn Witnessing>),
        witness_fail_closed: fail_closed,
        retry_backoff: Duration::from_millis(20),
        ..LogConfig::default()
    }
}

fn entry(n: usize) -> Bytes {
    Bytes::from(format!("{{\"witnessed\":{n}}}"))
}

/// The cosignatures of `witness` on `note`, verified.
fn cosigned_by(witness: &CosignatureVerifier, note: &[u8]) -> usize {
    let (_, _, cosignatures) = support::signer()
        .verifier()
        .verify_checkpoint_with_cosigners(note, &[witness])
        .unwrap();
    cosignatures.len()
}

async fn stored(storage: &MemoryStorage) -> Bytes {
    storage.read_checkpoint().await.unwrap().unwrap().data
}

#[tokio::test]
async fn every_checkpoint_is_stored_and_returned_cosigned() {
    let storage = Arc::new(MemoryStorage::default());
    let witness = Witness::new(true);
    let log = support::open_with(
        storage.clone(),
        Arc::new(MemoryCoordinator::default()),
        config(&witness, false),
    )
    .await;
    assert_eq!(
        witness.asked(),
        Vec::<u64>::new(),
        "the empty tree is not witnessed"
    );

    for n in 0..3 {
        let appended = log.add(entry(n)).await.unwrap();
        assert_eq!(
            cosigned_by(&witness.verifier(), &appended.checkpoint.note),
            1
        );
    }
    // A batch of concurrent entries: one checkpoint, one request.
    let tasks: Vec<_> = (3..40)
        .map(|n| {
            let log = log.clone();
            tokio::spawn(async move { log.add(entry(n)).await })
        })
        .collect();
    for task in tasks {
        let appended = task.await.unwrap().unwrap();
        assert_eq!(
            cosigned_by(&witness.verifier(), &appended.checkpoint.note),
            1
        );
    }
    let note = stored(&storage).await;
    assert_eq!(note, log.checkpoint().note);
    assert_eq!(cosigned_by(&witness.verifier(), &note), 1);
    assert_eq!(log.checkpoint().size, 40);
    let asked = witness.asked();
    assert_eq!(&asked[..3], [1, 2, 3]);
    assert!(asked.windows(2).all(|w| w[0] < w[1]), "{asked:?}");
    assert_eq!(log.stats().checkpoints_without_quorum(), 0);
    log.shutdown().await;
}

#[tokio::test]
async fn failing_open_publishes_without_the_quorum_and_counts_it() {
    let storage = Arc::new(MemoryStorage::default());
    let witness = Witness::new(false);
    let log = support::open_with(
        storage.clone(),
        Arc::new(MemoryCoordinator::default()),
        config(&witness, false),
    )
    .await;
    let appended = log.add(entry(0)).await.unwrap();
    assert_eq!(appended.checkpoint.size, 1);
    assert_eq!(
        Note::parse(&appended.checkpoint.note)
            .unwrap()
            .signatures()
            .len(),
        1
    );
    assert_eq!(stored(&storage).await, appended.checkpoint.note);
    assert_eq!(log.stats().checkpoints_without_quorum(), 1);
    assert_eq!(log.stats().checkpoints_withheld(), 0);

    // Once the witness is back, it is asked from size 0 and cosigns the next checkpoint.
    witness.up.store(true, Ordering::SeqCst);
    let appended = log.add(entry(1)).await.unwrap();
    assert_eq!(
        cosigned_by(&witness.verifier(), &appended.checkpoint.note),
        1
    );
    log.shutdown().await;
}

#[tokio::test]
async fn failing_closed_withholds_the_checkpoint_until_the_quorum_is_back() {
    let storage = Arc::new(MemoryStorage::default());
    let witness = Witness::new(false);
    let log = support::open_with(
        storage.clone(),
        Arc::new(MemoryCoordinator::default()),
        config(&witness, true),
    )
    .await;
    let empty = stored(&storage).await;

    let error = log.add(entry(0)).await.unwrap_err();
    assert!(
        matches!(
            error,
            LogError::WitnessQuorum {
                size: 1,
                cosignatures: 0
            }
        ),
        "{error:?}"
    );
    // Later entries are refused while the publication keeps failing; nothing is published.
    for n in 1..4 {
        assert!(log.add(entry(n)).await.is_err());
    }
    assert_eq!(stored(&storage).await, empty);
    assert!(log.stats().checkpoints_withheld() >= 1);

    witness.up.store(true, Ordering::SeqCst);
    let appended = retry_add(&log, 100).await;
    // The entry sequenced before the outage is covered too; the refused ones were never logged.
    assert_eq!(appended.checkpoint.size, 2);
    assert_eq!(appended.index, 1);
    assert_eq!(cosigned_by(&witness.verifier(), &stored(&storage).await), 1);
    log.shutdown().await;
}

#[tokio::test]
async fn a_witness_outage_does_not_keep_a_fail_closed_log_from_opening() {
    let storage = Arc::new(MemoryStorage::default());
    let coordinator = Arc::new(MemoryCoordinator::default());
    let witness = Witness::new(false);
    let log =
        support::open_with(storage.clone(), coordinator.clone(), config(&witness, true)).await;
    assert!(log.add(entry(0)).await.is_err());
    log.shutdown().await;

    // Sequenced but unpublished: recovery would publish it, but the quorum is still missing.
    let log = support::open_with(storage.clone(), coordinator, config(&witness, true)).await;
    witness.up.store(true, Ordering::SeqCst);
    let mut published = log.watch_checkpoints();
    tokio::time::timeout(
        Duration::from_secs(10),
        published.wait_for(|checkpoint| checkpoint.size == 1),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(cosigned_by(&witness.verifier(), &stored(&storage).await), 1);
    log.shutdown().await;
}

/// Adds fresh entries until one is accepted, at most `attempts` times, 20 ms apart.
async fn retry_add(log: &Log, attempts: usize) -> rekor_log::Appended {
    for n in 0..attempts {
        match log.add(entry(1000 + n)).await {
            Ok(appended) => return appended,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    panic!("no entry accepted after {attempts} attempts");
}
