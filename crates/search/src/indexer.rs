//! [`Indexer`]: follows a log's published checkpoints and records each entry's search terms.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rekor_entries::search::search_terms;
use rekor_storage::{Error as StorageError, Posting, SearchIndex, Storage};
use rekor_tlog::{
    BundleId, Hash, LeafIndex, Prover, TileNodes, TileReader, TileRecorder, TreeSize,
    bundle_for_leaf, leaf_hash, verify_inclusion,
};
use tokio::sync::watch;

use crate::SearchTree;
use crate::error::{Result, SearchError};
use crate::source::{read_bundle, read_tiles};

/// Entries per index commit: a multiple of 256, so every commit but the last of a catch-up
/// ends at a full bundle.
pub const COMMIT_ENTRIES: u64 = 4096;

/// Records the search terms of a log's entries in a [`SearchIndex`], reading them from the
/// entry bundles in order. Several indexers may follow one log into one shared index: the
/// index's compare-and-swap on its size lets one commit each range, and the others move on.
#[derive(Clone, Debug)]
pub struct Indexer {
    storage: Arc<dyn Storage>,
    index: Arc<dyn SearchIndex>,
}

impl Indexer {
    /// An indexer reading `storage` into `index`.
    pub fn new(storage: Arc<dyn Storage>, index: Arc<dyn SearchIndex>) -> Self {
        Indexer { storage, index }
    }

    /// Indexes every entry below `size`, which must be the size of a checkpoint the log has
    /// published (its bundles, partial or full, are in storage). Returns the indexed size,
    /// which may be larger if another indexer went further.
    ///
    /// # Errors
    ///
    /// Storage and index failures, and bundles that do not decode. What was committed stays.
    pub async fn catch_up(&self, size: u64) -> Result<u64> {
        self.catch_up_to(size, None).await
    }

    /// Indexes every entry below `tree.size` as [`Indexer::catch_up`] does, but only entries
    /// proven to be in `tree` (a checkpoint whose signature the caller checked): before a range
    /// is committed, every bundle read for it must hash to a subtree of `tree`'s root, proven
    /// from the log's other tiles. For an index of a log this process does not run, whose
    /// bundles may disagree with its tiles (a damaged or dishonest mirror).
    ///
    /// # Errors
    ///
    /// As [`Indexer::catch_up`], and [`SearchError::BundleNotInTree`] for a bundle that is not
    /// the tree's; nothing of its range is committed.
    pub async fn catch_up_verified(&self, tree: SearchTree) -> Result<u64> {
        self.catch_up_to(tree.size, Some(tree.root)).await
    }

    async fn catch_up_to(&self, size: u64, root: Option<Hash>) -> Result<u64> {
        let mut from = self.index.indexed_size().await?;
        while from < size {
            let to = size.min((from / COMMIT_ENTRIES + 1) * COMMIT_ENTRIES);
            let bundles = self.bundles(from, to, size).await?;
            if let Some(root) = root {
                verify_bundles(self.storage.as_ref(), SearchTree { size, root }, &bundles).await?;
            }
            let postings = postings(&bundles, from, to);
            match self.index.append(from, to, postings).await {
                Ok(()) => from = to,
                // Another indexer committed first: carry on from where it is.
                Err(StorageError::Precondition { .. }) => {
                    from = self.index.indexed_size().await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(from)
    }

    /// The bundles (at their width in a tree of `size`) that hold entries `from..to`, read.
    async fn bundles(&self, from: u64, to: u64, size: u64) -> Result<Vec<(BundleId, Vec<Bytes>)>> {
        let mut bundles = Vec::new();
        let mut next = from;
        while next < to {
            let Some((bundle, _)) = bundle_for_leaf(LeafIndex::new(next), TreeSize::new(size))
            else {
                break;
            };
            let entries = read_bundle(self.storage.as_ref(), bundle).await?;
            next = bundle_base(bundle) + u64::from(bundle.width.get());
            bundles.push((bundle, entries));
        }
        Ok(bundles)
    }

    /// Follows `sizes` (the sizes of published checkpoints) until the sender is dropped,
    /// catching up after each. Failures are logged and retried after `retry`.
    pub async fn follow(self, mut sizes: watch::Receiver<u64>, retry: Duration) {
        loop {
            let size = *sizes.borrow_and_update();
            match self.catch_up(size).await {
                Ok(indexed) => tracing::debug!(indexed, "search index caught up"),
                Err(error) => {
                    tracing::warn!(%error, size, "search indexing failed; retrying");
                    tokio::time::sleep(retry).await;
                    continue;
                }
            }
            if sizes.changed().await.is_err() {
                return;
            }
        }
    }
}

/// The postings of entries `from..to`, from `bundles` (which hold them).
fn postings(bundles: &[(BundleId, Vec<Bytes>)], from: u64, to: u64) -> Vec<Posting> {
    let mut postings = Vec::new();
    for (bundle, entries) in bundles {
        let base = bundle_base(*bundle);
        for (index, entry) in (base..).zip(entries) {
            if (from..to).contains(&index) {
                postings.extend(search_terms(entry).iter().map(|t| (t.index_key(), index)));
            }
        }
    }
    postings
}

/// Proves that each of `bundles` (each `id.width` entries, at its width in `tree`) is the
/// subtree of `tree` it stands for. The level-0 tile of a bundle is computed from its own
/// entries (their RFC 6962 leaf hashes), never read, so an inclusion proof of its first entry
/// built from it and the log's other tiles verifies against `tree.root` only if the bundle's
/// subtree root is the tree's node there, which (SHA-256 being collision resistant) makes
/// every entry of the bundle the logged one. One proof per bundle, about 510 SHA-256 for a
/// full one; the other tiles are read once for all of them.
async fn verify_bundles(
    storage: &dyn Storage,
    tree: SearchTree,
    bundles: &[(BundleId, Vec<Bytes>)],
) -> Result<()> {
    let size = TreeSize::new(tree.size);
    let mut computed = Vec::with_capacity(bundles.len());
    for (bundle, entries) in bundles {
        let leaves: Vec<Hash> = entries.iter().map(|entry| leaf_hash(entry)).collect();
        let short = || SearchError::ShortBundle {
            path: bundle.path(),
            found: leaves.len(),
            needed: bundle.width.to_usize(),
        };
        let nodes = TileNodes::new(bundle.width, &leaves).ok_or_else(short)?;
        let first_leaf = *leaves.first().ok_or_else(short)?;
        computed.push(ComputedBundle {
            bundle: *bundle,
            nodes: Arc::new(nodes),
            first_leaf,
        });
    }
    let recorder = TileRecorder::new();
    {
        let mut listing = prover_holding(size, &recorder, &computed);
        for one in &computed {
            // The recorder holds no tiles, so this fails; it only lists the other tiles needed.
            let _ = listing.inclusion_proof(one.first_index());
        }
    }
    // The bundles' own level-0 tiles are not asked for: the prover holds them. A proof may
    // still need another level-0 tile (the tree's right edge), read like the upper ones.
    let tiles = read_tiles(storage, recorder.into_tile_ids()).await?;
    let mut prover = prover_holding(size, &tiles, &computed);
    for one in &computed {
        let leaf = one.first_index();
        let not_in_tree = |source| SearchError::BundleNotInTree {
            path: one.bundle.path(),
            size: tree.size,
            source,
        };
        let proof = prover.inclusion_proof(leaf).map_err(not_in_tree)?;
        verify_inclusion(&one.first_leaf, leaf, size, &proof, &tree.root).map_err(not_in_tree)?;
    }
    Ok(())
}

/// A bundle read, with the level-0 tile its entries make.
struct ComputedBundle {
    bundle: BundleId,
    /// The tile over the entries' leaf hashes, expanded.
    nodes: Arc<TileNodes>,
    /// The leaf hash of the bundle's first entry.
    first_leaf: Hash,
}

impl ComputedBundle {
    fn first_index(&self) -> LeafIndex {
        LeafIndex::new(bundle_base(self.bundle))
    }
}

/// A prover over `reader` that already holds each computed bundle's level-0 tile.
fn prover_holding<'r, R: TileReader + ?Sized>(
    size: TreeSize,
    reader: &'r R,
    computed: &[ComputedBundle],
) -> Prover<'r, R> {
    let mut prover = Prover::new(size, reader);
    for one in computed {
        // Taken: the bundle's width is its level-0 tile's at this size.
        prover.insert_nodes(one.bundle.hash_tile(), Arc::clone(&one.nodes));
    }
    prover
}

/// The index of a bundle's first entry.
pub(crate) fn bundle_base(bundle: BundleId) -> u64 {
    bundle.index.get() << 8
}
