//! Reading hash tiles from storage for the pure proof and tree code (STYLE rule 2): run the
//! computation against what is in memory, note the tiles it lacked, fetch them, run it again.

use std::borrow::Cow;
use std::cell::RefCell;

use rekor_storage::Storage;
use rekor_tlog::{
    FULL_TILE_WIDTH, Hash, Tile, TileId, TileIndex, TileLevel, TileMap, TileReadError, TileReader,
    TileWidth, TreeSize,
};

use crate::LogError;

/// The object that holds hash tile (`level`, `index`) in a tree of `size`: full, or the partial
/// tile of the width that size implies. `None` if the tree has no hash in that tile yet.
pub(crate) fn stored_tile_id(level: TileLevel, index: TileIndex, size: TreeSize) -> Option<TileId> {
    let shift = u32::from(level.get()).checked_mul(8)?;
    let count = size.get().checked_shr(shift)?;
    let full = u64::from(FULL_TILE_WIDTH);
    let start = index.get().checked_mul(full)?;
    let in_tile = count.checked_sub(start).filter(|n| *n > 0)?.min(full);
    let width = TileWidth::new(u16::try_from(in_tile).ok()?)?;
    Some(TileId {
        level,
        index,
        width,
    })
}

/// A reader over a [`TileMap`] that notes every tile the map lacks.
struct Recording<'a> {
    map: &'a TileMap,
    missing: RefCell<Vec<(TileLevel, TileIndex)>>,
}

impl TileReader for Recording<'_> {
    fn read_tile(
        &self,
        level: TileLevel,
        index: TileIndex,
        width: TileWidth,
    ) -> Result<Cow<'_, [Hash]>, TileReadError> {
        let result = self.map.read_tile(level, index, width);
        if result.is_err() {
            self.missing.borrow_mut().push((level, index));
        }
        result
    }
}

/// Runs `compute` against `map`, fetching from `storage` whatever tiles of the tree of `size` it
/// lacked, until it succeeds or the tiles it needs are not in storage.
pub(crate) async fn with_stored_tiles<T, E: std::fmt::Display>(
    storage: &dyn Storage,
    size: TreeSize,
    map: &mut TileMap,
    compute: impl Fn(&dyn TileReader) -> Result<T, E>,
) -> Result<T, LogError> {
    // The tiles a tree computation reads depend only on sizes and indices, never on hash values,
    // so a second pass finds everything the first noted; the third attempt is a safety margin.
    for _ in 0..3 {
        let recording = Recording {
            map,
            missing: RefCell::new(Vec::new()),
        };
        let outcome = compute(&recording);
        let missing = recording.missing.into_inner();
        match outcome {
            Ok(value) => return Ok(value),
            Err(error) if missing.is_empty() => return Err(LogError::internal(error)),
            Err(_) => {}
        }
        for (level, index) in missing {
            let Some(id) = stored_tile_id(level, index, size) else {
                return Err(LogError::internal(format!(
                    "tile {}/{} is beyond tree size {}",
                    level.get(),
                    index.get(),
                    size.get()
                )));
            };
            let bytes = storage.read(&id.path()).await?;
            let tile = Tile::from_bytes(id, &bytes)
                .map_err(|e| LogError::inconsistent(format!("stored tile {}: {e}", id.path())))?;
            map.insert(tile);
        }
    }
    Err(LogError::internal("tile fetching did not converge"))
}
