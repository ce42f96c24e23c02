//! Pure RFC 6962 Merkle trees in the C2SP tlog-tiles layout.
//!
//! This crate implements, without I/O, async, clocks or randomness:
//!
//! - the hashing of RFC 6962 §2.1 / RFC 9162 §2.1.1 ([`leaf_hash`], [`node_hash`],
//!   [`empty_root`]);
//! - the tile coordinates and paths of [C2SP tlog-tiles](https://c2sp.org/tlog-tiles)
//!   ([`TileId`], [`BundleId`], [`TilePath::parse`], [`tile_ids_for_size`]);
//! - entry bundles ([`encode_bundle`], [`decode_bundle`], [`BundleBuilder`]);
//! - incremental tile building from the right edge of the tree ([`TreeBuilder`]);
//! - roots, inclusion proofs and consistency proofs read from tiles through the small
//!   synchronous [`TileReader`] trait ([`Prover`], [`tree_root`], [`inclusion_proof`],
//!   [`consistency_proof`]), with [`TileMap`] and [`TileRecorder`] for the
//!   record-then-fetch pattern of async callers;
//! - proof verification exactly as RFC 9162 §2.1.3.2 and §2.1.4.2 describe it
//!   ([`verify_inclusion`], [`verify_consistency`]);
//! - [`MemoryTree`], a whole tree in memory that follows the RFC's recursive definitions, as a
//!   reference for tests and clients.
//!
//! Protocol integers are newtypes ([`TreeSize`], [`LeafIndex`], [`TileLevel`], [`TileIndex`],
//! [`TileWidth`]) with checked constructors.
//!
//! # Example
//!
//! ```
//! use rekor_tlog::{
//!     LeafIndex, Prover, TileMap, TreeBuilder, leaf_hash, verify_inclusion,
//! };
//!
//! // Append a batch of entries and collect the tiles to publish.
//! let entries: Vec<Vec<u8>> = (0..300u32).map(|i| i.to_be_bytes().to_vec()).collect();
//! let leaves: Vec<_> = entries.iter().map(|e| leaf_hash(e)).collect();
//! let mut builder = TreeBuilder::new();
//! let changed = builder.append(&leaves);
//! let paths: Vec<String> = changed.iter().map(|t| t.id.path()).collect();
//! assert_eq!(paths, ["tile/0/000", "tile/0/001.p/44", "tile/1/000.p/1"]);
//!
//! // Prove and verify the inclusion of entry 299 from those tiles.
//! let size = builder.size();
//! let root = builder.root();
//! let tiles: TileMap = builder.edge_tiles().into_iter().chain(changed).collect();
//! let mut prover = Prover::new(size, &tiles);
//! assert_eq!(prover.root()?, root);
//! let proof = prover.inclusion_proof(LeafIndex::new(299))?;
//! verify_inclusion(&leaves[299], LeafIndex::new(299), size, &proof, &root)?;
//! # Ok::<(), rekor_tlog::ProofError>(())
//! ```
#![deny(clippy::as_conversions)]

mod builder;
mod bundle;
mod coords;
mod error;
mod hash;
mod memory;
mod path;
mod proof;
mod tile;
mod verify;

pub use builder::TreeBuilder;
pub use bundle::{
    BundleBuilder, MAX_ENTRY_SIZE, decode_bundle, decode_bundle_exact, encode_bundle,
};
pub use coords::{
    BundleId, FULL_TILE_WIDTH, LeafIndex, MAX_TILE_LEVEL, TILE_HEIGHT, TileId, TileIndex,
    TileLevel, TileWidth, TreeSize, bundle_for_leaf, bundle_ids_for_size, new_tile_ids,
    tile_ids_for_size, tile_width_at,
};
pub use error::{BundleError, PathError, ProofError, TileReadError};
pub use hash::{HASH_SIZE, Hash, empty_root, leaf_hash, node_hash};
pub use memory::MemoryTree;
pub use path::{MAX_TILE_PATH_LEN, TilePath};
pub use proof::{Prover, TileNodes, consistency_proof, inclusion_proof, tree_root};
pub use tile::{Tile, TileMap, TileReader, TileRecorder};
pub use verify::{verify_consistency, verify_inclusion};
