//! Several frontends (logs) sharing one backend must build one tree: every index given once,
//! every checkpoint a prefix of that tree, the stored checkpoint never moving backwards.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test by panicking"
)]

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rekor_log::{Appended, Log, LogConfig};
use rekor_storage::memory::{MemoryCoordinator, MemoryStorage};
use rekor_storage::{Coordinator, Storage};
use rekor_tlog::{Hash, LeafIndex, MemoryTree, TreeSize, leaf_hash, verify_inclusion};

mod support;
use support::signer;

async fn open(
    storage: &Arc<MemoryStorage>,
    coordinator: &Arc<MemoryCoordinator>,
    config: LogConfig,
) -> Log {
    support::open_with(
        Arc::clone(storage) as Arc<dyn Storage>,
        Arc::clone(coordinator) as Arc<dyn Coordinator>,
        config,
    )
    .await
}

fn entry(frontend: usize, task: usize, n: usize) -> Bytes {
    Bytes::from(format!(
        "{{\"frontend\":{frontend},\"task\":{task},\"n\":{n}}}"
    ))
}

/// Watches the stored checkpoint, fails if its size ever shrinks, and counts how often it changed.
fn watch_monotonic(
    storage: Arc<MemoryStorage>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, Duration)> {
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let verifier = signer().verifier();
        let mut last: Option<(u64, Bytes)> = None;
        let mut changes = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Some(stored) = storage.read_checkpoint().await.unwrap() {
                let checkpoint = verifier.verify_checkpoint(&stored.data).unwrap();
                if let Some((size, note)) = &last {
                    assert!(
                        checkpoint.size >= *size,
                        "stored checkpoint went back from {size} to {}",
                        checkpoint.size
                    );
                    if *note != stored.data {
                        changes += 1;
                    }
                }
                last = Some((checkpoint.size, stored.data));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        (changes, started.elapsed())
    })
}

/// Checks the answers of every frontend against one reference tree built from them.
fn check_one_tree(answers: &[(Bytes, Appended)], total: usize) {
    let mut by_index: BTreeMap<u64, &Bytes> = BTreeMap::new();
    for (leaf, appended) in answers {
        assert!(
            by_index.insert(appended.index, leaf).is_none(),
            "index {} was given twice",
            appended.index
        );
    }
    let indices: Vec<u64> = by_index.keys().copied().collect();
    let expected: Vec<u64> = (0..u64::try_from(total).unwrap()).collect();
    assert_eq!(indices, expected, "indices are not exactly 0..{total}");

    let mut reference = MemoryTree::new();
    for leaf in by_index.values() {
        reference.append(leaf_hash(leaf));
    }
    let mut checkpoints = HashSet::new();
    for (leaf, appended) in answers {
        let size = TreeSize::new(appended.checkpoint.size);
        let hash: Hash = leaf_hash(leaf);
        verify_inclusion(
            &hash,
            LeafIndex::new(appended.index),
            size,
            &appended.proof,
            &appended.checkpoint.root,
        )
        .unwrap();
        checkpoints.insert((appended.checkpoint.size, appended.checkpoint.root));
    }
    // No fork: every checkpoint any frontend answered with is a prefix of the one tree.
    for (size, root) in &checkpoints {
        assert_eq!(
            reference.root(TreeSize::new(*size)).unwrap(),
            *root,
            "checkpoint of size {size} is not a prefix of the shared tree"
        );
    }
}

/// Runs the frontends and returns how many checkpoint writes the watcher saw, and in what time.
async fn run_frontends(
    config: LogConfig,
    frontends: usize,
    tasks: usize,
    per_task: usize,
) -> (Duration, usize) {
    let storage = Arc::new(MemoryStorage::default());
    let coordinator = Arc::new(MemoryCoordinator::default());
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_monotonic(Arc::clone(&storage), Arc::clone(&stop));

    let mut logs = Vec::new();
    for _ in 0..frontends {
        logs.push(open(&storage, &coordinator, config.clone()).await);
    }
    let mut handles = Vec::new();
    for (f, log) in logs.iter().enumerate() {
        for t in 0..tasks {
            let log = log.clone();
            handles.push(tokio::spawn(async move {
                let mut answers = Vec::new();
                for n in 0..per_task {
                    let leaf = entry(f, t, n);
                    let appended = log.add(leaf.clone()).await.unwrap();
                    answers.push((leaf, appended));
                }
                answers
            }));
        }
    }
    let mut answers = Vec::new();
    for handle in handles {
        answers.extend(handle.await.unwrap());
    }
    let total = frontends * tasks * per_task;
    check_one_tree(&answers, total);

    // The stored checkpoint covers everything, and every frontend agrees with it.
    let stored = storage.read_checkpoint().await.unwrap().unwrap();
    let checkpoint = signer().verifier().verify_checkpoint(&stored.data).unwrap();
    assert_eq!(checkpoint.size, u64::try_from(total).unwrap());
    for log in &logs {
        log.shutdown().await;
    }
    stop.store(true, Ordering::Relaxed);
    let (changes, watched) = watcher.await.unwrap();
    assert!(changes > 0);

    // A fresh frontend opens on the shared state without publishing anything new.
    let late = open(&storage, &coordinator, config).await;
    assert_eq!(late.checkpoint().size, u64::try_from(total).unwrap());
    assert_eq!(late.checkpoint().note, stored.data);
    late.shutdown().await;
    (watched, changes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_frontends_publishing_every_batch_build_one_tree() {
    run_frontends(LogConfig::default(), 3, 4, 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frontends_with_a_checkpoint_interval_share_one_rate_and_build_one_tree() {
    let interval = Duration::from_millis(50);
    let config = LogConfig {
        checkpoint_interval: interval,
        batch_max_age: Duration::from_millis(5),
        ..LogConfig::default()
    };
    let frontends = 3;
    let (elapsed, changes) = run_frontends(config, frontends, 4, 10).await;
    // The frontends claim checkpoint writes from the coordinator: together they write at most
    // once per interval while the watcher runs (plus one for the first claim, one for slack),
    // where publishing on their own clocks would write up to once per interval each.
    let budget = elapsed.as_millis() / interval.as_millis() + 2;
    println!("{changes} checkpoint writes in {elapsed:?} (budget {budget})");
    assert!(
        u128::try_from(changes).unwrap() <= budget,
        "{changes} checkpoint writes in {elapsed:?} exceed one per {interval:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frontend_opened_while_another_writes_joins_the_same_tree() {
    let storage = Arc::new(MemoryStorage::default());
    let coordinator = Arc::new(MemoryCoordinator::default());
    let first = open(&storage, &coordinator, LogConfig::default()).await;
    let writer = {
        let first = first.clone();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for n in 0..150 {
                let leaf = entry(0, 0, n);
                answers.push((leaf.clone(), first.add(leaf).await.unwrap()));
            }
            answers
        })
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = open(&storage, &coordinator, LogConfig::default()).await;
    let mut answers = Vec::new();
    for n in 0..50 {
        let leaf = entry(1, 0, n);
        answers.push((leaf.clone(), second.add(leaf).await.unwrap()));
    }
    answers.extend(writer.await.unwrap());
    check_one_tree(&answers, 200);

    // Each frontend refuses the other's entries as duplicates with the right index.
    let (leaf, appended) = &answers[0];
    match first.add(leaf.clone()).await {
        Err(rekor_log::LogError::Duplicate { index }) => assert_eq!(index, appended.index),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    first.shutdown().await;
    second.shutdown().await;
}
