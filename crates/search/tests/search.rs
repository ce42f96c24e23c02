//! The indexer and searches against a real log pipeline on memory storage. The expected answers
//! come from how the test built its entries, not from the index; every proof is checked again
//! here against the checkpoint the log published.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use rekor_entries::search::SearchTerm;
use rekor_log::{Log, LogConfig};
use rekor_note::{KeyName, LogSigner, Origin};
use rekor_search::{FoundEntry, Indexer, SearchError, SearchPage, SearchTree, search};
use rekor_storage::memory::{MemoryCoordinator, MemoryStorage};
use rekor_storage::{MemorySearchIndex, SearchIndex, Storage};
use rekor_tlog::{LeafIndex, TreeSize, leaf_hash, verify_inclusion};
use sha2::{Digest, Sha256};

const ORIGIN: &str = "search.test.example";

/// Entry `i` logs digest `i % 7` and is signed by key `i % 2`.
fn entry(i: u64) -> Bytes {
    let digest = Sha256::digest((i % 7).to_be_bytes());
    let spki = format!("key number {}", i % 2);
    // A unique signature keeps every entry distinct for dedup.
    let body = format!(
        r#"{{"apiVersion":"0.0.2","kind":"hashedrekord","spec":{{"hashedRekordV002":{{"data":{{"algorithm":"SHA2_256","digest":"{}"}},"signature":{{"content":"{}","verifier":{{"keyDetails":"PKIX_ECDSA_P256_SHA_256","publicKey":{{"rawBytes":"{}"}}}}}}}}}}}}"#,
        STANDARD.encode(digest),
        STANDARD.encode(i.to_be_bytes()),
        STANDARD.encode(spki.as_bytes()),
    );
    Bytes::from(body)
}

fn digest_term(n: u64) -> SearchTerm {
    let digest = Sha256::digest(n.to_be_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    SearchTerm::digest(&format!("sha256:{hex}")).unwrap()
}

fn key_term(n: u64) -> SearchTerm {
    let digest = Sha256::digest(format!("key number {n}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    SearchTerm::key(&format!("sha256:{hex}")).unwrap()
}

struct TestLog {
    storage: Arc<MemoryStorage>,
    log: Log,
    /// `numbers[index]`: the number of the entry logged at `index` (concurrent adds are
    /// sequenced in any order).
    numbers: std::sync::Mutex<Vec<u64>>,
}

impl TestLog {
    async fn open() -> TestLog {
        let storage = Arc::new(MemoryStorage::default());
        let signer = Arc::new(LogSigner::from_ed25519_seed(
            [9; 32],
            KeyName::new(ORIGIN).unwrap(),
        ));
        let log = Log::open(
            storage.clone(),
            Arc::new(MemoryCoordinator::default()),
            signer,
            Origin::new(ORIGIN).unwrap(),
            LogConfig {
                batch_max_age: std::time::Duration::from_millis(5),
                ..LogConfig::default()
            },
        )
        .await
        .unwrap();
        TestLog {
            storage,
            log,
            numbers: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Adds entries `range` concurrently and returns the checkpoint's tree once all are in.
    /// The indices below `size` of entries whose number passes `matches`.
    fn expected(&self, size: u64, matches: impl Fn(u64) -> bool) -> Vec<u64> {
        let numbers = self.numbers.lock().unwrap();
        (0..size)
            .filter(|&index| matches(numbers[usize::try_from(index).unwrap()]))
            .collect()
    }

    /// The bytes logged at `index`.
    fn body(&self, index: u64) -> Bytes {
        entry(self.numbers.lock().unwrap()[usize::try_from(index).unwrap()])
    }

    /// Checks that `entry` holds the bytes logged at its index, and that its inclusion proof
    /// verifies against `tree` here, independently of the crate that built it.
    fn assert_logged_and_proven(&self, tree: SearchTree, entry: &FoundEntry) {
        assert_eq!(
            entry.body,
            self.body(entry.index),
            "entry {} as logged",
            entry.index
        );
        verify_inclusion(
            &leaf_hash(&entry.body),
            LeafIndex::new(entry.index),
            TreeSize::new(tree.size),
            &entry.proof,
            &tree.root,
        )
        .unwrap();
    }

    async fn add(&self, range: std::ops::Range<u64>) -> SearchTree {
        let numbers: Vec<u64> = range.collect();
        // Below the pipeline's pushback limit.
        for chunk in numbers.chunks(2000) {
            let adds = chunk
                .iter()
                .map(|&i| async move { (i, self.log.add(entry(i)).await) });
            for (i, result) in futures::future::join_all(adds).await {
                let index = usize::try_from(result.unwrap().index).unwrap();
                let mut logged = self.numbers.lock().unwrap();
                if logged.len() <= index {
                    logged.resize(index + 1, u64::MAX);
                }
                logged[index] = i;
            }
        }
        let checkpoint = self.log.checkpoint();
        SearchTree {
            size: checkpoint.size,
            root: checkpoint.root,
        }
    }
}

/// Every page of a search, following `next`.
async fn all_pages(
    log: &TestLog,
    index: &dyn SearchIndex,
    tree: SearchTree,
    term: &SearchTerm,
    page_size: usize,
) -> Vec<u64> {
    let mut found = Vec::new();
    let mut start = 0;
    loop {
        let storage: &dyn Storage = log.storage.as_ref();
        let SearchPage { entries, next } = search(storage, index, tree, term, start, page_size)
            .await
            .unwrap();
        assert!(entries.len() <= page_size);
        for e in &entries {
            log.assert_logged_and_proven(tree, e);
        }
        found.extend(entries.iter().map(|e| e.index));
        match next {
            Some(next) => {
                assert_eq!(entries.len(), page_size, "a full page before a next page");
                start = next;
            }
            None => return found,
        }
    }
}

#[tokio::test]
async fn every_match_in_order_across_pages_bundles_and_the_unindexed_tail() {
    let log = TestLog::open().await;
    let tree = log.add(0..700).await;
    assert_eq!(tree.size, 700);
    let index = Arc::new(MemorySearchIndex::default());
    let indexer = Indexer::new(log.storage.clone(), index.clone());
    assert_eq!(indexer.catch_up(tree.size).await.unwrap(), 700);

    for n in 0..7 {
        assert_eq!(
            all_pages(&log, index.as_ref(), tree, &digest_term(n), 9).await,
            log.expected(700, |i| i % 7 == n),
            "digest {n}"
        );
    }
    assert_eq!(
        all_pages(&log, index.as_ref(), tree, &key_term(1), 100).await,
        log.expected(700, |i| i % 2 == 1)
    );
    // A term no entry carries: an empty answer, not an error.
    assert!(
        all_pages(&log, index.as_ref(), tree, &digest_term(99), 10)
            .await
            .is_empty()
    );

    // More entries, not yet indexed: the search scans them directly and misses none.
    let bigger = log.add(700..1000).await;
    assert_eq!(index.indexed_size().await.unwrap(), 700);
    assert_eq!(
        all_pages(&log, index.as_ref(), bigger, &digest_term(3), 50).await,
        log.expected(1000, |i| i % 7 == 3)
    );
    // The older tree still answers (its partial bundle and tiles may be gone: the full ones
    // stand in), with proofs into the older root.
    assert_eq!(
        all_pages(&log, index.as_ref(), tree, &digest_term(3), 50).await,
        log.expected(700, |i| i % 7 == 3)
    );
    log.log.shutdown().await;
}

#[tokio::test]
async fn a_verified_catch_up_indexes_only_bundles_of_the_signed_tree() {
    let log = TestLog::open().await;
    let small = log.add(0..300).await;
    let index = Arc::new(MemorySearchIndex::default());
    let indexer = Indexer::new(log.storage.clone(), index.clone());
    // A root that is not the tree's: the first bundle read is refused, nothing committed.
    let mut wrong = small;
    wrong.root.0[0] ^= 1;
    match indexer.catch_up_verified(wrong).await {
        Err(SearchError::BundleNotInTree { path, size, .. }) => {
            assert_eq!((path.as_str(), size), ("tile/entries/000", 300));
        }
        other => panic!("a wrong root was accepted: {other:?}"),
    }
    assert_eq!(index.indexed_size().await.unwrap(), 0);
    // The signed tree: a full bundle and a partial one, proven through the level-1 tile.
    assert_eq!(indexer.catch_up_verified(small).await.unwrap(), 300);
    // Grown past the next tiles and beyond one commit: the partial bundle indexed before is
    // read again, full now, and proven into the larger tree, as is every later one.
    let grown = log.add(300..5000).await;
    assert_eq!(indexer.catch_up_verified(grown).await.unwrap(), 5000);
    let found = all_pages(&log, index.as_ref(), grown, &digest_term(4), 1000).await;
    assert_eq!(found, log.expected(5000, |i| i % 7 == 4));
    log.log.shutdown().await;
}

#[tokio::test]
async fn indexers_racing_on_one_index_record_each_entry_once() {
    let log = TestLog::open().await;
    let tree = log.add(0..5000).await;
    let index = Arc::new(MemorySearchIndex::default());
    let first = Indexer::new(log.storage.clone(), index.clone());
    let second = Indexer::new(log.storage.clone(), index.clone());
    let (a, b) = tokio::join!(first.catch_up(tree.size), second.catch_up(tree.size));
    assert_eq!((a.unwrap(), b.unwrap()), (5000, 5000));
    let found = all_pages(&log, index.as_ref(), tree, &digest_term(5), 1000).await;
    assert_eq!(found, log.expected(5000, |i| i % 7 == 5));
    log.log.shutdown().await;
}

#[tokio::test]
async fn a_search_far_ahead_of_the_index_is_refused_until_it_catches_up() {
    let log = TestLog::open().await;
    let size = rekor_search::MAX_UNINDEXED_SCAN + 10;
    let tree = log.add(0..size).await;
    let index = Arc::new(MemorySearchIndex::default());
    let err = search(
        log.storage.as_ref(),
        index.as_ref(),
        tree,
        &digest_term(1),
        0,
        10,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, SearchError::IndexBehind { indexed: 0, size: s } if s == size),
        "{err}"
    );
    // A follower catches up from the published checkpoints.
    let (sizes, receiver) = tokio::sync::watch::channel(tree.size);
    let follower = tokio::spawn(
        Indexer::new(log.storage.clone(), index.clone())
            .follow(receiver, std::time::Duration::from_millis(10)),
    );
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while index.indexed_size().await.unwrap() < size {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the follower never caught up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let page = search(
        log.storage.as_ref(),
        index.as_ref(),
        tree,
        &digest_term(1),
        0,
        10,
    )
    .await
    .unwrap();
    let want = log.expected(size, |i| i % 7 == 1);
    assert_eq!(
        page.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
        want[..10]
    );
    assert_eq!(page.next, Some(want[10]));
    drop(sizes);
    follower.await.unwrap();
    log.log.shutdown().await;
}

/// The postings of the first `size` entries as the test built them, by bucket, and the index
/// root folded with the tlog crate's own tree: code apart from the commitment's builder.
fn expected_commitment(log: &TestLog, size: u64, bits: u8) -> (Vec<Vec<u8>>, rekor_tlog::Hash) {
    use rekor_entries::search::commitment::{bucket_of, encode_posting, term_prefix};
    let numbers = log.numbers.lock().unwrap();
    let mut postings = std::collections::BTreeSet::new();
    for index in 0..size {
        let number = numbers[usize::try_from(index).unwrap()];
        postings.insert((term_prefix(&digest_term(number % 7)), index));
        postings.insert((term_prefix(&key_term(number % 2)), index));
    }
    let mut buckets = vec![Vec::new(); 1 << bits];
    for (prefix, index) in postings {
        let bucket = usize::try_from(bucket_of(prefix, bits)).unwrap();
        buckets[bucket].extend_from_slice(&encode_posting(prefix, index));
    }
    let mut tree = rekor_tlog::MemoryTree::new();
    for content in &buckets {
        tree.append(leaf_hash(content));
    }
    let root = tree.root(TreeSize::new(1 << bits)).unwrap();
    (buckets, root)
}

#[tokio::test]
async fn the_commitment_is_signed_matches_the_log_and_proves_every_terms_bucket() {
    use rekor_entries::search::commitment::{IndexCommitment, verify_bucket};
    use rekor_search::{Commitment, Committer, Pace};

    let log = TestLog::open().await;
    let tree = log.add(0..600).await;
    let index = Arc::new(MemorySearchIndex::default());
    let indexer = Indexer::new(log.storage.clone(), index.clone());
    let signer = Arc::new(LogSigner::from_ed25519_seed(
        [9; 32],
        KeyName::new(ORIGIN).unwrap(),
    ));
    let verifier = signer.verifier();
    let (committer, commitments) = Committer::new(
        log.storage.clone(),
        index.clone(),
        signer.clone(),
        ORIGIN.to_string(),
        std::time::Duration::from_secs(60),
    );
    // Not before the index reaches the checkpoint.
    assert!(matches!(
        committer.commit_once().await,
        Err(SearchError::IndexBehind { indexed: 0, .. })
    ));
    indexer.catch_up(tree.size).await.unwrap();
    assert!(committer.commit_once().await.unwrap());
    assert!(!committer.commit_once().await.unwrap(), "nothing moved");
    let commitment = commitments.borrow().clone().unwrap();

    // The note is signed by the log's key and states the checkpoint's tree.
    let (note, _) = rekor_note::open_note(&commitment.note, &[&verifier]).unwrap();
    let statement = IndexCommitment::parse(note.text()).unwrap();
    assert_eq!(statement, commitment.statement);
    assert_eq!((statement.log_size, statement.log_root), (600, tree.root));
    assert_eq!(statement.bucket_bits, 3);
    assert_eq!(statement.postings, 1200);
    // It can never pass for a checkpoint.
    assert!(verifier.verify_checkpoint(&commitment.note).is_err());
    let (buckets, root) = expected_commitment(&log, 600, 3);
    assert_eq!(statement.index_root, root);
    // Read in small paced steps (pages that end inside buckets and inside a term's postings),
    // the index commits to the same root.
    let paced = Commitment::build_at(
        index.as_ref(),
        tree,
        ORIGIN,
        signer.as_ref(),
        Pace {
            step: 37,
            pause_factor: 1,
        },
    )
    .await
    .unwrap();
    assert_eq!(paced.statement, statement);

    let absent = digest_term(99);
    let terms: Vec<SearchTerm> = (0..7)
        .map(digest_term)
        .chain((0..2).map(key_term))
        .chain([absent])
        .collect();
    for (n, term) in terms.iter().enumerate() {
        let proof = commitment.prove(index.as_ref(), term).await.unwrap();
        assert_eq!(
            proof.content,
            buckets[usize::try_from(proof.bucket).unwrap()],
            "{term}"
        );
        let found =
            verify_bucket(&statement, term, proof.bucket, &proof.content, &proof.proof).unwrap();
        let n = n as u64;
        let expected = match n {
            0..7 => log.expected(600, |i| i % 7 == n),
            7..9 => log.expected(600, |i| i % 2 == n - 7),
            _ => Vec::new(),
        };
        assert_eq!(found, expected, "{term}");
    }

    // The log grows: a new commitment, and the old one still proves its own tree.
    let grown = log.add(600..700).await;
    indexer.catch_up(grown.size).await.unwrap();
    assert!(committer.commit_once().await.unwrap());
    let newer = commitments.borrow().clone().unwrap();
    assert_eq!(newer.statement.log_size, 700);
    assert_eq!(
        newer.statement.index_root,
        expected_commitment(&log, 700, newer.statement.bucket_bits).1
    );
    let old_proof = commitment.prove(index.as_ref(), &terms[0]).await.unwrap();
    verify_bucket(
        &statement,
        &terms[0],
        old_proof.bucket,
        &old_proof.content,
        &old_proof.proof,
    )
    .unwrap();

    // An index that lost a posting (entry 5's digest) no longer proves what was committed.
    let term_of_5 = digest_term(log.numbers.lock().unwrap()[5] % 7);
    let partial = MemorySearchIndex::default();
    let lossy: Vec<_> = (0..600)
        .flat_map(|i| {
            let body = log.body(i);
            rekor_entries::search::search_terms(&body)
                .into_iter()
                .map(move |t| (t.index_key(), i))
        })
        .filter(|(key, i)| !(*i == 5 && *key == term_of_5.index_key()))
        .collect();
    partial.append(0, 600, lossy).await.unwrap();
    assert!(matches!(
        commitment.prove(&partial, &term_of_5).await,
        Err(SearchError::Commitment(_))
    ));
    // And a commitment built from it differs from the honest one.
    let dishonest = Commitment::build(&partial, tree, ORIGIN, signer.as_ref())
        .await
        .unwrap();
    assert_ne!(dishonest.statement.index_root, statement.index_root);
}

#[tokio::test]
async fn proven_entry_reads_any_entry_with_a_verified_proof_in_older_and_newer_trees() {
    let log = TestLog::open().await;
    // 300 entries: a full bundle and a partial one.
    let older = log.add(0..300).await;
    let storage: &dyn Storage = log.storage.as_ref();
    for index in [0, 1, 255, 256, 299] {
        let found = rekor_search::proven_entry(storage, older, index)
            .await
            .unwrap();
        assert_eq!(found.index, index);
        log.assert_logged_and_proven(older, &found);
    }
    // The tree grows past the partial bundle: an entry is still proven into the older tree
    // (its partial bundle read as the full one's prefix) and into the newer one.
    let newer = log.add(300..600).await;
    for tree in [older, newer] {
        let found = rekor_search::proven_entry(storage, tree, 299)
            .await
            .unwrap();
        assert_eq!(found.index, 299);
        log.assert_logged_and_proven(tree, &found);
    }
    // An index the tree does not hold, and a root the tiles do not lead to, are refused.
    let err = rekor_search::proven_entry(storage, older, older.size)
        .await
        .unwrap_err();
    assert!(matches!(err, SearchError::Proof { .. }), "{err}");
    let wrong = SearchTree {
        size: older.size,
        root: newer.root,
    };
    let err = rekor_search::proven_entry(storage, wrong, 7)
        .await
        .unwrap_err();
    assert!(matches!(err, SearchError::Proof { .. }), "{err}");
    log.log.shutdown().await;
}

/// Memory storage that counts the objects read through it, and shares its cache.
#[derive(Debug)]
struct Counting {
    inner: Arc<MemoryStorage>,
    reads: std::sync::Mutex<Vec<String>>,
}

impl Counting {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.reads.lock().unwrap())
    }
}

#[async_trait::async_trait]
impl Storage for Counting {
    async fn write_objects(
        &self,
        objects: Vec<rekor_storage::Object>,
    ) -> rekor_storage::Result<()> {
        self.inner.write_objects(objects).await
    }
    async fn read(&self, path: &str) -> rekor_storage::Result<Bytes> {
        self.reads.lock().unwrap().push(path.to_string());
        self.inner.read(path).await
    }
    async fn read_checkpoint(&self) -> rekor_storage::Result<Option<rekor_storage::Versioned>> {
        self.inner.read_checkpoint().await
    }
    async fn write_checkpoint(
        &self,
        data: Bytes,
        expected: Option<&rekor_storage::ObjectVersion>,
    ) -> rekor_storage::Result<rekor_storage::ObjectVersion> {
        self.inner.write_checkpoint(data, expected).await
    }
    async fn delete_partials(&self, paths: Vec<String>) -> rekor_storage::Result<()> {
        self.inner.delete_partials(paths).await
    }
    fn read_cache(&self) -> Option<&rekor_storage::ReadCache> {
        self.inner.read_cache()
    }
}

#[tokio::test]
async fn kept_tiles_and_entries_serve_later_pages_and_grown_trees_and_never_skip_a_check() {
    let log = TestLog::open().await;
    // Two full bundles and level-0 tiles, and a partial third.
    let older = log.add(0..600).await;
    let index = Arc::new(MemorySearchIndex::default());
    let indexer = Indexer::new(log.storage.clone(), index.clone());
    indexer.catch_up(older.size).await.unwrap();
    let counting = Counting {
        inner: log.storage.clone(),
        reads: std::sync::Mutex::new(Vec::new()),
    };
    let term = key_term(1);
    let page = |tree: SearchTree| {
        let counting = &counting;
        let index = index.clone();
        let term = term.clone();
        async move {
            search(counting, index.as_ref(), tree, &term, 0, 1000)
                .await
                .map(|page| page.entries)
        }
    };
    let check = |tree: SearchTree, entries: &[FoundEntry]| {
        let expected = log.expected(tree.size, |i| i % 2 == 1);
        assert_eq!(
            entries.iter().map(|e| e.index).collect::<Vec<_>>(),
            expected
        );
        for e in entries {
            log.assert_logged_and_proven(tree, e);
        }
    };

    // Cold: every bundle and tile is read; then the full tiles and the entries are kept.
    check(older, &page(older).await.unwrap());
    let cold = counting.take();
    assert!(cold.iter().any(|p| p == "tile/0/000"), "{cold:?}");
    assert!(cold.iter().any(|p| p == "tile/entries/000"), "{cold:?}");
    let (tile_bytes, entry_bytes) = log.storage.read_cache().unwrap().held_bytes();
    assert!(tile_bytes > 0 && entry_bytes > 0);

    // Warm, same tree: nothing is read (the edge's partial tiles are kept at their width).
    check(older, &page(older).await.unwrap());
    let warm = counting.take();
    assert!(warm.is_empty(), "{warm:?}");

    // The log grows: tile 2 becomes full, the level-1 tile wider. Proofs into the grown tree
    // use the kept full tiles with the new edge, and still verify; the older tree too.
    let newer = log.add(600..1000).await;
    indexer.catch_up(newer.size).await.unwrap();
    check(newer, &page(newer).await.unwrap());
    let grown = counting.take();
    assert!(
        !grown.iter().any(|p| p == "tile/0/000" || p == "tile/0/001"),
        "{grown:?}"
    );
    assert!(grown.iter().any(|p| p == "tile/0/002"), "{grown:?}");
    // The grown tree's edge is read, not served from the older tree's.
    assert!(
        grown.iter().any(|p| p.starts_with("tile/1/000.p/")),
        "{grown:?}"
    );
    check(older, &page(older).await.unwrap());
    check(newer, &page(newer).await.unwrap());

    // A root the tiles do not lead to is refused, warm cache or not, and leaves it sound.
    let wrong = SearchTree {
        size: newer.size,
        root: older.root,
    };
    let err = page(wrong).await.unwrap_err();
    assert!(matches!(err, SearchError::Proof { .. }), "{err}");
    check(newer, &page(newer).await.unwrap());
    log.log.shutdown().await;
}
