//! The error types of this crate.
//!
//! The crate has one error enum per concern, all defined here: parsing a tile path
//! ([`PathError`]), encoding or decoding an entry bundle ([`BundleError`]), reading a tile
//! through a [`TileReader`](crate::TileReader) ([`TileReadError`]), and computing or verifying a
//! proof ([`ProofError`]). Callers branch on the variants; none of them carries a sentence.

use crate::{Hash, TileId};

/// Why a tile or entry-bundle path was rejected by [`TilePath::parse`](crate::TilePath::parse).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path is longer than [`MAX_TILE_PATH_LEN`](crate::MAX_TILE_PATH_LEN); nothing else was checked.
    #[error("tile path is {len} bytes long, more than the maximum of {max}")]
    TooLong {
        /// Length of the rejected path in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The path does not start with `tile/`.
    #[error("tile path does not start with `tile/`")]
    MissingPrefix,
    /// The level element is not `entries` and not a decimal 0..=63 without leading zeros.
    #[error("tile level is not `entries` or a decimal integer 0..=63 without leading zeros")]
    InvalidLevel,
    /// The path ends before the tile index.
    #[error("tile path has no index")]
    MissingIndex,
    /// An element of the index is not three decimal digits, prefixed by `x` on all but the last.
    #[error("tile index element {position} is malformed")]
    InvalidIndexElement {
        /// Zero-based position of the element within the index.
        position: usize,
    },
    /// The index starts with a redundant `x000` element, so the path is not the canonical one.
    #[error("tile index has a redundant leading `x000` element")]
    NonCanonicalIndex,
    /// The index does not fit in 64 bits.
    #[error("tile index does not fit in 64 bits")]
    IndexOverflow,
    /// The `.p/<W>` width is not a decimal 1..=255 without leading zeros.
    #[error("partial tile width is not a decimal integer 1..=255 without leading zeros")]
    InvalidWidth,
}

/// Why an entry bundle could not be encoded, decoded or resumed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// An entry is longer than [`MAX_ENTRY_SIZE`](crate::MAX_ENTRY_SIZE) bytes and cannot be length-prefixed.
    #[error("entry {index} is {len} bytes long, more than the maximum of {max}")]
    EntryTooLarge {
        /// Position of the entry in the input.
        index: usize,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// More than 256 entries were given for one bundle, or the bytes hold more than 256 entries.
    #[error("an entry bundle holds at most {max} entries")]
    TooManyEntries {
        /// The limit (256).
        max: usize,
    },
    /// A bundle must hold at least one entry.
    #[error("an entry bundle holds at least one entry")]
    Empty,
    /// The bytes end inside a two-byte length prefix.
    #[error("entry bundle ends inside the length prefix at offset {offset}")]
    TruncatedLength {
        /// Byte offset of the incomplete prefix.
        offset: usize,
    },
    /// The bytes end inside an entry.
    #[error("entry {index} declares {declared} bytes but only {available} remain")]
    TruncatedEntry {
        /// Position of the entry in the bundle.
        index: usize,
        /// Length declared by its prefix.
        declared: usize,
        /// Bytes left after the prefix.
        available: usize,
    },
    /// The bundle holds a different number of entries than its width (or the tree size) requires.
    #[error("entry bundle holds {actual} entries, expected {expected}")]
    WidthMismatch {
        /// Entries required.
        expected: usize,
        /// Entries found.
        actual: usize,
    },
    /// Appending would make the log larger than `u64::MAX` entries.
    #[error("the log cannot grow beyond u64::MAX entries")]
    SizeOverflow,
}

/// Why a [`TileReader`](crate::TileReader) could not return a tile, or tile bytes were malformed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TileReadError {
    /// The reader does not hold the tile (or holds only a narrower version of it).
    #[error("tile {tile} is not available")]
    Missing {
        /// The tile that was requested.
        tile: TileId,
    },
    /// Tile bytes are not exactly `width * 32` bytes long.
    #[error("tile {tile} has {len} bytes, expected {expected}")]
    WrongLength {
        /// The tile the bytes were supposed to hold.
        tile: TileId,
        /// Length of the bytes.
        len: usize,
        /// Required length.
        expected: usize,
    },
    /// The reader's backend failed; the cause is attached.
    #[error("reading tile {tile} failed")]
    Backend {
        /// The tile that was requested.
        tile: TileId,
        /// What went wrong underneath.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

/// Why a root or proof could not be computed, or why a proof did not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The leaf index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The old tree size of a consistency proof is larger than the new one.
    #[error("old tree size {old} is larger than new tree size {new}")]
    SizeOrder {
        /// The old (first) tree size.
        old: u64,
        /// The new (second) tree size.
        new: u64,
    },
    /// The tree is asked about a size larger than it holds.
    #[error("tree size {size} is larger than the {available} leaves available")]
    SizeUnavailable {
        /// The size asked for.
        size: u64,
        /// Leaves held.
        available: u64,
    },
    /// A tile could not be read.
    #[error(transparent)]
    TileRead(#[from] TileReadError),
    /// A reader returned fewer hashes than the requested width.
    #[error("reader returned {len} hashes for tile {tile}")]
    ShortTile {
        /// The tile requested.
        tile: TileId,
        /// Hashes returned.
        len: usize,
    },
    /// The proof is empty where RFC 9162 requires at least one hash.
    #[error("proof is empty")]
    EmptyProof,
    /// A proof was given where none is needed (equal sizes, or an empty old tree).
    #[error("expected an empty proof, got {len} hashes")]
    UnexpectedProof {
        /// Hashes in the proof.
        len: usize,
    },
    /// The proof has more hashes than the tree shape allows.
    #[error("proof of {len} hashes is too long")]
    ProofTooLong {
        /// Hashes in the proof.
        len: usize,
    },
    /// The proof has fewer hashes than the tree shape requires.
    #[error("proof of {len} hashes is too short")]
    ProofTooShort {
        /// Hashes in the proof.
        len: usize,
    },
    /// The root computed from the proof (the new root, for consistency proofs) differs from the expected one.
    #[error("computed root {computed} does not match expected root {expected}")]
    RootMismatch {
        /// The root the caller supplied.
        expected: Hash,
        /// The root the proof leads to.
        computed: Hash,
    },
    /// The old root computed from a consistency proof differs from the expected one.
    #[error("computed old root {computed} does not match expected old root {expected}")]
    OldRootMismatch {
        /// The old root the caller supplied.
        expected: Hash,
        /// The old root the proof leads to.
        computed: Hash,
    },
}
