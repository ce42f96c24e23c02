//! Reading entry bundles and hash tiles from a log's storage, as a reader holding a checkpoint
//! does: a partial object that a full one has superseded (and that the log may then delete) is
//! read as the full one's prefix.

use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use rekor_storage::{Error as StorageError, Storage};
use rekor_tlog::{BundleId, Tile, TileId, TileMap, TileWidth, decode_bundle_exact};

use crate::error::{Result, SearchError};

/// Reads the entries of bundle `id` (`id.width` of them).
pub(crate) async fn read_bundle(storage: &dyn Storage, id: BundleId) -> Result<Vec<Bytes>> {
    let (path, bytes, width) = match read_or_full(storage, id.path(), id.is_full(), || {
        BundleId::new(id.index, TileWidth::FULL).path()
    })
    .await?
    {
        (path, bytes, false) => (path, bytes, id.width),
        (path, bytes, true) => (path, bytes, TileWidth::FULL),
    };
    let entries = decode_bundle_exact(&bytes, width).map_err(|source| SearchError::Bundle {
        path: path.clone(),
        source,
    })?;
    let needed = id.width.to_usize();
    if entries.len() < needed {
        return Err(SearchError::ShortBundle {
            path,
            found: entries.len(),
            needed,
        });
    }
    Ok(entries
        .into_iter()
        .take(needed)
        .map(|entry| bytes.slice_ref(entry))
        .collect())
}

/// Reads hash tiles from `storage` into a map, each at its requested width, several at a
/// time; a partial tile that is gone is read as the full tile's prefix. Use it with a
/// [`rekor_tlog::TileRecorder`] to fetch what a proof needs (the indexer that follows a remote
/// log checks consistency between its checkpoints this way).
///
/// # Errors
///
/// [`SearchError::Storage`] for a tile that cannot be read, [`SearchError::Tile`] for one
/// that does not decode.
pub async fn read_tiles(storage: &dyn Storage, ids: Vec<TileId>) -> Result<TileMap> {
    let read: Vec<Tile> = futures::stream::iter(ids)
        .map(|id| read_tile(storage, id))
        .buffer_unordered(crate::answer::READS_IN_FLIGHT)
        .try_collect()
        .await?;
    let mut tiles = TileMap::new();
    for tile in read {
        tiles.insert(tile);
    }
    Ok(tiles)
}

/// Reads one hash tile at its requested width.
async fn read_tile(storage: &dyn Storage, id: TileId) -> Result<Tile> {
    let (path, bytes, full) = read_or_full(storage, id.path(), id.width.is_full(), || {
        TileId::new(id.level, id.index, TileWidth::FULL).path()
    })
    .await?;
    let read_as = if full {
        TileId::new(id.level, id.index, TileWidth::FULL)
    } else {
        id
    };
    let mut tile =
        Tile::from_bytes(read_as, &bytes).map_err(|source| SearchError::Tile { path, source })?;
    tile.hashes.truncate(id.width.to_usize());
    tile.id = id;
    Ok(tile)
}

/// Reads `path`; for a partial object that is gone, reads the full one instead. Returns the
/// path read, its bytes, and whether it is the full one standing in for a partial.
async fn read_or_full(
    storage: &dyn Storage,
    path: String,
    is_full: bool,
    full_path: impl FnOnce() -> String,
) -> Result<(String, Bytes, bool)> {
    match storage.read(&path).await {
        Ok(bytes) => Ok((path, bytes, false)),
        Err(StorageError::NotFound { .. }) if !is_full => {
            let full = full_path();
            let bytes = storage.read(&full).await?;
            Ok((full, bytes, true))
        }
        Err(e) => Err(e.into()),
    }
}
