//! Committing the index: building the signed search-index commitment of
//! [`rekor_entries::search::commitment`] for a checkpoint's tree, keeping it current, and
//! proving a term's bucket under it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rekor_entries::search::SearchTerm;
use rekor_entries::search::commitment::{
    BucketTree, BucketTreeBuilder, IndexCommitment, bucket_bits_for, bucket_leaf_hash, bucket_of,
    bucket_prefixes, encode_posting, term_prefix,
};
use rekor_note::NoteSigner;
use rekor_storage::{MAX_LOOKUP, SearchIndex, Storage, StoredPosting};
use rekor_tlog::Hash;
use tokio::sync::watch;

use crate::answer::SearchTree;
use crate::error::{Result, SearchError};

/// A signed commitment to the index of a tree, with the bucket tree to prove buckets from.
#[derive(Debug)]
pub struct Commitment {
    /// The signed note.
    pub note: Bytes,
    /// What it states.
    pub statement: IndexCommitment,
    tree: BucketTree,
}

/// A term's bucket and its proof under a [`Commitment`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketProof {
    /// The bucket.
    pub bucket: u64,
    /// Its postings, encoded ([`encode_posting`]), ascending.
    pub content: Vec<u8>,
    /// Its leaf's inclusion proof in the bucket tree.
    pub proof: Vec<Hash>,
}

/// How fast a build reads the index: in steps of `step` postings, each followed by a pause of
/// `pause_factor` times the step's own time (its read and its hashing).
///
/// A server builds its commitment beside the lookups it answers, on the same cores: at full
/// speed a build at 10M entries keeps a core busy for over a second, and lookups meanwhile
/// wait for the scheduler (their p99 went from under 1 ms to over 4 ms in `make bench-search`).
/// In short steps with pauses, a lookup finds a core free most of the time, and when it does
/// not it waits for a fraction of a millisecond.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    /// Postings read per step (at most [`MAX_LOOKUP`]).
    pub step: usize,
    /// The pause after each step, as a multiple of the step's time.
    pub pause_factor: u32,
}

impl Pace {
    /// No pauses, in the largest steps: for a build nothing else waits on.
    pub const FULL_SPEED: Pace = Pace {
        step: MAX_LOOKUP,
        pause_factor: 0,
    };

    /// The [`Committer`]'s: steps of 4,000 postings (about 0.3 ms on the machine of
    /// BENCHMARKS.md), each followed by a pause three times as long, so a build takes at most
    /// about a quarter of one core. The timer rounds a pause up to a millisecond, so such a
    /// build takes about eight times as long as at full speed (12.5 s against 1.6 s at 10M).
    pub const BACKGROUND: Pace = Pace {
        step: 4_000,
        pause_factor: 3,
    };

    /// The pause after a step that took `spent`.
    fn pause_after(self, spent: Duration) -> Duration {
        spent.saturating_mul(self.pause_factor)
    }
}

/// Every stored posting from `first_prefix` to `last_prefix` of the entries below `below`,
/// read at `pace`.
async fn scan_range(
    index: &dyn SearchIndex,
    first_prefix: u64,
    last_prefix: u64,
    below: u64,
    pace: Pace,
    mut each: impl FnMut(StoredPosting) -> Result<()>,
) -> Result<()> {
    let step = pace.step.clamp(1, MAX_LOOKUP);
    let mut from = (first_prefix, 0);
    loop {
        let started = std::time::Instant::now();
        let page = index.scan(from, last_prefix, below, step).await?;
        let done = page.len() < step;
        let last = page.last().copied();
        for posting in page {
            each(posting)?;
        }
        let pause = pace.pause_after(started.elapsed());
        if !done && !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        match last {
            Some((prefix, entry)) if !done => {
                from = match entry.checked_add(1) {
                    Some(next) => (prefix, next),
                    None => match prefix.checked_add(1) {
                        Some(next) => (next, 0),
                        None => return Ok(()),
                    },
                };
            }
            _ => return Ok(()),
        }
    }
}

fn malformed(error: impl std::fmt::Display) -> SearchError {
    SearchError::Commitment(error.to_string())
}

impl Commitment {
    /// Builds and signs the commitment to the index of `tree` (a checkpoint of the log named
    /// `origin`), in one pass over the index's postings below `tree.size`.
    ///
    /// # Errors
    ///
    /// [`SearchError::IndexBehind`] if the index has not reached `tree.size`; index failures;
    /// [`SearchError::Commitment`] if the index yields postings out of order or the signer
    /// fails.
    pub async fn build(
        index: &dyn SearchIndex,
        tree: SearchTree,
        origin: &str,
        signer: &dyn NoteSigner,
    ) -> Result<Commitment> {
        Commitment::build_at(index, tree, origin, signer, Pace::FULL_SPEED).await
    }

    /// Builds and signs the commitment as [`Commitment::build`] does, reading the index at
    /// `pace`. The commitment does not depend on the pace.
    ///
    /// # Errors
    ///
    /// As [`Commitment::build`].
    pub async fn build_at(
        index: &dyn SearchIndex,
        tree: SearchTree,
        origin: &str,
        signer: &dyn NoteSigner,
        pace: Pace,
    ) -> Result<Commitment> {
        let indexed = index.indexed_size().await?;
        if indexed < tree.size {
            return Err(SearchError::IndexBehind {
                indexed,
                size: tree.size,
            });
        }
        let bits = bucket_bits_for(tree.size);
        let mut builder = BucketTreeBuilder::new(bits).map_err(malformed)?;
        scan_range(index, 0, u64::MAX, tree.size, pace, |(prefix, entry)| {
            builder.push(prefix, entry).map_err(malformed)
        })
        .await?;
        let postings = builder.count();
        let bucket_tree = builder.finish();
        let statement = IndexCommitment {
            origin: origin.to_string(),
            log_size: tree.size,
            log_root: tree.root,
            bucket_bits: bits,
            index_root: bucket_tree.root(),
            postings,
        };
        let note = rekor_note::sign_note(&statement.to_text(), &[signer]).map_err(malformed)?;
        Ok(Commitment {
            note: Bytes::from(note.to_bytes()),
            statement,
            tree: bucket_tree,
        })
    }

    /// The bucket of `term`, read from the index, with its proof.
    ///
    /// # Errors
    ///
    /// Index failures; [`SearchError::Commitment`] if the index no longer holds what was
    /// committed (it was dropped and is being rebuilt, or another index took its place).
    pub async fn prove(&self, index: &dyn SearchIndex, term: &SearchTerm) -> Result<BucketProof> {
        let bits = self.statement.bucket_bits;
        let bucket = bucket_of(term_prefix(term), bits);
        let (first, last) = bucket_prefixes(bucket, bits);
        let mut content = Vec::new();
        scan_range(
            index,
            first,
            last,
            self.statement.log_size,
            Pace::FULL_SPEED,
            |(prefix, entry)| {
                content.extend_from_slice(&encode_posting(prefix, entry));
                Ok(())
            },
        )
        .await?;
        if self.tree.leaf(bucket) != Some(bucket_leaf_hash(&content)) {
            return Err(SearchError::Commitment(format!(
                "bucket {bucket} no longer holds what was committed at size {}",
                self.statement.log_size
            )));
        }
        Ok(BucketProof {
            bucket,
            content,
            proof: self.tree.proof(bucket),
        })
    }
}

/// Keeps a [`Commitment`] to the index current: after each `interval`, if the log's
/// checkpoint has moved and the index has reached it, commits to the index of that tree.
pub struct Committer {
    storage: Arc<dyn Storage>,
    index: Arc<dyn SearchIndex>,
    signer: Arc<dyn NoteSigner>,
    origin: String,
    interval: Duration,
    current: watch::Sender<Option<Arc<Commitment>>>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer")
            .field("origin", &self.origin)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// How often a committer waiting for the index looks again.
const WAIT_FOR_INDEX: Duration = Duration::from_millis(500);

impl Committer {
    /// A committer for the log named `origin`, whose checkpoints `storage` holds, signing with
    /// `signer` (the log's checkpoint key). Returns it and a receiver of its commitments.
    pub fn new(
        storage: Arc<dyn Storage>,
        index: Arc<dyn SearchIndex>,
        signer: Arc<dyn NoteSigner>,
        origin: String,
        interval: Duration,
    ) -> (Committer, watch::Receiver<Option<Arc<Commitment>>>) {
        let (current, receiver) = watch::channel(None);
        let committer = Committer {
            storage,
            index,
            signer,
            origin,
            interval,
            current,
        };
        (committer, receiver)
    }

    /// The tree of the stored checkpoint, if there is one.
    async fn checkpoint_tree(&self) -> Result<Option<SearchTree>> {
        let Some(stored) = self.storage.read_checkpoint().await? else {
            return Ok(None);
        };
        let checkpoint = rekor_note::Note::parse(&stored.data)
            .and_then(|note| rekor_note::Checkpoint::parse(note.text()))
            .map_err(malformed)?;
        Ok(Some(SearchTree {
            size: checkpoint.size,
            root: Hash(checkpoint.root),
        }))
    }

    /// Commits once if the checkpoint moved since the last commitment; returns whether it did.
    ///
    /// # Errors
    ///
    /// As [`Commitment::build`], including [`SearchError::IndexBehind`].
    pub async fn commit_once(&self) -> Result<bool> {
        let Some(tree) = self.checkpoint_tree().await? else {
            return Ok(false);
        };
        let committed = self.current.borrow().as_ref().map(|c| c.statement.log_size);
        if committed == Some(tree.size) {
            return Ok(false);
        }
        let commitment = Commitment::build_at(
            self.index.as_ref(),
            tree,
            &self.origin,
            self.signer.as_ref(),
            Pace::BACKGROUND,
        )
        .await?;
        tracing::info!(
            size = tree.size,
            postings = commitment.statement.postings,
            bucket_bits = commitment.statement.bucket_bits,
            "search index committed"
        );
        self.current.send_replace(Some(Arc::new(commitment)));
        Ok(true)
    }

    /// Commits whenever the checkpoint has moved, at most once per interval, until every
    /// receiver is dropped. Each build reads the index at [`Pace::BACKGROUND`]. Waits for the
    /// index to reach a checkpoint; other failures are logged and retried after the interval.
    pub async fn run(self) {
        loop {
            match self.commit_once().await {
                Ok(_) => tokio::time::sleep(self.interval).await,
                Err(SearchError::IndexBehind { .. }) => tokio::time::sleep(WAIT_FOR_INDEX).await,
                Err(error) => {
                    tracing::warn!(%error, "search index commitment failed; retrying");
                    tokio::time::sleep(self.interval).await;
                }
            }
            if self.current.is_closed() {
                return;
            }
        }
    }
}
