//! Reading entry bundles and hash tiles from a log's storage, as a reader holding a checkpoint
//! does: a partial object that a full one has superseded (and that the log may then delete) is
//! read as the full one's prefix.

use bytes::Bytes;
use rekor_storage::{BundleRead, Error as StorageError, Storage};
use rekor_tlog::{BundleId, Tile, TileId, TileMap, TileWidth, decode_bundle_exact};

use crate::error::{Result, SearchError};

/// Reads the entries of bundle `id` (`id.width` of them).
pub(crate) async fn read_bundle(storage: &dyn Storage, id: BundleId) -> Result<Vec<Bytes>> {
    let mut read = read_bundles(storage, vec![id]).await?;
    read.pop().ok_or(SearchError::ShortBundle {
        path: id.path(),
        found: 0,
        needed: id.width.to_usize(),
    })
}

/// Reads the entries of each bundle of `ids` (`id.width` of each), in the order asked, with
/// one [`Storage::read_many`] (two if partials are gone).
async fn read_bundles(storage: &dyn Storage, ids: Vec<BundleId>) -> Result<Vec<Vec<Bytes>>> {
    let objects = ids
        .iter()
        .map(|id| Wanted {
            path: id.path(),
            full_path: (!id.is_full()).then(|| BundleId::new(id.index, TileWidth::FULL).path()),
        })
        .collect();
    let read = read_or_full(storage, objects).await?;
    ids.into_iter()
        .zip(read)
        .map(|(id, (path, bytes, full))| {
            let width = if full { TileWidth::FULL } else { id.width };
            let entries =
                decode_bundle_exact(&bytes, width).map_err(|source| SearchError::Bundle {
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
        })
        .collect()
}

/// Reads the entries at the given positions (ascending) of each bundle, in the order asked,
/// with one [`Storage::read_bundle_entries`] (two if partials are gone: a partial bundle's
/// entries are the full one's first).
pub(crate) async fn read_entries(
    storage: &dyn Storage,
    wanted: Vec<(BundleId, Vec<usize>)>,
) -> Result<Vec<Vec<Bytes>>> {
    let reads = wanted
        .iter()
        .map(|(id, positions)| BundleRead {
            path: id.path(),
            positions: positions.clone(),
        })
        .collect();
    let first = storage.read_bundle_entries(reads).await;
    let gone: Vec<BundleRead> = wanted
        .iter()
        .zip(&first)
        .filter_map(|((id, positions), read)| match read {
            Err(StorageError::NotFound { .. }) if !id.is_full() => Some(BundleRead {
                path: BundleId::new(id.index, TileWidth::FULL).path(),
                positions: positions.clone(),
            }),
            _ => None,
        })
        .collect();
    let mut second = if gone.is_empty() {
        Vec::new()
    } else {
        storage.read_bundle_entries(gone).await
    }
    .into_iter();
    wanted
        .into_iter()
        .zip(first)
        .map(|((id, positions), read)| {
            let (path, entries) = match read {
                Ok(entries) => (id.path(), entries),
                Err(StorageError::NotFound { .. }) if !id.is_full() => {
                    let full = BundleId::new(id.index, TileWidth::FULL).path();
                    match second.next() {
                        Some(read) => (full, read?),
                        // `read_bundle_entries` answers every read; one that did not has not
                        // found it.
                        None => return Err(StorageError::NotFound { path: full }.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            };
            if entries.len() < positions.len() {
                return Err(SearchError::ShortBundle {
                    path,
                    found: entries.len(),
                    needed: positions.last().map_or(0, |last| last + 1),
                });
            }
            Ok(entries)
        })
        .collect()
}

/// Reads hash tiles from `storage` into a map, each at its requested width, with one
/// [`Storage::read_many`] (two if partials are gone); a partial tile that is gone is read as
/// the full tile's prefix. Use it with a [`rekor_tlog::TileRecorder`] to fetch what a proof
/// needs (the indexer that follows a remote log checks consistency between its checkpoints
/// this way).
///
/// # Errors
///
/// [`SearchError::Storage`] for a tile that cannot be read, [`SearchError::Tile`] for one
/// that does not decode.
pub async fn read_tiles(storage: &dyn Storage, ids: Vec<TileId>) -> Result<TileMap> {
    Ok(read_tile_list(storage, ids).await?.into_iter().collect())
}

/// Reads hash tiles as [`read_tiles`] does, in the order asked.
pub(crate) async fn read_tile_list(storage: &dyn Storage, ids: Vec<TileId>) -> Result<Vec<Tile>> {
    let objects = ids
        .iter()
        .map(|id| Wanted {
            path: id.path(),
            full_path: (!id.is_full())
                .then(|| TileId::new(id.level, id.index, TileWidth::FULL).path()),
        })
        .collect();
    let read = read_or_full(storage, objects).await?;
    ids.into_iter()
        .zip(read)
        .map(|(id, (path, bytes, full))| {
            let read_as = if full {
                TileId::new(id.level, id.index, TileWidth::FULL)
            } else {
                id
            };
            let mut tile = Tile::from_bytes(read_as, &bytes)
                .map_err(|source| SearchError::Tile { path, source })?;
            tile.hashes.truncate(id.width.to_usize());
            tile.id = id;
            Ok(tile)
        })
        .collect()
}

/// An object to read, and for a partial one the full object that stands in for it once the
/// log has deleted it.
struct Wanted {
    path: String,
    full_path: Option<String>,
}

/// Reads each of `objects`; a partial one that is gone is read as its full one. Returns, in
/// order, the path read, its bytes, and whether it is the full one standing in for a partial.
async fn read_or_full(
    storage: &dyn Storage,
    objects: Vec<Wanted>,
) -> Result<Vec<(String, Bytes, bool)>> {
    if objects.is_empty() {
        // Nothing to hand to the storage (a page whose tiles are all kept).
        return Ok(Vec::new());
    }
    let first = storage
        .read_many(objects.iter().map(|o| o.path.clone()).collect())
        .await;
    let gone: Vec<String> = objects
        .iter()
        .zip(&first)
        .filter_map(|(object, read)| match read {
            Err(StorageError::NotFound { .. }) => object.full_path.clone(),
            _ => None,
        })
        .collect();
    let mut second = if gone.is_empty() {
        Vec::new()
    } else {
        storage.read_many(gone).await
    }
    .into_iter();
    objects
        .into_iter()
        .zip(first)
        .map(|(object, read)| match (read, object.full_path) {
            (Ok(bytes), _) => Ok((object.path, bytes, false)),
            (Err(StorageError::NotFound { .. }), Some(full)) => match second.next() {
                Some(read) => Ok((full, read?, true)),
                // `read_many` answers every path; a backend that did not has not found it.
                None => Err(StorageError::NotFound { path: full }.into()),
            },
            (Err(e), _) => Err(e.into()),
        })
        .collect()
}
