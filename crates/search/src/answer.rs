//! Answering a search: the index's candidates below the checkpoint, each confirmed against the
//! entry itself, then the entries the index has not reached yet, scanned directly, each with
//! its inclusion proof in the checkpoint's tree, verified before it is returned.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use rekor_entries::search::{SearchTerm, search_terms};
use rekor_storage::{SearchIndex, Storage};
use rekor_tlog::{
    BundleId, Hash, LeafIndex, Prover, Tile, TileId, TileMap, TileNodes, TileRecorder, TreeSize,
    bundle_for_leaf, inclusion_proof, leaf_hash, verify_inclusion,
};

use crate::error::{Result, SearchError};
use crate::indexer::bundle_base;
use crate::source::{read_bundle, read_entries, read_tile_list};

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
    // The tiles of the first candidates' proofs, read and expanded while their entries are
    // read: almost every candidate is a match, and a cold page's tiles cost as much as its
    // entries.
    let mut early_tiles: Option<ExpandedTiles> = None;

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
        if early_tiles.is_none() {
            let (read, tiles) = tokio::join!(
                bundles.prefetch(&candidates),
                expanded_tiles(storage, proof_tiles(tree, candidates.iter().copied())),
            );
            read?;
            early_tiles = Some(tiles?);
        } else {
            bundles.prefetch(&candidates).await?;
        }
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
    let entries = prove(storage, tree, found, early_tiles.unwrap_or_default()).await?;
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
    let mut bundles = Bundles::new(storage, tree.size);
    bundles.prefetch(&[index]).await?;
    let body = bundles.entry(index).await?;
    let mut proven = prove(storage, tree, vec![(index, body)], Vec::new()).await?;
    proven.pop().ok_or(SearchError::Proof {
        index,
        size: tree.size,
        source: rekor_tlog::ProofError::IndexOutOfRange {
            index,
            size: tree.size,
        },
    })
}

/// Hash tiles with their inner nodes, each at its width in the tree proven into.
type ExpandedTiles = Vec<(TileId, Arc<TileNodes>)>;

/// The tiles of `ids` expanded: from the storage's [`rekor_storage::ReadCache`] when it holds
/// them at that width (a tile of a given width never changes, so they hold for any tree with
/// that tile at that width); the others read, in one [`Storage::read_many`], and expanded.
async fn expanded_tiles(storage: &dyn Storage, ids: Vec<TileId>) -> Result<ExpandedTiles> {
    let cache = storage.read_cache();
    let mut kept: ExpandedTiles = Vec::new();
    let mut missing: Vec<TileId> = Vec::new();
    for id in ids {
        match cache.and_then(|cache| cache.tile_nodes(id)) {
            Some(nodes) => kept.push((id, nodes)),
            None => missing.push(id),
        }
    }
    let tiles = read_tile_list(storage, missing).await?;
    kept.extend(expand(tiles).await);
    Ok(kept)
}

/// Proves each entry into `tree` from the tiles, and verifies each proof.
///
/// The tiles come from `early` (expanded beforehand, perhaps for more entries than were
/// found) or [`expanded_tiles`], once for the whole page; only those the entries' proofs need
/// are used. Only once every proof has verified against `tree.root` are the tiles' nodes and
/// the entries kept in the storage's cache: nothing the signed root did not vouch for is kept.
async fn prove(
    storage: &dyn Storage,
    tree: SearchTree,
    found: Vec<(u64, Bytes)>,
    early: ExpandedTiles,
) -> Result<Vec<FoundEntry>> {
    let size = TreeSize::new(tree.size);
    let cache = storage.read_cache();
    let mut early: HashMap<TileId, Arc<TileNodes>> = early.into_iter().collect();
    let mut have: ExpandedTiles = Vec::new();
    let mut missing: Vec<TileId> = Vec::new();
    for id in proof_tiles(tree, found.iter().map(|(index, _)| *index)) {
        match early.remove(&id) {
            Some(nodes) => have.push((id, nodes)),
            None => missing.push(id),
        }
    }
    have.extend(expanded_tiles(storage, missing).await?);
    // One prover for the page, holding every tile it needs already expanded; the entries share
    // their upper tiles.
    let none = TileMap::new();
    let mut prover = Prover::new(size, &none);
    for (id, nodes) in have {
        // Always taken: `id` is the tile's width at this size, and the cache gives nodes of
        // that width only. Were one refused, the prover would miss it and the page fail, not
        // be wrong.
        prover.insert_nodes(id, nodes);
    }
    let proven = found
        .into_iter()
        .map(|(index, body)| prove_one(&mut prover, tree, index, body))
        .collect::<Result<Vec<_>>>()?;
    if let Some(cache) = cache {
        for (id, nodes) in prover.expanded() {
            cache.keep_tile_nodes(id, nodes);
        }
        for entry in &proven {
            cache.keep_entry(entry.index, &entry.body);
        }
    }
    Ok(proven)
}

/// Tiles a page expands on the task itself; beyond this, half go to a blocking thread.
const EXPAND_INLINE: usize = 8;

/// Expands every tile of `tiles` (about 255 SHA-256 each): for a page of entries spread over
/// the log, about 100 tiles, a few milliseconds, the bulk of its proofs' work. Past
/// [`EXPAND_INLINE`] tiles, half are expanded on a blocking thread while this task does the
/// other half, so a page takes both cores of a small machine.
async fn expand(tiles: Vec<Tile>) -> Vec<(TileId, Arc<TileNodes>)> {
    fn expand_all(tiles: &[Tile]) -> Vec<(TileId, Arc<TileNodes>)> {
        tiles
            .iter()
            .filter_map(|tile| {
                TileNodes::new(tile.id.width, &tile.hashes).map(|nodes| (tile.id, Arc::new(nodes)))
            })
            .collect()
    }
    if tiles.len() <= EXPAND_INLINE {
        return expand_all(&tiles);
    }
    let mut first = tiles;
    let second = first.split_off(first.len() / 2);
    let other = tokio::task::spawn_blocking(move || expand_all(&second));
    let mut expanded = expand_all(&first);
    // If the blocking pool is shutting down, the prover lacks those tiles and the page fails,
    // as any read would by then.
    if let Ok(more) = other.await {
        expanded.extend(more);
    }
    expanded
}

/// The hash tiles the inclusion proofs of `indices` into `tree` need, each at its width in
/// `tree`.
fn proof_tiles(tree: SearchTree, indices: impl IntoIterator<Item = u64>) -> Vec<TileId> {
    let size = TreeSize::new(tree.size);
    let recorder = TileRecorder::new();
    for index in indices {
        // The recorder holds no tiles, so this fails; it only lists what is needed.
        let _ = inclusion_proof(LeafIndex::new(index), size, &recorder);
    }
    recorder.into_tile_ids()
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

/// The entries a search reads: from the storage's cache when it holds them, otherwise from
/// their bundles, each bundle read once per search.
struct Bundles<'a> {
    storage: &'a dyn Storage,
    size: u64,
    /// Entries [`Bundles::prefetch`] found in the storage's cache or read on their own.
    entries: HashMap<u64, Bytes>,
    /// Whole bundles, by their first index, for entries read one after another.
    read: HashMap<u64, Vec<Bytes>>,
}

impl<'a> Bundles<'a> {
    fn new(storage: &'a dyn Storage, size: u64) -> Self {
        Bundles {
            storage,
            size,
            entries: HashMap::new(),
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

    /// Makes the entries of `indices` available: those in the storage's cache from there, the
    /// others read on their own (not their whole bundles), all in one read.
    async fn prefetch(&mut self, indices: &[u64]) -> Result<()> {
        let cache = self.storage.read_cache();
        // By bundle: its id and the (position, index) of each entry wanted from it.
        let mut wanted: BTreeMap<u64, (BundleId, Vec<(usize, u64)>)> = BTreeMap::new();
        for &index in indices {
            let (bundle, position) = self.locate(index)?;
            let base = bundle_base(bundle);
            if self.entries.contains_key(&index) || self.read.contains_key(&base) {
                continue;
            }
            if let Some(body) = cache.and_then(|cache| cache.entry(index)) {
                self.entries.insert(index, body);
                continue;
            }
            wanted
                .entry(base)
                .or_insert((bundle, Vec::new()))
                .1
                .push((position, index));
        }
        if wanted.is_empty() {
            return Ok(());
        }
        // The positions ascending and distinct, as `read_bundle_entries` wants them.
        let mut reads = Vec::with_capacity(wanted.len());
        let mut order = Vec::with_capacity(wanted.len());
        for (bundle, mut pairs) in wanted.into_values() {
            pairs.sort_unstable();
            pairs.dedup();
            reads.push((
                bundle,
                pairs.iter().map(|(position, _)| *position).collect(),
            ));
            order.push(
                pairs
                    .into_iter()
                    .map(|(_, index)| index)
                    .collect::<Vec<_>>(),
            );
        }
        let read = read_entries(self.storage, reads).await?;
        for (indices, entries) in order.into_iter().zip(read) {
            self.entries.extend(indices.into_iter().zip(entries));
        }
        Ok(())
    }

    async fn entry(&mut self, index: u64) -> Result<Bytes> {
        if let Some(body) = self.entries.get(&index) {
            return Ok(body.clone());
        }
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
