//! Reading hash tiles from storage for the pure proof and tree code: run the
//! computation against what is in memory, note the tiles it lacked, fetch them, run it again.

use std::borrow::Cow;
use std::cell::RefCell;

use bytes::Bytes;

use rekor_storage::Storage;
use rekor_tlog::{
    BundleId, HASH_SIZE, Hash, Tile, TileId, TileIndex, TileLevel, TileMap, TileReadError,
    TileReader, TileWidth, TreeSize, decode_bundle_exact, encode_bundle, tile_width_at,
};

use crate::LogError;

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
            // The full tile, or the partial one of the width this tree size implies.
            let Some(id) = tile_width_at(level, index, size).map(|w| TileId::new(level, index, w))
            else {
                return Err(LogError::internal(format!(
                    "tile {}/{} is beyond tree size {}",
                    level.get(),
                    index.get(),
                    size.get()
                )));
            };
            map.insert(read_tile(storage, id).await?);
        }
    }
    Err(LogError::internal("tile fetching did not converge"))
}

/// Reads hash tile `id`. A partial tile that is gone is cut from its full tile, whose first
/// hashes it is: a log may delete partials once the full tile exists, and another frontend
/// sharing the backend may have done so since this tree size was read.
pub(crate) async fn read_tile(storage: &dyn Storage, id: TileId) -> Result<Tile, LogError> {
    let bytes = match storage.read(&id.path()).await {
        Err(rekor_storage::Error::NotFound { .. }) if !id.is_full() => {
            let full = TileId::new(id.level, id.index, TileWidth::FULL);
            let bytes = storage.read(&full.path()).await?;
            let len = id.width.to_usize() * HASH_SIZE;
            bytes.slice(..len.min(bytes.len()))
        }
        read => read?,
    };
    Tile::from_bytes(id, &bytes)
        .map_err(|e| LogError::inconsistent(format!("stored tile {}: {e}", id.path())))
}

/// Reads entry bundle `id`; a partial bundle that is gone is cut from its full bundle, as for
/// [`read_tile`].
pub(crate) async fn read_bundle(storage: &dyn Storage, id: BundleId) -> Result<Bytes, LogError> {
    match storage.read(&id.path()).await {
        Err(rekor_storage::Error::NotFound { .. }) if !id.is_full() => {
            let full = BundleId::new(id.index, TileWidth::FULL);
            let bytes = storage.read(&full.path()).await?;
            let entries = decode_bundle_exact(&bytes, TileWidth::FULL).map_err(|e| {
                LogError::inconsistent(format!("stored bundle {}: {e}", full.path()))
            })?;
            let prefix = entries.into_iter().take(usize::from(id.width.get()));
            encode_bundle(prefix)
                .map(Bytes::from)
                .map_err(|e| LogError::inconsistent(format!("stored bundle {}: {e}", full.path())))
        }
        read => Ok(read?),
    }
}

#[cfg(test)]
mod tests {
    use rekor_storage::Object;
    use rekor_storage::memory::MemoryStorage;
    use rekor_tlog::FULL_TILE_WIDTH;

    use super::*;

    fn width(w: u16) -> TileWidth {
        TileWidth::new(w).unwrap()
    }

    #[tokio::test]
    async fn a_deleted_partial_tile_is_cut_from_the_full_tile() {
        let storage = MemoryStorage::default();
        let hashes: Vec<u8> = (0..u32::from(FULL_TILE_WIDTH))
            .flat_map(|n| [u8::try_from(n % 251).unwrap(); 32])
            .collect();
        storage
            .write_objects(vec![Object::new("tile/1/000", hashes.clone())])
            .await
            .unwrap();
        let id = TileId::new(TileLevel::new(1).unwrap(), TileIndex::new(0), width(5));
        let tile = read_tile(&storage, id).await.unwrap();
        assert_eq!(tile.to_bytes(), hashes[..5 * 32]);

        // A stored partial is read as it is, and a missing full tile is NotFound.
        let stored = vec![9u8; 3 * 32];
        storage
            .write_objects(vec![Object::new("tile/0/004.p/3", stored.clone())])
            .await
            .unwrap();
        let id = TileId::new(TileLevel::new(0).unwrap(), TileIndex::new(4), width(3));
        assert_eq!(read_tile(&storage, id).await.unwrap().to_bytes(), stored);
        let id = TileId::new(TileLevel::new(0).unwrap(), TileIndex::new(5), width(3));
        assert!(matches!(
            read_tile(&storage, id).await,
            Err(LogError::Storage(e)) if matches!(*e, rekor_storage::Error::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn a_deleted_partial_bundle_is_cut_from_the_full_bundle() {
        let storage = MemoryStorage::default();
        let entries: Vec<Vec<u8>> = (0..u32::from(FULL_TILE_WIDTH))
            .map(|n| format!("entry {n}").into_bytes())
            .collect();
        let full = encode_bundle(entries.iter().map(Vec::as_slice)).unwrap();
        storage
            .write_objects(vec![Object::new("tile/entries/002", full)])
            .await
            .unwrap();
        let bytes = read_bundle(&storage, BundleId::new(TileIndex::new(2), width(7)))
            .await
            .unwrap();
        let expected = encode_bundle(entries[..7].iter().map(Vec::as_slice)).unwrap();
        assert_eq!(bytes, expected);
    }
}
