//! The pipeline against the in-memory backend: proofs, checkpoints, dedup, recovery, failures.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test by panicking"
)]

use std::sync::Arc;

use bytes::Bytes;
use rekor_log::{Appended, Log, LogConfig, LogError};
use rekor_note::{KeyName, LogSigner};
use rekor_storage::fault::{FaultyCoordinator, FaultyStorage, Operation};
use rekor_storage::memory::{MemoryCoordinator, MemoryStorage};
use rekor_storage::{Coordinator, SequenceLeaf, Storage};
use rekor_tlog::{FULL_TILE_WIDTH, Hash, LeafIndex, TreeSize, leaf_hash, verify_inclusion};

mod support;
use support::{ORIGIN, origin, signer};

async fn open(storage: Arc<dyn Storage>, coordinator: Arc<dyn Coordinator>) -> Log {
    support::open_with(storage, coordinator, LogConfig::default()).await
}

fn entry(n: usize) -> Bytes {
    Bytes::from(format!("{{\"entry\":{n}}}"))
}

#[tokio::test]
async fn concurrent_adds_get_verified_proofs_under_signed_checkpoints() {
    let storage = Arc::new(MemoryStorage::default());
    let log = open(storage.clone(), Arc::new(MemoryCoordinator::default())).await;
    assert_eq!(log.checkpoint().size, 0, "an empty log publishes size 0");

    let mut tasks = Vec::new();
    for n in 0..300 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move { (n, log.add(entry(n)).await) }));
    }
    let verifier = signer().verifier();
    let mut indices = Vec::new();
    for task in tasks {
        let (n, result) = task.await.unwrap();
        let appended = result.unwrap();
        let checkpoint = verifier
            .verify_checkpoint(&appended.checkpoint.note)
            .unwrap();
        assert_eq!(checkpoint.size, appended.checkpoint.size);
        assert_eq!(checkpoint.root, appended.checkpoint.root.0);
        assert!(appended.index < checkpoint.size);
        assert_eq!(appended.leaf_hash, leaf_hash(&entry(n)));
        verify_inclusion(
            &appended.leaf_hash,
            LeafIndex::new(appended.index),
            TreeSize::new(checkpoint.size),
            &appended.proof,
            &Hash(checkpoint.root),
        )
        .unwrap();
        indices.push(appended.index);
    }
    indices.sort_unstable();
    assert_eq!(
        indices,
        (0..300).collect::<Vec<u64>>(),
        "indices are dense and unique"
    );
    assert_eq!(log.checkpoint().size, 300);

    // The stored bundles hold exactly the entries at their indices.
    let bundle = storage.read("tile/entries/000").await.unwrap();
    let entries = rekor_tlog::decode_bundle(&bundle).unwrap();
    assert_eq!(entries.len(), usize::from(FULL_TILE_WIDTH));
    let bundle = storage.read("tile/entries/001.p/44").await.unwrap();
    assert_eq!(rekor_tlog::decode_bundle(&bundle).unwrap().len(), 44);
    log.shutdown().await;
}

#[tokio::test]
async fn duplicates_get_the_first_index_even_after_reopening() {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::default());
    let coordinator: Arc<dyn Coordinator> = Arc::new(MemoryCoordinator::default());
    let log = open(storage.clone(), coordinator.clone()).await;
    let first = log.add(entry(1)).await.unwrap();
    log.add(entry(2)).await.unwrap();
    match log.add(entry(1)).await {
        Err(LogError::Duplicate { index }) => assert_eq!(index, first.index),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    // Two identical entries in flight at once: one is logged, the other is its duplicate.
    let (a, b) = tokio::join!(log.add(entry(3)), log.add(entry(3)));
    let outcomes = [a, b];
    let logged: Vec<_> = outcomes.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(logged.len(), 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .any(|r| matches!(r, Err(LogError::Duplicate { index }) if *index == logged[0].index))
    );
    log.shutdown().await;

    let reopened = open(storage, coordinator).await;
    match reopened.add(entry(2)).await {
        Err(LogError::Duplicate { index }) => assert_eq!(index, 1),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    assert_eq!(reopened.checkpoint().size, 3);
    reopened.shutdown().await;
}

#[tokio::test]
async fn opening_integrates_entries_sequenced_before_a_crash() {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::default());
    let coordinator: Arc<dyn Coordinator> = Arc::new(MemoryCoordinator::default());
    let log = open(storage.clone(), coordinator.clone()).await;
    for n in 0..10 {
        log.add(entry(n)).await.unwrap();
    }
    log.shutdown().await;
    let before = storage.read_checkpoint().await.unwrap().unwrap();

    // A crash after sequencing, before any tile or checkpoint was written.
    let leaves: Vec<SequenceLeaf> = (10..600)
        .map(|n| SequenceLeaf {
            dedup_key: rekor_log::dedup_key(&entry(n)),
            data: entry(n),
        })
        .collect();
    assert_eq!(coordinator.sequence(&leaves).await.unwrap(), 10);

    let log = open(storage.clone(), coordinator.clone()).await;
    let checkpoint = log.checkpoint();
    assert_eq!(checkpoint.size, 600);
    assert_ne!(storage.read_checkpoint().await.unwrap().unwrap(), before);
    assert_eq!(coordinator.state().await.unwrap().integrated, 600);
    // The recovered tree is the one a log that never crashed would have built.
    let mut expected = rekor_tlog::MemoryTree::new();
    for n in 0..600 {
        expected.append(leaf_hash(&entry(n)));
    }
    assert_eq!(checkpoint.root, expected.root(TreeSize::new(600)).unwrap());
    match log.add(entry(599)).await {
        Err(LogError::Duplicate { index }) => assert_eq!(index, 599),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    log.shutdown().await;
}

#[tokio::test]
async fn a_checkpoint_signed_by_another_key_is_refused() {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::default());
    let other = LogSigner::from_ed25519_seed([9; 32], KeyName::new(ORIGIN).unwrap());
    let note = other
        .sign_checkpoint(&rekor_note::Checkpoint::new(
            origin(),
            0,
            rekor_tlog::empty_root().0,
        ))
        .unwrap();
    storage.write_checkpoint(note.into(), None).await.unwrap();
    let result = Log::open(
        storage,
        Arc::new(MemoryCoordinator::default()),
        signer(),
        origin(),
        LogConfig::default(),
    )
    .await;
    assert!(
        matches!(result, Err(LogError::BadCheckpoint { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_failing_store_answers_unavailable_and_the_log_continues_when_it_heals() {
    let storage = Arc::new(FaultyStorage::new(MemoryStorage::default()));
    let faults = storage.handle();
    let coordinator: Arc<dyn Coordinator> = Arc::new(MemoryCoordinator::default());
    let config = LogConfig {
        retry_backoff: std::time::Duration::from_millis(20),
        ..LogConfig::default()
    };
    let log = Log::open(storage.clone(), coordinator, signer(), origin(), config)
        .await
        .unwrap();
    log.add(entry(0)).await.unwrap();

    faults.fail_always(Operation::WriteObjects);
    faults.fail_always(Operation::WriteCheckpoint);
    let failed = log.add(entry(1)).await;
    assert!(
        matches!(&failed, Err(LogError::Storage(e)) if e.is_transient()),
        "{failed:?}"
    );
    assert_eq!(
        log.checkpoint().size,
        1,
        "nothing is published while failing"
    );
    let refused = log.add(entry(2)).await;
    assert!(matches!(refused, Err(LogError::Storage(_))), "{refused:?}");

    faults.heal_all();
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let healed = log.add(entry(3)).await.unwrap();
    // Entry 1 was sequenced before the failure, so it is logged too, and a retry is a duplicate.
    assert_eq!(healed.index, 2);
    assert_eq!(healed.checkpoint.size, 3);
    assert!(matches!(
        log.add(entry(1)).await,
        Err(LogError::Duplicate { index: 1 })
    ));
    log.shutdown().await;
}

#[tokio::test]
async fn oversized_entries_are_refused() {
    let log = open(
        Arc::new(MemoryStorage::default()),
        Arc::new(MemoryCoordinator::default()),
    )
    .await;
    let big = Bytes::from(vec![b'x'; 65_536]);
    assert!(matches!(
        log.add(big).await,
        Err(LogError::EntryTooLarge { size: 65_536, .. })
    ));
    log.shutdown().await;
}

#[tokio::test]
async fn a_checkpoint_interval_batches_publications_without_losing_waiters() {
    let config = LogConfig {
        checkpoint_interval: std::time::Duration::from_millis(150),
        batch_max_age: std::time::Duration::from_millis(20),
        ..LogConfig::default()
    };
    let log = Log::open(
        Arc::new(MemoryStorage::default()),
        Arc::new(MemoryCoordinator::default()),
        signer(),
        origin(),
        config,
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for n in 0..40 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(5 * n)).await;
            log.add(entry(usize::try_from(n).unwrap())).await
        }));
    }
    let mut sizes = std::collections::BTreeSet::new();
    for task in tasks {
        let appended = task.await.unwrap().unwrap();
        verify_inclusion(
            &appended.leaf_hash,
            LeafIndex::new(appended.index),
            TreeSize::new(appended.checkpoint.size),
            &appended.proof,
            &appended.checkpoint.root,
        )
        .unwrap();
        sizes.insert(appended.checkpoint.size);
    }
    // 40 entries over ~200 ms with publications at least 150 ms apart: few checkpoints.
    assert!(sizes.len() <= 3, "published {sizes:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(log.checkpoint().size, 40);
    log.shutdown().await;
}

#[tokio::test]
async fn shutdown_publishes_what_is_in_flight() {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::default());
    let config = LogConfig {
        checkpoint_interval: std::time::Duration::from_secs(3600),
        ..LogConfig::default()
    };
    let log = Log::open(
        storage.clone(),
        Arc::new(MemoryCoordinator::default()),
        signer(),
        origin(),
        config,
    )
    .await
    .unwrap();
    // Opening published a checkpoint, so the next one is due in an hour, unless shut down.
    let pending: Vec<_> = (0..2)
        .map(|n| {
            let log = log.clone();
            tokio::spawn(async move { log.add(entry(n)).await })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        log.checkpoint().size,
        0,
        "nothing published before the interval"
    );
    log.shutdown().await;
    let mut appended = Vec::new();
    for task in pending {
        appended.push(task.await.unwrap().unwrap());
    }
    assert!(appended.iter().all(|a| a.checkpoint.size == 2));
    let appended = appended.remove(0);
    let stored = storage.read_checkpoint().await.unwrap().unwrap();
    assert_eq!(stored.data, appended.checkpoint.note);
    assert!(matches!(
        log.add(entry(2)).await,
        Err(LogError::ShuttingDown)
    ));
}

/// Polls `condition` until it holds; panics after about five seconds.
async fn wait_until<F: Future<Output = bool>>(what: &str, mut condition: impl FnMut() -> F) {
    for _ in 0..500 {
        if condition().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{what}: not reached in 5 s");
}

/// Awaits a spawned `add`, failing the test if it takes more than five seconds.
async fn answer(task: tokio::task::JoinHandle<Result<Appended, LogError>>) -> Appended {
    match tokio::time::timeout(std::time::Duration::from_secs(5), task).await {
        Ok(joined) => joined.unwrap().unwrap(),
        Err(_) => panic!("the entry was never answered"),
    }
}

fn assert_proven(appended: &Appended) {
    let checkpoint = signer()
        .verifier()
        .verify_checkpoint(&appended.checkpoint.note)
        .unwrap();
    assert_eq!(checkpoint.size, appended.checkpoint.size);
    verify_inclusion(
        &appended.leaf_hash,
        LeafIndex::new(appended.index),
        TreeSize::new(checkpoint.size),
        &appended.proof,
        &Hash(checkpoint.root),
    )
    .unwrap();
}

#[tokio::test]
async fn the_next_batch_is_sequenced_while_a_checkpoint_is_written() {
    let storage = Arc::new(FaultyStorage::new(MemoryStorage::default()));
    let coordinator = Arc::new(FaultyCoordinator::new(MemoryCoordinator::default()));
    let (store_faults, sequencer_faults) = (storage.handle(), coordinator.handle());
    let log = open(storage.clone(), coordinator.clone()).await;

    // Entry 0 waits in its sequencing call while entry 1 arrives: they make two batches.
    sequencer_faults.hold_calls(Operation::Sequence);
    let first = tokio::spawn({
        let log = log.clone();
        async move { log.add(entry(0)).await }
    });
    wait_until("entry 0 is being sequenced", || async {
        sequencer_faults.calls(Operation::Sequence) == 1
    })
    .await;
    let second = tokio::spawn({
        let log = log.clone();
        async move { log.add(entry(1)).await }
    });
    wait_until("entry 1 is queued", || async {
        log.stats().outstanding() == 2
    })
    .await;

    // Entry 0's checkpoint write hangs; entry 1 is sequenced meanwhile.
    let writes_before = store_faults.calls(Operation::WriteCheckpoint);
    store_faults.hold_calls(Operation::WriteCheckpoint);
    sequencer_faults.release(Operation::Sequence);
    wait_until(
        "entry 1 is sequenced during entry 0's checkpoint write",
        || async { coordinator.inner().state().await.unwrap().sequenced == 2 },
    )
    .await;
    assert_eq!(
        store_faults.calls(Operation::WriteCheckpoint),
        writes_before + 1,
        "only entry 0's checkpoint write has started"
    );
    assert!(!first.is_finished(), "entry 0 waits for its checkpoint");

    store_faults.release(Operation::WriteCheckpoint);
    let (first, second) = (answer(first).await, answer(second).await);
    assert_eq!((first.index, first.checkpoint.size), (0, 1));
    assert_eq!((second.index, second.checkpoint.size), (1, 2));
    assert_proven(&first);
    assert_proven(&second);
    log.shutdown().await;
}

#[tokio::test]
async fn a_publication_that_takes_in_the_batch_being_sequenced_answers_it() {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::default());
    let coordinator = Arc::new(FaultyCoordinator::new(MemoryCoordinator::default()));
    let faults = coordinator.handle();
    let config = LogConfig {
        checkpoint_interval: std::time::Duration::from_millis(20),
        ..LogConfig::default()
    };
    let log = support::open_with(storage, coordinator.clone(), config).await;
    assert_proven(&log.add(entry(0)).await.unwrap());

    // Entry 1's sequencing is slow, so entry 2 arrives meanwhile and forms the next batch.
    faults.set_delay(Operation::Sequence, std::time::Duration::from_millis(300));
    let second = tokio::spawn({
        let log = log.clone();
        async move { log.add(entry(1)).await }
    });
    wait_until("entry 1 is being sequenced", || async {
        faults.calls(Operation::Sequence) == 2
    })
    .await;
    // Entry 2's sequencing commits but its reply is held, and the publication of entry 1
    // (with a checkpoint interval, it claims the write and reads the sequenced size) is slowed
    // down enough to find entry 2 committed and take it in from the coordinator.
    faults.set_delay(Operation::Sequence, std::time::Duration::ZERO);
    faults.hold_replies(Operation::Sequence);
    faults.set_delay(Operation::State, std::time::Duration::from_millis(100));
    let third = tokio::spawn({
        let log = log.clone();
        async move { log.add(entry(2)).await }
    });

    let second = answer(second).await;
    assert_eq!(
        (second.index, second.checkpoint.size),
        (1, 3),
        "entry 1's checkpoint covers entry 2, taken in from the coordinator"
    );
    assert_proven(&second);
    assert!(!third.is_finished(), "entry 2's sequencing reply is held");
    faults.heal_all();
    let third = answer(third).await;
    assert_eq!((third.index, third.checkpoint.size), (2, 3));
    assert_proven(&third);

    // The tree goes on from there.
    let fourth = log.add(entry(3)).await.unwrap();
    assert_eq!(fourth.index, 3);
    assert_proven(&fourth);
    assert!(matches!(
        log.add(entry(2)).await,
        Err(LogError::Duplicate { index: 2 })
    ));
    log.shutdown().await;
}

#[tokio::test]
async fn superseded_partials_are_deleted_once_the_log_has_integrated_past_them() {
    let storage = Arc::new(MemoryStorage::default());
    let coordinator: Arc<dyn Coordinator> = Arc::new(MemoryCoordinator::default());
    let log = open(storage.clone(), coordinator.clone()).await;
    // One entry at a time: a checkpoint, and new partials, after every entry.
    for n in 0..300 {
        log.add(entry(n)).await.unwrap();
    }
    let gone = |path: String| {
        let storage = storage.clone();
        async move {
            matches!(
                storage.read(&path).await,
                Err(rekor_storage::Error::NotFound { .. })
            )
        }
    };
    wait_until("the partials of tile 0 are deleted", || {
        gone("tile/0/000.p/255".to_owned())
    })
    .await;
    for width in 1..FULL_TILE_WIDTH {
        assert!(
            gone(format!("tile/0/000.p/{width}")).await,
            "tile/0/000.p/{width}"
        );
        assert!(
            gone(format!("tile/entries/000.p/{width}")).await,
            "tile/entries/000.p/{width}"
        );
    }
    // The full objects, and the partials at the current size and of tiles still filling, stay.
    for kept in [
        "tile/0/000",
        "tile/entries/000",
        "tile/0/001.p/44",
        "tile/entries/001.p/44",
        "tile/1/000.p/1",
    ] {
        storage
            .read(kept)
            .await
            .unwrap_or_else(|e| panic!("{kept}: {e}"));
    }
    assert!(
        !gone("tile/0/001.p/43".to_owned()).await,
        "tile 1 is not full yet"
    );
    log.shutdown().await;

    // A log resumed from this storage proves entries of the deleted partials' range.
    let log = open(storage.clone(), coordinator).await;
    let appended = log.add(entry(300)).await.unwrap();
    assert_eq!(appended.index, 300);
    assert_proven(&appended);
    assert!(matches!(
        log.add(entry(7)).await,
        Err(LogError::Duplicate { index: 7 })
    ));
    log.shutdown().await;
}
