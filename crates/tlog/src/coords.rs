//! Protocol integers and tile coordinates (C2SP tlog-tiles, "Merkle Tree" and "Log entries").

use std::fmt;

/// Height of every tile: a tile holds up to 2^8 = 256 hashes of one tree level.
pub const TILE_HEIGHT: u8 = 8;

/// Number of hashes in a full tile, and of entries in a full entry bundle.
pub const FULL_TILE_WIDTH: u16 = 256;

/// Highest tile level a path may name (C2SP tlog-tiles: `<L>` is 0..=63).
pub const MAX_TILE_LEVEL: u8 = 63;

/// Returns the low 8 bits of `value`.
pub(crate) fn low_byte(value: u64) -> u8 {
    value.to_le_bytes()[0]
}

/// Returns `value >> (8 * level)`, or 0 when the shift leaves nothing.
pub(crate) fn shift_levels(value: u64, level: u8) -> u64 {
    value.checked_shr(u32::from(level) * 8).unwrap_or(0)
}

macro_rules! u64_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(u64);

        impl $name {
            /// Wraps a value; every `u64` is valid.
            #[must_use]
            pub const fn new(value: u64) -> Self {
                Self(value)
            }

            /// The wrapped value.
            #[must_use]
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl From<u64> for $name {
            fn from(value: u64) -> Self {
                Self(value)
            }
        }

        impl From<$name> for u64 {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl TryFrom<i64> for $name {
            type Error = std::num::TryFromIntError;

            /// Converts a signed integer (for example a protobuf `int64`); negative values fail.
            fn try_from(value: i64) -> Result<Self, Self::Error> {
                u64::try_from(value).map(Self)
            }
        }

        impl TryFrom<$name> for i64 {
            type Error = std::num::TryFromIntError;

            /// Converts to a signed integer (for example a protobuf `int64`); values above `i64::MAX` fail.
            fn try_from(value: $name) -> Result<Self, Self::Error> {
                i64::try_from(value.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

u64_newtype!(
    /// The number of leaves in a tree.
    TreeSize
);
u64_newtype!(
    /// The zero-based position of a leaf (log entry) in the tree.
    LeafIndex
);
u64_newtype!(
    /// The zero-based position of a tile within its level, or of an entry bundle.
    TileIndex
);

/// The level of a hash tile: level `L` holds hashes of subtrees of 256^L leaves. 0..=63.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TileLevel(u8);

impl TileLevel {
    /// Level 0: tiles of leaf hashes.
    pub const ZERO: TileLevel = TileLevel(0);

    /// Returns the level, or `None` if it is above [`MAX_TILE_LEVEL`].
    #[must_use]
    pub const fn new(level: u8) -> Option<Self> {
        if level <= MAX_TILE_LEVEL {
            Some(TileLevel(level))
        } else {
            None
        }
    }

    /// The level as a number.
    #[must_use]
    pub const fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for TileLevel {
    type Error = u8;

    /// Fails with the rejected value if it is above [`MAX_TILE_LEVEL`].
    fn try_from(level: u8) -> Result<Self, Self::Error> {
        TileLevel::new(level).ok_or(level)
    }
}

impl fmt::Display for TileLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The number of hashes in a tile or entries in a bundle: 1..=256 (256 is a full tile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileWidth(u16);

impl TileWidth {
    /// The width of a full tile or bundle.
    pub const FULL: TileWidth = TileWidth(FULL_TILE_WIDTH);

    /// Returns the width, or `None` unless it is in 1..=256.
    #[must_use]
    pub const fn new(width: u16) -> Option<Self> {
        if width >= 1 && width <= FULL_TILE_WIDTH {
            Some(TileWidth(width))
        } else {
            None
        }
    }

    /// The width of a partial tile holding `count` hashes; `None` for 0.
    #[must_use]
    pub const fn partial(count: u8) -> Option<Self> {
        if count == 0 {
            None
        } else {
            // Widening u8 -> u16 cannot lose information.
            Some(TileWidth(u16::from_le_bytes([count, 0])))
        }
    }

    /// The width as a number.
    #[must_use]
    pub const fn get(self) -> u16 {
        self.0
    }

    /// The width as a `usize`, for slicing.
    #[must_use]
    pub fn to_usize(self) -> usize {
        usize::from(self.0)
    }

    /// Whether this is the full width, 256.
    #[must_use]
    pub const fn is_full(self) -> bool {
        self.0 == FULL_TILE_WIDTH
    }
}

impl TryFrom<u16> for TileWidth {
    type Error = u16;

    /// Fails with the rejected value unless it is in 1..=256.
    fn try_from(width: u16) -> Result<Self, Self::Error> {
        TileWidth::new(width).ok_or(width)
    }
}

impl fmt::Display for TileWidth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Names one hash tile: `tile/<L>/<N>[.p/<W>]`.
///
/// Ordering is by level, then index, then width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    /// The tile level.
    pub level: TileLevel,
    /// The index of the tile within its level.
    pub index: TileIndex,
    /// The number of hashes in the tile.
    pub width: TileWidth,
}

impl TileId {
    /// Builds a tile id.
    #[must_use]
    pub const fn new(level: TileLevel, index: TileIndex, width: TileWidth) -> Self {
        TileId {
            level,
            index,
            width,
        }
    }

    /// Whether the tile is full (256 hashes); full tiles have no `.p/<W>` suffix.
    #[must_use]
    pub const fn is_full(&self) -> bool {
        self.width.is_full()
    }

    /// The path of the tile below the log prefix, for example `tile/0/x001/x234/067.p/17`.
    #[must_use]
    pub fn path(&self) -> String {
        let mut out = String::with_capacity(40);
        out.push_str("tile/");
        push_decimal(&mut out, u64::from(self.level.get()));
        out.push('/');
        push_index_and_width(&mut out, self.index, self.width);
        out
    }
}

impl fmt::Display for TileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// Names one entry bundle: `tile/entries/<N>[.p/<W>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BundleId {
    /// The index of the bundle (bundle N holds entries 256·N to 256·N + W − 1).
    pub index: TileIndex,
    /// The number of entries in the bundle.
    pub width: TileWidth,
}

impl BundleId {
    /// Builds a bundle id.
    #[must_use]
    pub const fn new(index: TileIndex, width: TileWidth) -> Self {
        BundleId { index, width }
    }

    /// Whether the bundle is full (256 entries).
    #[must_use]
    pub const fn is_full(&self) -> bool {
        self.width.is_full()
    }

    /// The path of the bundle below the log prefix, for example `tile/entries/x001/x234/067`.
    #[must_use]
    pub fn path(&self) -> String {
        let mut out = String::with_capacity(45);
        out.push_str("tile/entries/");
        push_index_and_width(&mut out, self.index, self.width);
        out
    }

    /// The level-0 hash tile that holds the leaf hashes of this bundle's entries.
    #[must_use]
    pub const fn hash_tile(&self) -> TileId {
        TileId::new(TileLevel::ZERO, self.index, self.width)
    }
}

impl fmt::Display for BundleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

fn push_decimal(out: &mut String, value: u64) {
    use fmt::Write;
    // Writing to a String cannot fail.
    let _ = write!(out, "{value}");
}

/// Appends `<N>[.p/<W>]`: N in 3-digit groups, `x` before all but the last.
fn push_index_and_width(out: &mut String, index: TileIndex, width: TileWidth) {
    use fmt::Write;
    // u64::MAX has 20 decimal digits: at most 7 groups.
    let mut groups = [0u64; 7];
    let mut count = 0;
    let mut rest = index.get();
    for slot in &mut groups {
        *slot = rest % 1000;
        rest /= 1000;
        count += 1;
        if rest == 0 {
            break;
        }
    }
    for (position, group) in groups.iter().take(count).rev().enumerate() {
        // Writing to a String cannot fail.
        let _ = if position + 1 < count {
            write!(out, "x{group:03}/")
        } else {
            write!(out, "{group:03}")
        };
    }
    if !width.is_full() {
        let _ = write!(out, ".p/{}", width.get());
    }
}

/// The width of tile `index` at level `level` in a tree of `size` leaves, or `None` if that tile
/// is empty at that size.
#[must_use]
pub fn tile_width_at(level: TileLevel, index: TileIndex, size: TreeSize) -> Option<TileWidth> {
    let row = shift_levels(size.get(), level.get());
    let start = index.get().checked_mul(u64::from(FULL_TILE_WIDTH))?;
    let available = row.checked_sub(start)?;
    if available >= u64::from(FULL_TILE_WIDTH) {
        Some(TileWidth::FULL)
    } else {
        TileWidth::partial(low_byte(available))
    }
}

/// Every hash tile of a tree of `size` leaves: all full tiles and the partial tile (if any) at
/// each level, ordered by level then index.
///
/// The list has about `size / 255` entries; it is meant for tests and small trees.
#[must_use]
pub fn tile_ids_for_size(size: TreeSize) -> Vec<TileId> {
    new_tile_ids(TreeSize::new(0), size)
}

/// The hash tiles that must be written when a tree grows from `old` to `new` leaves: every tile
/// that became full, and the new partial tile at each level whose contents changed. Ordered by
/// level then index; empty if `new <= old`.
///
/// These are exactly the tiles that [`TreeBuilder::append`](crate::TreeBuilder::append) returns.
#[must_use]
pub fn new_tile_ids(old: TreeSize, new: TreeSize) -> Vec<TileId> {
    let mut out = Vec::new();
    if new <= old {
        return out;
    }
    for raw_level in 0..=MAX_TILE_LEVEL {
        let Some(level) = TileLevel::new(raw_level) else {
            break;
        };
        let old_row = shift_levels(old.get(), raw_level);
        let new_row = shift_levels(new.get(), raw_level);
        if new_row == 0 {
            break;
        }
        if old_row == new_row {
            continue;
        }
        for index in (old_row >> 8)..(new_row >> 8) {
            out.push(TileId::new(level, TileIndex::new(index), TileWidth::FULL));
        }
        if let Some(width) = TileWidth::partial(low_byte(new_row)) {
            out.push(TileId::new(level, TileIndex::new(new_row >> 8), width));
        }
    }
    out
}

/// Every entry bundle of a log of `size` entries: the full bundles and the partial one, if any.
#[must_use]
pub fn bundle_ids_for_size(size: TreeSize) -> Vec<BundleId> {
    tile_ids_for_size(size)
        .into_iter()
        .filter(|tile| tile.level == TileLevel::ZERO)
        .map(|tile| BundleId::new(tile.index, tile.width))
        .collect()
}

/// The entry bundle that holds leaf `index` in a log of `size` entries, and the position of the
/// entry within it; `None` if `index >= size`.
#[must_use]
pub fn bundle_for_leaf(index: LeafIndex, size: TreeSize) -> Option<(BundleId, usize)> {
    if index >= LeafIndex::new(size.get()) {
        return None;
    }
    let bundle = TileIndex::new(index.get() >> 8);
    let width = tile_width_at(TileLevel::ZERO, bundle, size)?;
    Some((
        BundleId::new(bundle, width),
        usize::from(low_byte(index.get())),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(level: u8, index: u64, width: u16) -> TileId {
        TileId::new(
            TileLevel::new(level).unwrap(),
            TileIndex::new(index),
            TileWidth::new(width).unwrap(),
        )
    }

    #[test]
    fn spec_path_examples() {
        // C2SP tlog-tiles: "index 1234067 will be encoded as x001/x234/067".
        assert_eq!(id(0, 1_234_067, 256).path(), "tile/0/x001/x234/067");
        assert_eq!(id(3, 1_234_067, 17).path(), "tile/3/x001/x234/067.p/17");
        assert_eq!(id(0, 0, 256).path(), "tile/0/000");
        assert_eq!(id(1, 999, 1).path(), "tile/1/999.p/1");
        assert_eq!(id(1, 1000, 255).path(), "tile/1/x001/000.p/255");
        assert_eq!(
            BundleId::new(TileIndex::new(1_234_067), TileWidth::FULL).path(),
            "tile/entries/x001/x234/067"
        );
        assert_eq!(
            BundleId::new(TileIndex::new(5), TileWidth::new(9).unwrap()).path(),
            "tile/entries/005.p/9"
        );
        assert_eq!(
            id(63, u64::MAX, 255).path(),
            "tile/63/x018/x446/x744/x073/x709/x551/615.p/255"
        );
    }

    #[test]
    fn spec_inventory_for_70000() {
        // C2SP tlog-tiles: "a tree of size 70,000 will be represented by 273 full level 0 tiles,
        // one partial level 0 tile of width 112, one full level 1 tile, one partial level 1 tile
        // of width 17, and one partial level 2 tile of width 1."
        let tiles = tile_ids_for_size(TreeSize::new(70_000));
        let level = |l: u8| -> Vec<TileId> {
            tiles
                .iter()
                .copied()
                .filter(|t| t.level.get() == l)
                .collect()
        };
        let l0 = level(0);
        assert_eq!(l0.len(), 274);
        assert_eq!(l0.iter().filter(|t| t.is_full()).count(), 273);
        assert!(
            l0[..273]
                .iter()
                .enumerate()
                .all(|(i, t)| t.index.get() == u64::try_from(i).unwrap())
        );
        assert_eq!(l0[273], id(0, 273, 112));
        assert_eq!(level(1), vec![id(1, 0, 256), id(1, 1, 17)]);
        assert_eq!(level(2), vec![id(2, 0, 1)]);
        assert_eq!(tiles.len(), 274 + 2 + 1);
        let bundles = bundle_ids_for_size(TreeSize::new(70_000));
        assert_eq!(bundles.len(), 274);
        assert_eq!(bundles[273].path(), "tile/entries/273.p/112");
    }

    #[test]
    fn spec_inventory_for_256_and_small_sizes() {
        // "a tree of size 256 will be represented by a full level 0 tile and a partial level 1
        // tile of width 1."
        assert_eq!(
            tile_ids_for_size(TreeSize::new(256)),
            vec![id(0, 0, 256), id(1, 0, 1)]
        );
        assert!(tile_ids_for_size(TreeSize::new(0)).is_empty());
        assert_eq!(tile_ids_for_size(TreeSize::new(1)), vec![id(0, 0, 1)]);
        assert_eq!(
            tile_ids_for_size(TreeSize::new(65_536)),
            [
                // 256 full level-0 tiles, then level 1 full, then level 2 partial.
                (0..256).map(|i| id(0, i, 256)).collect::<Vec<_>>(),
                vec![id(1, 0, 256), id(2, 0, 1)]
            ]
            .concat()
        );
    }

    #[test]
    fn growth_inventory() {
        assert_eq!(
            new_tile_ids(TreeSize::new(300), TreeSize::new(600)),
            vec![id(0, 1, 256), id(0, 2, 88), id(1, 0, 2)]
        );
        assert_eq!(
            new_tile_ids(TreeSize::new(300), TreeSize::new(301)),
            vec![id(0, 1, 45)]
        );
        assert!(new_tile_ids(TreeSize::new(5), TreeSize::new(5)).is_empty());
        assert!(new_tile_ids(TreeSize::new(6), TreeSize::new(5)).is_empty());
    }

    #[test]
    fn width_and_level_bounds() {
        assert!(TileWidth::new(0).is_none());
        assert!(TileWidth::new(257).is_none());
        assert_eq!(TileWidth::new(256), Some(TileWidth::FULL));
        assert!(TileWidth::partial(0).is_none());
        assert_eq!(TileWidth::partial(255).map(TileWidth::get), Some(255));
        assert!(TileLevel::new(64).is_none());
        assert_eq!(TileLevel::new(63).map(TileLevel::get), Some(63));
        assert!(TreeSize::try_from(-1_i64).is_err());
        assert_eq!(TreeSize::try_from(7_i64).unwrap().get(), 7);
        assert!(i64::try_from(LeafIndex::new(u64::MAX)).is_err());
    }

    #[test]
    fn widths_at_size() {
        let size = TreeSize::new(70_000);
        let l = |v| TileLevel::new(v).unwrap();
        assert_eq!(
            tile_width_at(l(0), TileIndex::new(0), size),
            Some(TileWidth::FULL)
        );
        assert_eq!(
            tile_width_at(l(0), TileIndex::new(273), size).map(TileWidth::get),
            Some(112)
        );
        assert_eq!(tile_width_at(l(0), TileIndex::new(274), size), None);
        assert_eq!(
            tile_width_at(l(2), TileIndex::new(0), size).map(TileWidth::get),
            Some(1)
        );
        assert_eq!(tile_width_at(l(3), TileIndex::new(0), size), None);
        assert_eq!(
            tile_width_at(l(63), TileIndex::new(0), TreeSize::new(u64::MAX)),
            None
        );
        assert_eq!(tile_width_at(l(0), TileIndex::new(u64::MAX), size), None);
    }

    #[test]
    fn leaf_to_bundle() {
        let size = TreeSize::new(600);
        let (bundle, offset) = bundle_for_leaf(LeafIndex::new(599), size).unwrap();
        assert_eq!(bundle.path(), "tile/entries/002.p/88");
        assert_eq!(offset, 87);
        let (bundle, offset) = bundle_for_leaf(LeafIndex::new(256), size).unwrap();
        assert_eq!(bundle.path(), "tile/entries/001");
        assert_eq!(offset, 0);
        assert!(bundle_for_leaf(LeafIndex::new(600), size).is_none());
    }
}
