//! Differential tests against `tlog_tiles` 0.2.0, an independent Rust port of Go's sumdb
//! `tlog` package. It stores the tree as a flat array of "stored hashes" rather than tiles, and
//! its tile paths use the Go sumdb layout `tile/<H>/<L>/<N>`; with H = 8 they are our C2SP paths
//! with the height element added.
//!
//! The tree has 100,000 leaves. Debug builds of SHA-256 are slow, so debug runs sample fewer
//! sizes and proofs than release runs (`cargo test --release`), but always cover the full tree.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions fail loudly on bad fixtures"
)]

use std::{borrow::Cow, sync::OnceLock};

use rekor_tlog::{
    Hash, LeafIndex, Prover, Tile, TileIndex, TileLevel, TileMap, TileReader, TileRecorder,
    TileWidth, TreeBuilder, TreeSize, consistency_proof, inclusion_proof, new_tile_ids,
    tile_ids_for_size, tree_root, verify_consistency, verify_inclusion,
};
use tlog_tiles as theirs;

const LEAVES: u64 = 100_000;

/// Sampling factor: release runs check ten times as many sizes and proofs.
const SCALE: usize = if cfg!(debug_assertions) { 1 } else { 10 };

/// splitmix64: a deterministic generator for test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn idx(i: u64) -> usize {
    usize::try_from(i).unwrap()
}

/// Distinct, arbitrary leaf hashes (the tree never looks inside them).
fn make_leaves(n: u64) -> Vec<Hash> {
    let mut rng = Rng(7);
    (0..n)
        .map(|_| {
            let mut bytes = [0u8; 32];
            for chunk in bytes.chunks_exact_mut(8) {
                chunk.copy_from_slice(&rng.next().to_le_bytes());
            }
            Hash(bytes)
        })
        .collect()
}

fn to_theirs(h: &Hash) -> theirs::Hash {
    theirs::Hash(h.0)
}

fn from_theirs(h: &theirs::Hash) -> Hash {
    Hash(h.0)
}

fn proof_to_theirs(p: &[Hash]) -> Vec<theirs::Hash> {
    p.iter().map(to_theirs).collect()
}

/// Their flat stored-hash array, read through their `HashReader` trait.
struct Stored<'a>(&'a [theirs::Hash]);

impl theirs::HashReader for Stored<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<theirs::Hash>, theirs::Error> {
        indexes
            .iter()
            .map(|i| {
                self.0
                    .get(idx(*i))
                    .copied()
                    .ok_or(theirs::Error::IndexesNotInTree)
            })
            .collect()
    }
}

/// Our tiles, served through their tile-reader trait (their code authenticates every tile it
/// reads against the tree hash).
struct OurTiles<'a>(&'a TileMap);

impl theirs::TileReader for OurTiles<'_> {
    fn height(&self) -> u8 {
        8
    }

    fn read_tiles(&self, tiles: &[theirs::Tile]) -> Result<Vec<Vec<u8>>, theirs::Error> {
        tiles
            .iter()
            .map(|t| {
                assert_eq!(t.height(), 8);
                let width = TileWidth::new(u16::try_from(t.width()).unwrap()).unwrap();
                let hashes = self
                    .0
                    .read_tile(
                        TileLevel::new(t.level()).unwrap(),
                        TileIndex::new(t.level_index()),
                        width,
                    )
                    .map_err(|_| theirs::Error::InvalidTile)?;
                Ok(hashes[..width.to_usize()]
                    .iter()
                    .flat_map(|h| h.0)
                    .collect())
            })
            .collect()
    }

    fn save_tiles(&self, _: &[theirs::Tile], _: &[Vec<u8>]) {}
}

struct Fixture {
    leaves: Vec<Hash>,
    /// Their stored hashes for all leaves.
    stored: Vec<theirs::Hash>,
    /// Every tile of the full tree, from our builder.
    tiles: TileMap,
    /// What our builder did for each random batch it appended.
    batches: Vec<Batch>,
}

/// One `TreeBuilder::append` call and what it left behind.
struct Batch {
    old: u64,
    new: u64,
    /// The tiles `append` returned.
    changed: Vec<Tile>,
    /// `edge_tiles()` after the append.
    edge: Vec<Tile>,
    /// `root()` after the append.
    root: Hash,
}

impl Fixture {
    fn their_root(&self, size: u64) -> theirs::Hash {
        theirs::tree_hash(size, &Stored(&self.stored)).unwrap()
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let leaves = make_leaves(LEAVES);
        let mut stored: Vec<theirs::Hash> = Vec::with_capacity(idx(LEAVES) * 2);
        for (n, leaf) in leaves.iter().enumerate() {
            let n = u64::try_from(n).unwrap();
            let new = theirs::stored_hashes_for_record_hash(n, to_theirs(leaf), &Stored(&stored))
                .unwrap();
            stored.extend(new);
        }
        // Append in random batches: tiny ones, ones below a tile, ones spanning several tiles.
        let mut rng = Rng(5);
        let mut builder = TreeBuilder::new();
        let mut tiles = TileMap::new();
        let mut batches = Vec::new();
        while builder.size().get() < LEAVES {
            let old = builder.size().get();
            let batch = match rng.next() % 4 {
                0 => rng.range(1, 3),
                1 => rng.range(1, 300),
                _ => rng.range(200, 1500),
            }
            .min(LEAVES - old);
            let changed = builder.append(&leaves[idx(old)..idx(old + batch)]);
            tiles.extend(changed.iter().cloned());
            batches.push(Batch {
                old,
                new: builder.size().get(),
                changed,
                edge: builder.edge_tiles(),
                root: builder.root(),
            });
        }
        Fixture {
            leaves,
            stored,
            tiles,
            batches,
        }
    })
}

/// Sizes worth checking: small ones, tile and power-of-two boundaries, and random ones.
fn sample_sizes(rng: &mut Rng, random: usize) -> Vec<u64> {
    let mut sizes: Vec<u64> = (1..=20).collect();
    for base in [255u64, 256, 512, 4096, 65_535, 65_536, 65_792, LEAVES - 1] {
        sizes.extend([base - 1, base, base + 1]);
    }
    sizes.push(LEAVES);
    sizes.extend((0..random).map(|_| rng.range(1, LEAVES)));
    sizes.retain(|s| *s <= LEAVES);
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

#[test]
fn roots_match_theirs() {
    let f = fixture();
    let mut rng = Rng(1);
    for size in sample_sizes(&mut rng, 30 * SCALE) {
        let theirs = from_theirs(&f.their_root(size));
        let ours = tree_root(TreeSize::new(size), &f.tiles).unwrap();
        assert_eq!(ours, theirs, "root at size {size}");
    }
    assert_eq!(
        tree_root(TreeSize::new(0), &f.tiles).unwrap(),
        from_theirs(&theirs::EMPTY_HASH)
    );
}

#[test]
fn inclusion_proofs_match_and_cross_verify() {
    let f = fixture();
    let mut rng = Rng(2);
    let mut checked = 0;
    for size in sample_sizes(&mut rng, 12 * SCALE) {
        let root = from_theirs(&f.their_root(size));
        let mut prover = Prover::new(TreeSize::new(size), &f.tiles);
        let mut indices = vec![0, size - 1, size / 2];
        indices.extend((0..4 * SCALE).map(|_| rng.range(0, size - 1)));
        for index in indices {
            let ours = prover.inclusion_proof(LeafIndex::new(index)).unwrap();
            let theirs = theirs::prove_record(size, index, &Stored(&f.stored)).unwrap();
            assert_eq!(
                ours,
                theirs.iter().map(from_theirs).collect::<Vec<_>>(),
                "({index}, {size})"
            );
            let leaf = f.leaves[idx(index)];
            // Ours verified by theirs, theirs by ours.
            theirs::check_record(
                &proof_to_theirs(&ours),
                size,
                to_theirs(&root),
                index,
                to_theirs(&leaf),
            )
            .unwrap();
            let theirs_as_ours: Vec<Hash> = theirs.iter().map(from_theirs).collect();
            verify_inclusion(
                &leaf,
                LeafIndex::new(index),
                TreeSize::new(size),
                &theirs_as_ours,
                &root,
            )
            .unwrap();
            checked += 1;
        }
    }
    assert!(checked > 100);
}

#[test]
fn consistency_proofs_match_and_cross_verify() {
    let f = fixture();
    let mut rng = Rng(3);
    let mut pairs: Vec<(u64, u64)> = vec![
        (1, LEAVES),
        (255, 256),
        (256, 257),
        (256, 65_536),
        (65_535, 65_537),
        (LEAVES - 1, LEAVES),
        (LEAVES, LEAVES),
        (1, 1),
    ];
    for _ in 0..40 * SCALE {
        let new = rng.range(1, LEAVES);
        // Half the pairs close together, half far apart.
        let old = if rng.next().is_multiple_of(2) {
            new.saturating_sub(rng.range(0, 600)).max(1)
        } else {
            rng.range(1, new)
        };
        pairs.push((old, new));
    }
    for (old, new) in pairs {
        let ours = consistency_proof(TreeSize::new(old), TreeSize::new(new), &f.tiles).unwrap();
        let theirs = theirs::prove_tree(new, old, &Stored(&f.stored)).unwrap();
        let theirs_as_ours: Vec<Hash> = theirs.iter().map(from_theirs).collect();
        assert_eq!(ours, theirs_as_ours, "({old}, {new})");
        let (old_root, new_root) = (f.their_root(old), f.their_root(new));
        theirs::check_tree(&proof_to_theirs(&ours), new, new_root, old, old_root).unwrap();
        verify_consistency(
            TreeSize::new(old),
            TreeSize::new(new),
            &from_theirs(&old_root),
            &from_theirs(&new_root),
            &theirs_as_ours,
        )
        .unwrap();
    }
}

#[test]
fn every_tile_matches_theirs() {
    let f = fixture();
    let ids = tile_ids_for_size(TreeSize::new(LEAVES));
    let their_ids = theirs::Tile::new_tiles(8, 0, LEAVES);
    assert_eq!(ids.len(), their_ids.len());
    for (id, their) in ids.iter().zip(&their_ids) {
        assert_eq!(
            (
                u64::from(id.level.get()),
                id.index.get(),
                u32::from(id.width.get())
            ),
            (u64::from(their.level()), their.level_index(), their.width())
        );
        // Paths: theirs is ours with the height element inserted.
        let ours_path = id.path();
        assert_eq!(their.path(), ours_path.replacen("tile/", "tile/8/", 1));
        assert_eq!(theirs::Tile::from_path(&their.path()).unwrap(), *their);
        // Contents: theirs read out of the stored hashes, ours from the builder.
        let data = their.read_data(&Stored(&f.stored)).unwrap();
        let ours = f.tiles.read_tile(id.level, id.index, id.width).unwrap();
        let tile = Tile {
            id: *id,
            hashes: ours[..id.width.to_usize()].to_vec(),
        };
        assert_eq!(tile.to_bytes(), data, "tile {ours_path}");
    }
}

#[test]
fn their_tile_reader_authenticates_our_tiles() {
    let f = fixture();
    let mut rng = Rng(4);
    for _ in 0..5 * SCALE {
        let size = rng.range(1, LEAVES);
        let index = rng.range(0, size - 1);
        let root = f.their_root(size);
        let our_tiles = OurTiles(&f.tiles);
        let reader = theirs::TileHashReader::new(size, root, &our_tiles);
        // Their proof, computed from our tiles after checking them against the root.
        let from_our_tiles = theirs::prove_record(size, index, &reader).unwrap();
        let ours = inclusion_proof(LeafIndex::new(index), TreeSize::new(size), &f.tiles).unwrap();
        assert_eq!(
            ours,
            from_our_tiles.iter().map(from_theirs).collect::<Vec<_>>()
        );
        assert_eq!(theirs::tree_hash(size, &reader).unwrap(), root);
    }
}

/// For each random batch the fixture appended: the returned tiles are exactly the ones their
/// `new_tiles` lists, with their contents; and the edge tiles plus the returned tiles alone give
/// the root and an inclusion proof for every leaf of the batch (a sample of which is compared
/// with theirs). This is the property the log pipeline relies on.
#[test]
fn batches_match_theirs_and_suffice_for_proofs() {
    let f = fixture();
    let mut rng = Rng(6);
    assert!(f.batches.len() > 100);
    assert_eq!(f.batches.last().map(|b| b.new), Some(LEAVES));
    for (number, batch) in f.batches.iter().enumerate() {
        let (old, new) = (batch.old, batch.new);
        assert_eq!(
            old,
            if number == 0 {
                0
            } else {
                f.batches[number - 1].new
            }
        );

        let their_ids = theirs::Tile::new_tiles(8, old, new);
        assert_eq!(batch.changed.len(), their_ids.len(), "batch {old}..{new}");
        for (tile, their) in batch.changed.iter().zip(&their_ids) {
            assert_eq!(tile.id.path().replacen("tile/", "tile/8/", 1), their.path());
            assert_eq!(
                tile.to_bytes(),
                their.read_data(&Stored(&f.stored)).unwrap()
            );
        }
        assert_eq!(
            batch.changed.iter().map(|t| t.id).collect::<Vec<_>>(),
            new_tile_ids(TreeSize::new(old), TreeSize::new(new))
        );

        let root = from_theirs(&f.their_root(new));
        assert_eq!(batch.root, root);
        // Debug builds hash slowly: there, prove every third batch (all of its leaves).
        if SCALE == 1 && number % 3 != 0 {
            continue;
        }
        let tiles: TileMap = batch.edge.iter().chain(&batch.changed).cloned().collect();
        let mut prover = Prover::new(TreeSize::new(new), &tiles);
        assert_eq!(prover.root().unwrap(), root);
        let sampled = [old, new - 1, rng.range(old, new - 1)];
        for index in old..new {
            let proof = prover.inclusion_proof(LeafIndex::new(index)).unwrap();
            if SCALE > 1 || sampled.contains(&index) {
                let theirs = theirs::prove_record(new, index, &Stored(&f.stored)).unwrap();
                assert_eq!(proof, theirs.iter().map(from_theirs).collect::<Vec<_>>());
                verify_inclusion(
                    &f.leaves[idx(index)],
                    LeafIndex::new(index),
                    TreeSize::new(new),
                    &proof,
                    &root,
                )
                .unwrap();
            }
        }
    }
}

#[test]
fn tile_reads_come_at_the_width_of_the_tree_size() {
    // A reader that serves exactly the requested width, to check the widths requested.
    struct Exact<'a>(&'a TileMap, std::cell::RefCell<Vec<(u8, u64, u16)>>);
    impl TileReader for Exact<'_> {
        fn read_tile(
            &self,
            level: TileLevel,
            index: TileIndex,
            width: TileWidth,
        ) -> Result<Cow<'_, [Hash]>, rekor_tlog::TileReadError> {
            self.1
                .borrow_mut()
                .push((level.get(), index.get(), width.get()));
            let tile = self.0.read_tile(level, index, width)?;
            Ok(Cow::Owned(tile[..width.to_usize()].to_vec()))
        }
    }
    let f = fixture();
    let reader = Exact(&f.tiles, Default::default());
    let size = 70_000;
    tree_root(TreeSize::new(size), &reader).unwrap();
    let mut reads = reader.1.borrow().clone();
    reads.sort_unstable();
    // The root of a 70,000-leaf tree needs exactly the three edge tiles at their widths.
    assert_eq!(reads, vec![(0, 273, 112), (1, 1, 17), (2, 0, 1)]);
}

/// The async pattern: run an operation on a recorder, fetch exactly the recorded tiles (at the
/// recorded widths) from storage, and run it again on those tiles alone.
#[test]
fn recorded_tiles_suffice() {
    let f = fixture();
    let fetch = |recorder: TileRecorder| -> TileMap {
        recorder
            .into_tile_ids()
            .into_iter()
            .map(|id| {
                let hashes = f.tiles.read_tile(id.level, id.index, id.width).unwrap();
                Tile {
                    id,
                    hashes: hashes[..id.width.to_usize()].to_vec(),
                }
            })
            .collect()
    };
    let mut rng = Rng(8);
    for _ in 0..6 * SCALE {
        let size = rng.range(1, LEAVES);
        let index = rng.range(0, size - 1);
        let old = rng.range(1, size);
        let s = TreeSize::new(size);

        let recorder = TileRecorder::new();
        assert!(tree_root(s, &recorder).is_err());
        let tiles = fetch(recorder);
        assert_eq!(
            tree_root(s, &tiles).unwrap(),
            from_theirs(&f.their_root(size))
        );

        let recorder = TileRecorder::new();
        assert!(inclusion_proof(LeafIndex::new(index), s, &recorder).is_err());
        let tiles = fetch(recorder);
        let want = theirs::prove_record(size, index, &Stored(&f.stored)).unwrap();
        assert_eq!(
            inclusion_proof(LeafIndex::new(index), s, &tiles).unwrap(),
            want.iter().map(from_theirs).collect::<Vec<_>>()
        );

        let recorder = TileRecorder::new();
        let recorded = consistency_proof(TreeSize::new(old), s, &recorder);
        assert_eq!(recorded.is_err(), old != size);
        let tiles = fetch(recorder);
        let want = theirs::prove_tree(size, old, &Stored(&f.stored)).unwrap();
        assert_eq!(
            consistency_proof(TreeSize::new(old), s, &tiles).unwrap(),
            want.iter().map(from_theirs).collect::<Vec<_>>()
        );
    }
}
