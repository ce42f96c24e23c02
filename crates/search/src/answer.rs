//! Answering a search: the index's candidates below the checkpoint, each confirmed against the
//! entry itself, then the entries the index has not reached yet, scanned directly, each with
//! its inclusion proof in the checkpoint's tree, verified before it is returned.

use std::collections::HashMap;

use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use rekor_entries::search::{SearchTerm, search_terms};
use rekor_storage::{SearchIndex, Storage};
use rekor_tlog::{
    BundleId, Hash, LeafIndex, Prover, TileMap, TileRecorder, TreeSize, bundle_for_leaf,
    inclusion_proof, leaf_hash, verify_inclusion,
};

use crate::error::{Result, SearchError};
use crate::indexer::bundle_base;
use crate::source::{read_bundle, read_tiles};

/// The most entries a search scans directly beyond the index's size, when the index lags the
/// checkpoint. Beyond it a search is refused with [`SearchError::IndexBehind`] until the
/// indexer catches up.
pub const MAX_UNINDEXED_SCAN: u64 = 16 * 1024;

/// The most entries one page may hold.
pub const MAX_PAGE_SIZE: usize = 1000;

/// The tree a search answers against: a signed checkpoint's size and root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SearchTree {
    /// The tree size.
    pub size: u64,
    /// The root hash.
    pub root: Hash,
}

/// One entry that carries the term, with its inclusion proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundEntry {
    /// The entry's index.
    pub index: u64,
    /// The logged entry bytes.
    pub body: Bytes,
    /// The inclusion proof, leaf to root, in the tree searched.
    pub proof: Vec<Hash>,
}

/// One page of a search's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchPage {
    /// The entries, oldest first.
    pub entries: Vec<FoundEntry>,
    /// Where the next page starts, if there are more matching entries in the tree.
    pub next: Option<u64>,
}

/// The entries below `tree.size` at or after `start` that carry `term`, at most `page_size`
/// (capped at [`MAX_PAGE_SIZE`]).
///
/// # Errors
///
/// [`SearchError::IndexBehind`] when more than [`MAX_UNINDEXED_SCAN`] entries of the tree are
/// not indexed yet; storage failures; [`SearchError::Proof`] if the tiles do not prove an
/// entry into `tree` (the checkpoint and the tiles disagree).
pub async fn search(
    storage: &dyn Storage,
    index: &dyn SearchIndex,
    tree: SearchTree,
    term: &SearchTerm,
    start: u64,
    page_size: usize,
) -> Result<SearchPage> {
    let want = page_size.clamp(1, MAX_PAGE_SIZE) + 1;
    let indexed = index.indexed_size().await?.min(tree.size);
    if tree.size - indexed > MAX_UNINDEXED_SCAN {
        return Err(SearchError::IndexBehind {
            indexed,
            size: tree.size,
        });
    }
    let mut bundles = Bundles::new(storage, tree.size);
    let mut found: Vec<(u64, Bytes)> = Vec::new();

    // The index's candidates, confirmed one by one (it may keep only part of each key).
    let key = term.index_key();
    let mut cursor = start;
    while found.len() < want && cursor < indexed {
        let candidates = index
            .lookup(key, cursor, indexed, want - found.len())
            .await?;
        let Some(&last) = candidates.last() else {
            break;
        };
        bundles.prefetch(&candidates).await?;
        for candidate in candidates {
            let body = bundles.entry(candidate).await?;
            if search_terms(&body).contains(term) {
                found.push((candidate, body));
            }
        }
        cursor = last + 1;
    }
    // The entries the index has not reached.
    let mut next = start.max(indexed);
    while found.len() < want && next < tree.size {
        let body = bundles.entry(next).await?;
        if search_terms(&body).contains(term) {
            found.push((next, body));
        }
        next += 1;
    }

    let more = if found.len() == want {
        found.pop().map(|(index, _)| index)
    } else {
        None
    };
    let entries = prove(storage, tree, found).await?;
    Ok(SearchPage {
        entries,
        next: more,
    })
}

/// The entry at `index` in `tree`: its bytes, read from its entry bundle (a partial bundle that a
/// full one has superseded is read as the full one's prefix), and its inclusion proof into
/// `tree`, built from the hash tiles and verified against `tree.root` before it is returned.
/// This is what a log answers for an entry it already holds (a resubmitted duplicate).
///
/// # Errors
///
/// Storage failures; [`SearchError::Bundle`], [`SearchError::Tile`] or
/// [`SearchError::ShortBundle`] for objects that do not decode or hold too little;
/// [`SearchError::Proof`] if `index` is not below `tree.size`, or the tiles do not prove the
/// entry into `tree` (the checkpoint and the tiles disagree).
pub async fn proven_entry(
    storage: &dyn Storage,
    tree: SearchTree,
    index: u64,
) -> Result<FoundEntry> {
    let body = Bundles::new(storage, tree.size).entry(index).await?;
    let tiles = proof_tiles(storage, tree, [index]).await?;
    prove_one(
        &mut Prover::new(TreeSize::new(tree.size), &tiles),
        tree,
        index,
        body,
    )
}

/// Storage reads a search keeps in flight at once (bundles, then tiles): each is a blocking
/// file read on POSIX, so one after another they would wait on each other's hand-offs.
pub(crate) const READS_IN_FLIGHT: usize = 8;

/// Proves each entry into `tree` from the tiles, and verifies each proof.
async fn prove(
    storage: &dyn Storage,
    tree: SearchTree,
    found: Vec<(u64, Bytes)>,
) -> Result<Vec<FoundEntry>> {
    let tiles = proof_tiles(storage, tree, found.iter().map(|(index, _)| *index)).await?;
    // One prover for the page: it hashes each tile's inner nodes once, and the entries share
    // their upper tiles.
    let mut prover = Prover::new(TreeSize::new(tree.size), &tiles);
    found
        .into_iter()
        .map(|(index, body)| prove_one(&mut prover, tree, index, body))
        .collect()
}

/// Reads the hash tiles the inclusion proofs of `indices` into `tree` need.
async fn proof_tiles(
    storage: &dyn Storage,
    tree: SearchTree,
    indices: impl IntoIterator<Item = u64>,
) -> Result<TileMap> {
    let size = TreeSize::new(tree.size);
    let recorder = TileRecorder::new();
    for index in indices {
        // The recorder holds no tiles, so this fails; it only lists what is needed.
        let _ = inclusion_proof(LeafIndex::new(index), size, &recorder);
    }
    read_tiles(storage, recorder.into_tile_ids()).await
}

/// Proves the entry at `index` (logged as `body`) into `tree` with `prover`, and verifies the
/// proof.
fn prove_one(
    prover: &mut Prover<'_, TileMap>,
    tree: SearchTree,
    index: u64,
    body: Bytes,
) -> Result<FoundEntry> {
    let leaf = LeafIndex::new(index);
    let size = TreeSize::new(tree.size);
    let failed = |source| SearchError::Proof {
        index,
        size: tree.size,
        source,
    };
    let proof = prover.inclusion_proof(leaf).map_err(failed)?;
    verify_inclusion(&leaf_hash(&body), leaf, size, &proof, &tree.root).map_err(failed)?;
    Ok(FoundEntry { index, body, proof })
}

/// Entry bundles read once per search.
struct Bundles<'a> {
    storage: &'a dyn Storage,
    size: u64,
    read: HashMap<u64, Vec<Bytes>>,
}

impl<'a> Bundles<'a> {
    fn new(storage: &'a dyn Storage, size: u64) -> Self {
        Bundles {
            storage,
            size,
            read: HashMap::new(),
        }
    }

    fn locate(&self, index: u64) -> Result<(BundleId, usize)> {
        bundle_for_leaf(LeafIndex::new(index), TreeSize::new(self.size)).ok_or(SearchError::Proof {
            index,
            size: self.size,
            source: rekor_tlog::ProofError::IndexOutOfRange {
                index,
                size: self.size,
            },
        })
    }

    /// Reads the bundles of `indices` not read yet, several at a time.
    async fn prefetch(&mut self, indices: &[u64]) -> Result<()> {
        let mut wanted: Vec<BundleId> = Vec::new();
        for &index in indices {
            let (bundle, _) = self.locate(index)?;
            let base = bundle_base(bundle);
            if !self.read.contains_key(&base) && wanted.last() != Some(&bundle) {
                wanted.push(bundle);
            }
        }
        let storage = self.storage;
        let read: Vec<(u64, Vec<Bytes>)> = futures::stream::iter(wanted)
            .map(|bundle| async move {
                read_bundle(storage, bundle)
                    .await
                    .map(|entries| (bundle_base(bundle), entries))
            })
            .buffered(READS_IN_FLIGHT)
            .try_collect()
            .await?;
        self.read.extend(read);
        Ok(())
    }

    async fn entry(&mut self, index: u64) -> Result<Bytes> {
        let (bundle, position) = self.locate(index)?;
        let base = bundle_base(bundle);
        if !self.read.contains_key(&base) {
            let entries = read_bundle(self.storage, bundle).await?;
            self.read.insert(base, entries);
        }
        self.read
            .get(&base)
            .and_then(|entries| entries.get(position))
            .cloned()
            .ok_or(SearchError::ShortBundle {
                path: bundle.path(),
                found: 0,
                needed: position + 1,
            })
    }
}
