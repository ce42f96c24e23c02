//! The conformance suite every backend must pass. Each backend's tests call these functions on a
//! fresh, empty instance; they panic on the first broken contract.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test suite: a failed assertion is its output"
)]

use bytes::Bytes;

use crate::{CHECKPOINT_PATH, Coordinator, Error, Object, SequenceLeaf, SequenceState, Storage};

/// Checks the [`Storage`] contract on an empty store.
pub async fn storage_suite(storage: &dyn Storage) {
    // Missing objects are NotFound, and there is no checkpoint yet.
    assert!(matches!(
        storage.read("tile/0/000").await,
        Err(Error::NotFound { .. })
    ));
    assert!(storage.read_checkpoint().await.unwrap().is_none());

    // Create-only writes, idempotent for identical bytes.
    let tile = Object::new("tile/0/x001/234.p/2", vec![7u8; 64]);
    let bundle = Object::new("tile/entries/000.p/1", vec![0u8, 1, 42]);
    storage
        .write_objects(vec![tile.clone(), bundle.clone()])
        .await
        .unwrap();
    assert_eq!(storage.read(&tile.path).await.unwrap(), tile.data);
    assert_eq!(storage.read(&bundle.path).await.unwrap(), bundle.data);
    storage.write_objects(vec![tile.clone()]).await.unwrap();
    let conflicting = Object::new(tile.path.clone(), vec![8u8; 64]);
    assert!(matches!(
        storage.write_objects(vec![conflicting]).await,
        Err(Error::AlreadyExists { .. })
    ));
    assert_eq!(storage.read(&tile.path).await.unwrap(), tile.data);
    storage.write_objects(Vec::new()).await.unwrap();

    // Several reads at once: one answer per path, in order, each as `read` answers it.
    let many = storage
        .read_many(vec![
            bundle.path.clone(),
            "tile/0/x009/999".to_string(),
            tile.path.clone(),
        ])
        .await;
    assert_eq!(many.len(), 3);
    assert_eq!(many[0].as_ref().unwrap(), &bundle.data);
    assert!(matches!(many[1], Err(Error::NotFound { .. })));
    assert_eq!(many[2].as_ref().unwrap(), &tile.data);
    assert!(storage.read_many(Vec::new()).await.is_empty());

    // Entries of bundles: the wanted ones, in order; fewer when the bundle ends first (here
    // inside its third entry); NotFound for a missing bundle.
    let three = Object::new(
        "tile/entries/001.p/3",
        vec![0u8, 2, b'a', b'b', 0, 0, 0, 3, b'x', b'y', b'z', 0, 9, b'!'],
    );
    storage.write_objects(vec![three.clone()]).await.unwrap();
    let read = |path: &str, positions: Vec<usize>| crate::BundleRead {
        path: path.to_string(),
        positions,
    };
    let answers = storage
        .read_bundle_entries(vec![
            read(&three.path, vec![0, 2]),
            read(&three.path, vec![1]),
            read("tile/entries/002", vec![0]),
            read(&three.path, vec![2, 3]),
            read(&three.path, vec![]),
        ])
        .await;
    assert_eq!(answers.len(), 5);
    assert_eq!(
        answers[0].as_ref().unwrap(),
        &[Bytes::from_static(b"ab"), Bytes::from_static(b"xyz")]
    );
    assert_eq!(answers[1].as_ref().unwrap(), &[Bytes::new()]);
    assert!(matches!(answers[2], Err(Error::NotFound { .. })));
    assert_eq!(
        answers[3].as_ref().unwrap(),
        &[Bytes::from_static(b"xyz")],
        "the fourth entry is cut short"
    );
    assert!(answers[4].as_ref().unwrap().is_empty());
    // Many reads at once (a backend may split them): still one answer each, in order.
    let expected = [&b"ab"[..], b"", b"xyz"];
    let many = (0..40).map(|i| read(&three.path, vec![i % 3])).collect();
    let answers = storage.read_bundle_entries(many).await;
    assert_eq!(answers.len(), 40);
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(
            answer.as_ref().unwrap(),
            &[Bytes::from_static(expected[i % 3])]
        );
    }

    // Superseded partials can be deleted, missing ones too; nothing else can.
    let full = Object::new("tile/entries/000", vec![0u8, 1, 42, 0, 1, 43]);
    storage.write_objects(vec![full.clone()]).await.unwrap();
    for refused in [full.path.as_str(), "checkpoint", "tile/entries/000.p/256"] {
        assert!(
            matches!(
                storage
                    .delete_partials(vec![bundle.path.clone(), refused.to_owned()])
                    .await,
                Err(Error::InvalidPath { .. })
            ),
            "deleting {refused} was accepted"
        );
    }
    assert_eq!(
        storage.read(&bundle.path).await.unwrap(),
        bundle.data,
        "a refused call deletes nothing"
    );
    storage
        .delete_partials(vec![bundle.path.clone(), "tile/entries/001.p/3".to_owned()])
        .await
        .unwrap();
    assert!(matches!(
        storage.read(&bundle.path).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(storage.read(&full.path).await.unwrap(), full.data);
    storage
        .delete_partials(vec![bundle.path.clone()])
        .await
        .unwrap();
    storage.delete_partials(Vec::new()).await.unwrap();

    // Paths that escape the root or name private state are refused.
    for bad in ["../escape", ".rekor/lock", "/etc/passwd", "tile//0"] {
        assert!(
            matches!(
                storage
                    .write_objects(vec![Object::new(bad, vec![1u8])])
                    .await,
                Err(Error::InvalidPath { .. })
            ),
            "write {bad}"
        );
        assert!(
            matches!(storage.read(bad).await, Err(Error::InvalidPath { .. })),
            "read {bad}"
        );
    }

    // The checkpoint is swapped by version.
    let first = storage
        .write_checkpoint(Bytes::from_static(b"one\n"), None)
        .await
        .unwrap();
    assert!(matches!(
        storage
            .write_checkpoint(Bytes::from_static(b"stale\n"), None)
            .await,
        Err(Error::Precondition { .. })
    ));
    let read = storage.read_checkpoint().await.unwrap().unwrap();
    assert_eq!(read.data, Bytes::from_static(b"one\n"));
    assert_eq!(read.version, first);
    assert_eq!(
        storage.read(CHECKPOINT_PATH).await.unwrap(),
        Bytes::from_static(b"one\n")
    );
    let second = storage
        .write_checkpoint(Bytes::from_static(b"two\n"), Some(&first))
        .await
        .unwrap();
    assert_ne!(first, second);
    assert!(matches!(
        storage
            .write_checkpoint(Bytes::from_static(b"lost race\n"), Some(&first))
            .await,
        Err(Error::Precondition { .. })
    ));
    let read = storage.read_checkpoint().await.unwrap().unwrap();
    assert_eq!(read.data, Bytes::from_static(b"two\n"));
    assert_eq!(read.version, second);
}

fn leaf(n: u8) -> SequenceLeaf {
    let data = vec![n; usize::from(n) + 1];
    SequenceLeaf {
        dedup_key: crate::dedup_key(&data),
        data: Bytes::from(data),
    }
}

/// Checks the [`Coordinator`] contract on an empty coordinator.
pub async fn coordinator_suite(coordinator: &dyn Coordinator) {
    assert_eq!(coordinator.state().await.unwrap(), SequenceState::default());
    assert_eq!(coordinator.sequence(&[leaf(1), leaf(2)]).await.unwrap(), 0);
    assert_eq!(coordinator.sequence(&[leaf(3)]).await.unwrap(), 2);
    assert_eq!(coordinator.sequence(&[]).await.unwrap(), 3);
    assert_eq!(
        coordinator.state().await.unwrap(),
        SequenceState {
            integrated: 0,
            sequenced: 3
        }
    );
    assert_eq!(
        coordinator
            .lookup(&[leaf(1).dedup_key, leaf(9).dedup_key, leaf(3).dedup_key])
            .await
            .unwrap(),
        vec![Some(0), None, Some(2)]
    );
    let leaves = coordinator.read_sequenced(1, 3).await.unwrap();
    assert_eq!(leaves, vec![leaf(2).data, leaf(3).data]);

    // mark_integrated is a compare-and-swap on the integrated size.
    assert!(matches!(
        coordinator.mark_integrated(1, 2).await,
        Err(Error::Precondition { .. })
    ));
    assert!(matches!(
        coordinator.mark_integrated(0, 4).await,
        Err(Error::Precondition { .. })
    ));
    coordinator.mark_integrated(0, 2).await.unwrap();
    assert_eq!(
        coordinator.state().await.unwrap(),
        SequenceState {
            integrated: 2,
            sequenced: 3
        }
    );
    assert!(matches!(
        coordinator.read_sequenced(1, 3).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(
        coordinator.read_sequenced(2, 3).await.unwrap(),
        vec![leaf(3).data]
    );
    // The dedup index outlives integration.
    assert_eq!(
        coordinator.lookup(&[leaf(2).dedup_key]).await.unwrap(),
        vec![Some(1)]
    );

    // A freeze stops sequencing for good at the sequenced size, and nothing else.
    assert_eq!(coordinator.frozen().await.unwrap(), None);
    assert_eq!(coordinator.freeze().await.unwrap(), 3);
    assert_eq!(coordinator.frozen().await.unwrap(), Some(3));
    assert!(matches!(
        coordinator.sequence(&[leaf(4)]).await,
        Err(Error::Frozen { size: 3 })
    ));
    assert_eq!(
        coordinator.lookup(&[leaf(4).dedup_key]).await.unwrap(),
        vec![None]
    );
    assert_eq!(coordinator.freeze().await.unwrap(), 3, "a second freeze");
    // What was sequenced before the freeze is still integrated.
    coordinator.mark_integrated(2, 3).await.unwrap();
    assert_eq!(
        coordinator.state().await.unwrap(),
        SequenceState {
            integrated: 3,
            sequenced: 3
        }
    );
}

/// Checks [`Coordinator::claim_publication`] for a backend shared by several frontends: one claim
/// per interval, across every handle on the same state (pass two handles, or the same one twice).
pub async fn publication_claim_suite(first: &dyn Coordinator, second: &dyn Coordinator) {
    use std::time::Duration;
    let interval = Duration::from_millis(1500);
    assert!(first.claim_publication(interval).await.unwrap());
    assert!(!first.claim_publication(interval).await.unwrap());
    assert!(!second.claim_publication(interval).await.unwrap());
    tokio::time::sleep(interval + Duration::from_millis(300)).await;
    assert!(second.claim_publication(interval).await.unwrap());
    assert!(!first.claim_publication(interval).await.unwrap());
    // A zero interval always grants.
    assert!(first.claim_publication(Duration::ZERO).await.unwrap());
    assert!(second.claim_publication(Duration::ZERO).await.unwrap());
}

/// Checks the [`crate::SearchIndex`] contract on an empty index. `second` is another handle on
/// the same index (or the same one again): its indexer races the first.
pub async fn search_index_suite(index: &dyn crate::SearchIndex, second: &dyn crate::SearchIndex) {
    let key = |b: u8| [b; 32];
    assert_eq!(index.indexed_size().await.unwrap(), 0);
    assert!(
        index
            .lookup(key(1), 0, u64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Entries 0..4: entry 0 and 2 carry key 1; 1 carries keys 1 and 2; 3 carries nothing.
    let first = vec![(key(1), 0), (key(1), 1), (key(2), 1), (key(1), 2)];
    index.append(0, 4, first.clone()).await.unwrap();
    assert_eq!(second.indexed_size().await.unwrap(), 4);
    assert_eq!(
        second.lookup(key(1), 0, u64::MAX, 10).await.unwrap(),
        vec![0, 1, 2]
    );
    assert_eq!(index.lookup(key(2), 0, 4, 10).await.unwrap(), vec![1]);
    assert!(index.lookup(key(3), 0, 4, 10).await.unwrap().is_empty());
    // Pages: start, below and limit.
    assert_eq!(index.lookup(key(1), 1, 4, 10).await.unwrap(), vec![1, 2]);
    assert_eq!(index.lookup(key(1), 0, 2, 10).await.unwrap(), vec![0, 1]);
    assert_eq!(index.lookup(key(1), 0, 4, 2).await.unwrap(), vec![0, 1]);
    assert!(index.lookup(key(1), 3, 4, 10).await.unwrap().is_empty());

    // A second indexer that lost the race changes nothing.
    assert!(matches!(
        second.append(0, 4, first).await,
        Err(Error::Precondition { .. })
    ));
    assert!(matches!(
        second.append(5, 6, vec![(key(1), 5)]).await,
        Err(Error::Precondition { .. })
    ));
    // Postings outside the range are refused, and nothing moves.
    assert!(index.append(4, 6, vec![(key(1), 6)]).await.is_err());
    assert_eq!(index.indexed_size().await.unwrap(), 4);
    // An empty range of entries with no terms still moves the size.
    index.append(4, 6, Vec::new()).await.unwrap();
    second.append(6, 8, vec![(key(2), 7)]).await.unwrap();
    assert_eq!(index.indexed_size().await.unwrap(), 8);
    assert_eq!(index.lookup(key(2), 0, 8, 10).await.unwrap(), vec![1, 7]);
    assert_eq!(index.lookup(key(2), 2, 8, 10).await.unwrap(), vec![7]);

    // A batch as large as an indexer commits, with the largest indices.
    let many: Vec<_> = (8..1032).map(|i| (key(9), i)).collect();
    index.append(8, 1032, many).await.unwrap();
    let got = index.lookup(key(9), 0, u64::MAX, 2000).await.unwrap();
    assert_eq!(got, (8..1032).collect::<Vec<_>>());
    let big = (1 << 40) + 3;
    index
        .append(1032, big + 1, vec![(key(9), big)])
        .await
        .unwrap();
    assert_eq!(
        index.lookup(key(9), 1031, u64::MAX, 10).await.unwrap(),
        vec![1031, big]
    );

    // Scans, in (prefix, index) order, across the middle of the prefix space (where a signed
    // 64-bit column changes sign): prefixes 0x7f.., 0x80.. and 0xf0...
    let prefix = |b: u8| u64::from_be_bytes([b; 8]);
    index
        .append(
            big + 1,
            big + 3,
            vec![
                (key(0xf0), big + 1),
                (key(0x80), big + 2),
                (key(0x7f), big + 1),
            ],
        )
        .await
        .unwrap();
    let all = [
        (prefix(1), 0),
        (prefix(1), 1),
        (prefix(1), 2),
        (prefix(2), 1),
        (prefix(2), 7),
    ]
    .into_iter()
    .chain((8..1032).map(|i| (prefix(9), i)))
    .chain([
        (prefix(9), big),
        (prefix(0x7f), big + 1),
        (prefix(0x80), big + 2),
        (prefix(0xf0), big + 1),
    ])
    .collect::<Vec<_>>();
    let mut scanned = Vec::new();
    let mut from = (0, 0);
    loop {
        let page = second.scan(from, u64::MAX, u64::MAX, 100).await.unwrap();
        let done = page.len() < 100;
        if let Some(&(p, i)) = page.last() {
            from = (p, i + 1);
        }
        scanned.extend(page);
        if done {
            break;
        }
    }
    assert_eq!(scanned, all);
    // Below a size, within a prefix range, from a posting.
    assert_eq!(
        index.scan((0, 0), prefix(2), 2, 10).await.unwrap(),
        vec![(prefix(1), 0), (prefix(1), 1), (prefix(2), 1)]
    );
    assert_eq!(
        index.scan((0, 0), prefix(1), 2, 10).await.unwrap(),
        vec![(prefix(1), 0), (prefix(1), 1)]
    );
    assert_eq!(
        index.scan((prefix(1), 2), prefix(2), 8, 10).await.unwrap(),
        vec![(prefix(1), 2), (prefix(2), 1), (prefix(2), 7)]
    );
    assert_eq!(
        index
            .scan((prefix(0x7f), 0), prefix(0x80), u64::MAX, 10)
            .await
            .unwrap(),
        vec![(prefix(0x7f), big + 1), (prefix(0x80), big + 2)]
    );
    assert_eq!(
        index
            .scan((1 << 63, 0), u64::MAX, big + 2, 10)
            .await
            .unwrap(),
        vec![(prefix(0xf0), big + 1)]
    );
    assert!(
        index
            .scan((prefix(0xf0), big + 2), u64::MAX, u64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
}
