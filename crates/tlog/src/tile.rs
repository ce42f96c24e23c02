//! Hash tiles, and the small synchronous trait through which proofs read them.

use std::{
    borrow::Cow,
    cell::RefCell,
    collections::{BTreeSet, HashMap},
};

use crate::{HASH_SIZE, Hash, TileId, TileIndex, TileLevel, TileReadError, TileWidth};

/// One hash tile: its id and its `id.width` hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tile {
    /// Which tile this is.
    pub id: TileId,
    /// The hashes, `id.width` of them.
    pub hashes: Vec<Hash>,
}

impl Tile {
    /// The tile as served: its hashes concatenated (`width * 32` bytes).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.hashes.len() * HASH_SIZE);
        for hash in &self.hashes {
            out.extend_from_slice(&hash.0);
        }
        out
    }

    /// Parses served tile bytes for tile `id`.
    ///
    /// # Errors
    ///
    /// [`TileReadError::WrongLength`] unless `bytes` is exactly `id.width * 32` bytes long.
    pub fn from_bytes(id: TileId, bytes: &[u8]) -> Result<Tile, TileReadError> {
        let expected = id.width.to_usize() * HASH_SIZE;
        if bytes.len() != expected {
            return Err(TileReadError::WrongLength {
                tile: id,
                len: bytes.len(),
                expected,
            });
        }
        let hashes = bytes
            .chunks_exact(HASH_SIZE)
            .filter_map(Hash::from_slice)
            .collect();
        Ok(Tile { id, hashes })
    }
}

/// Read access to the hash tiles of a tree; proofs and [`TreeBuilder::resume`](crate::TreeBuilder::resume)
/// read the tree only through this trait.
///
/// Contract: `read_tile(level, index, width)` returns at least `width` hashes of hash tile
/// (`level`, `index`) — the first `width` hashes are those of the tile at the tree size the caller
/// works on. A wider version (for example the full tile when a partial one is requested) is
/// allowed, because tiles only grow. A reader that does not hold the tile returns
/// [`TileReadError::Missing`]. Implementations do no I/O of their own in this crate; an async
/// caller first runs the computation on a [`TileRecorder`] to learn which tiles it needs,
/// fetches them, and reruns it on a [`TileMap`].
pub trait TileReader {
    /// Returns at least `width` hashes of hash tile (`level`, `index`).
    ///
    /// # Errors
    ///
    /// [`TileReadError::Missing`] if the reader does not hold the tile at that width; other
    /// variants for backend failures.
    fn read_tile(
        &self,
        level: TileLevel,
        index: TileIndex,
        width: TileWidth,
    ) -> Result<Cow<'_, [Hash]>, TileReadError>;
}

impl<R: TileReader + ?Sized> TileReader for &R {
    fn read_tile(
        &self,
        level: TileLevel,
        index: TileIndex,
        width: TileWidth,
    ) -> Result<Cow<'_, [Hash]>, TileReadError> {
        (**self).read_tile(level, index, width)
    }
}

/// A `HashMap`-backed [`TileReader`] holding preloaded tiles. It keeps the widest version of
/// each tile inserted.
#[derive(Debug, Clone, Default)]
pub struct TileMap {
    tiles: HashMap<(TileLevel, TileIndex), Tile>,
}

impl TileMap {
    /// An empty map.
    #[must_use]
    pub fn new() -> Self {
        TileMap::default()
    }

    /// Adds a tile, unless a version at least as wide is already held.
    pub fn insert(&mut self, tile: Tile) {
        let key = (tile.id.level, tile.id.index);
        match self.tiles.get(&key) {
            Some(held) if held.hashes.len() >= tile.hashes.len() => {}
            _ => {
                self.tiles.insert(key, tile);
            }
        }
    }

    /// The widest version held of tile (`level`, `index`).
    #[must_use]
    pub fn get(&self, level: TileLevel, index: TileIndex) -> Option<&Tile> {
        self.tiles.get(&(level, index))
    }

    /// Removes and returns tile (`level`, `index`).
    pub fn remove(&mut self, level: TileLevel, index: TileIndex) -> Option<Tile> {
        self.tiles.remove(&(level, index))
    }

    /// Number of tiles held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.tiles.len()
    }

    /// Whether no tile is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.tiles.is_empty()
    }

    /// The tiles held, in no particular order.
    pub fn tiles(&self) -> impl Iterator<Item = &Tile> {
        self.tiles.values()
    }
}

impl Extend<Tile> for TileMap {
    fn extend<T: IntoIterator<Item = Tile>>(&mut self, iter: T) {
        for tile in iter {
            self.insert(tile);
        }
    }
}

impl FromIterator<Tile> for TileMap {
    fn from_iter<T: IntoIterator<Item = Tile>>(iter: T) -> Self {
        let mut map = TileMap::new();
        map.extend(iter);
        map
    }
}

impl TileReader for TileMap {
    fn read_tile(
        &self,
        level: TileLevel,
        index: TileIndex,
        width: TileWidth,
    ) -> Result<Cow<'_, [Hash]>, TileReadError> {
        match self.tiles.get(&(level, index)) {
            Some(tile) if tile.hashes.len() >= width.to_usize() => {
                Ok(Cow::Borrowed(tile.hashes.as_slice()))
            }
            _ => Err(TileReadError::Missing {
                tile: TileId::new(level, index, width),
            }),
        }
    }
}

/// A [`TileReader`] that holds nothing: every read fails with [`TileReadError::Missing`], and
/// the requested [`TileId`] is recorded.
///
/// The computations of this crate request every tile they need even after a read fails, so one
/// run on a recorder lists all tiles to fetch. Typical async use: run the computation on a
/// recorder, fetch [`TileRecorder::tile_ids`] from storage into a [`TileMap`], run it again on
/// the map.
#[derive(Debug, Default)]
pub struct TileRecorder {
    requested: RefCell<BTreeSet<TileId>>,
}

impl TileRecorder {
    /// A recorder with nothing recorded.
    #[must_use]
    pub fn new() -> Self {
        TileRecorder::default()
    }

    /// The distinct tiles requested so far, ordered by level, index and width.
    #[must_use]
    pub fn tile_ids(&self) -> Vec<TileId> {
        self.requested.borrow().iter().copied().collect()
    }

    /// Consumes the recorder, returning [`TileRecorder::tile_ids`].
    #[must_use]
    pub fn into_tile_ids(self) -> Vec<TileId> {
        self.requested.into_inner().into_iter().collect()
    }
}

impl TileReader for TileRecorder {
    fn read_tile(
        &self,
        level: TileLevel,
        index: TileIndex,
        width: TileWidth,
    ) -> Result<Cow<'_, [Hash]>, TileReadError> {
        let tile = TileId::new(level, index, width);
        self.requested.borrow_mut().insert(tile);
        Err(TileReadError::Missing { tile })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tile(index: u64, width: u16) -> Tile {
        let id = TileId::new(
            TileLevel::ZERO,
            TileIndex::new(index),
            TileWidth::new(width).unwrap(),
        );
        let hashes = (0..width)
            .map(|i| crate::leaf_hash(&[u8::try_from(i % 256).unwrap(), 7]))
            .collect();
        Tile { id, hashes }
    }

    #[test]
    fn bytes_round_trip_and_length_check() {
        let t = tile(3, 5);
        let bytes = t.to_bytes();
        assert_eq!(bytes.len(), 5 * 32);
        assert_eq!(&bytes[32..64], t.hashes[1].as_ref());
        assert_eq!(Tile::from_bytes(t.id, &bytes).unwrap(), t);
        for bad in [0, 32 * 4, 32 * 5 - 1, 32 * 5 + 1, 32 * 6] {
            let mut b = bytes.clone();
            b.resize(bad, 0);
            assert!(matches!(
                Tile::from_bytes(t.id, &b),
                Err(TileReadError::WrongLength { len, expected: 160, .. }) if len == bad
            ));
        }
    }

    #[test]
    fn map_keeps_widest_and_serves_narrower() {
        let mut map = TileMap::new();
        map.insert(tile(0, 10));
        map.insert(tile(0, 4));
        assert_eq!(
            map.get(TileLevel::ZERO, TileIndex::new(0))
                .unwrap()
                .hashes
                .len(),
            10
        );
        map.insert(tile(0, 256));
        assert_eq!(map.len(), 1);
        let got = map
            .read_tile(
                TileLevel::ZERO,
                TileIndex::new(0),
                TileWidth::new(7).unwrap(),
            )
            .unwrap();
        assert_eq!(got.len(), 256);
        assert!(matches!(
            map.read_tile(TileLevel::ZERO, TileIndex::new(1), TileWidth::FULL),
            Err(TileReadError::Missing { .. })
        ));
        let mut narrow = TileMap::new();
        narrow.insert(tile(2, 3));
        assert!(matches!(
            narrow.read_tile(TileLevel::ZERO, TileIndex::new(2), TileWidth::new(4).unwrap()),
            Err(TileReadError::Missing { tile }) if tile.width.get() == 4
        ));
    }

    #[test]
    fn recorder_records_and_fails() {
        let rec = TileRecorder::new();
        let w = TileWidth::new(9).unwrap();
        assert!(
            rec.read_tile(TileLevel::ZERO, TileIndex::new(2), w)
                .is_err()
        );
        assert!(
            rec.read_tile(TileLevel::ZERO, TileIndex::new(2), w)
                .is_err()
        );
        assert!(
            rec.read_tile(TileLevel::ZERO, TileIndex::new(1), TileWidth::FULL)
                .is_err()
        );
        assert_eq!(
            rec.tile_ids(),
            vec![
                TileId::new(TileLevel::ZERO, TileIndex::new(1), TileWidth::FULL),
                TileId::new(TileLevel::ZERO, TileIndex::new(2), w)
            ]
        );
    }
}
