//! A full, independent audit of a log: every entry bundle and hash tile is fetched, every level-0
//! hash must be the leaf hash of its entry, every higher tile must be recomputed exactly from the
//! level below, and the root of all entries must be the checkpoint's root.
//!
//! The audit streams: it keeps only the right edge of the tree (a [`TreeBuilder`]), so memory
//! does not grow with the log, and its progress can be saved as an [`AuditState`] and resumed.

use futures::{StreamExt as _, TryStreamExt as _};
use rekor_tlog::{
    BundleId, Hash, Tile, TileId, TileIndex, TileLevel, TileMap, TilePath, TreeBuilder, TreeSize,
    leaf_hash, tile_width_at,
};
use serde::{Deserialize, Serialize};

use crate::checkpoint::SignedCheckpoint;
use crate::error::{Error, Result};
use crate::http::Client;

/// Largest audit state file accepted (edge tiles hold at most 8 × 255 hashes).
const MAX_STATE_BYTES: usize = 1 << 20;

/// How far an audit got: the number of leading entries verified, and the right edge of the tree
/// over them (the partial tiles at that size, recomputed from the entries, never taken from the
/// log). Saved as JSON to resume an audit, or to audit only what was added since.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditState {
    origin: String,
    verified_size: u64,
    prefix_root: Hash,
    edge: Vec<Tile>,
    checkpoint: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StateFile {
    origin: String,
    verified_size: u64,
    prefix_root: String,
    edge_tiles: Vec<EdgeTile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checkpoint: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EdgeTile {
    path: String,
    hashes: Vec<String>,
}

fn state_error(reason: impl Into<String>) -> Error {
    Error::State {
        reason: reason.into(),
    }
}

impl AuditState {
    fn from_builder(origin: &str, builder: &TreeBuilder, checkpoint: Option<&str>) -> AuditState {
        AuditState {
            origin: origin.to_string(),
            verified_size: builder.size().get(),
            prefix_root: builder.root(),
            edge: builder.edge_tiles(),
            checkpoint: checkpoint.map(str::to_string),
        }
    }

    /// The log origin the state belongs to.
    #[must_use]
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// How many leading entries have been verified.
    #[must_use]
    pub fn verified_size(&self) -> u64 {
        self.verified_size
    }

    /// The root of the verified entries.
    #[must_use]
    pub fn prefix_root(&self) -> Hash {
        self.prefix_root
    }

    /// The signed checkpoint whose whole tree was audited, if the audit that saved this state
    /// finished.
    #[must_use]
    pub fn checkpoint_note(&self) -> Option<&str> {
        self.checkpoint.as_deref()
    }

    /// The state as JSON.
    ///
    /// # Errors
    ///
    /// [`Error::State`] if it cannot be encoded (it always can).
    pub fn to_json(&self) -> Result<String> {
        let file = StateFile {
            origin: self.origin.clone(),
            verified_size: self.verified_size,
            prefix_root: self.prefix_root.to_string(),
            edge_tiles: self
                .edge
                .iter()
                .map(|tile| EdgeTile {
                    path: tile.id.path(),
                    hashes: tile.hashes.iter().map(Hash::to_string).collect(),
                })
                .collect(),
            checkpoint: self.checkpoint.clone(),
        };
        serde_json::to_string_pretty(&file).map_err(|e| state_error(e.to_string()))
    }

    /// Reads a state saved by [`AuditState::to_json`], checking that its edge tiles are exactly
    /// those of its size and give its prefix root.
    ///
    /// # Errors
    ///
    /// [`Error::State`] naming what is wrong.
    pub fn from_json(json: &[u8]) -> Result<AuditState> {
        if json.len() > MAX_STATE_BYTES {
            return Err(state_error(format!(
                "audit state is larger than {MAX_STATE_BYTES} bytes"
            )));
        }
        let file: StateFile =
            serde_json::from_slice(json).map_err(|e| state_error(format!("audit state: {e}")))?;
        let prefix_root = Hash::from_hex(&file.prefix_root)
            .ok_or_else(|| state_error("audit state: prefixRoot is not 64 hex digits"))?;
        let mut edge = Vec::with_capacity(file.edge_tiles.len());
        for tile in &file.edge_tiles {
            let id = match TilePath::parse(&tile.path) {
                Ok(TilePath::Hash(id)) => id,
                _ => {
                    return Err(state_error(format!(
                        "audit state: {:?} is not a hash tile path",
                        tile.path
                    )));
                }
            };
            let hashes = tile
                .hashes
                .iter()
                .map(|h| Hash::from_hex(h))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| state_error(format!("audit state: bad hash in {}", tile.path)))?;
            if hashes.len() != id.width.to_usize() {
                return Err(state_error(format!(
                    "audit state: {} holds {} hashes",
                    tile.path,
                    hashes.len()
                )));
            }
            edge.push(Tile { id, hashes });
        }
        let state = AuditState {
            origin: file.origin,
            verified_size: file.verified_size,
            prefix_root,
            edge,
            checkpoint: file.checkpoint,
        };
        state.builder()?;
        Ok(state)
    }

    /// Rebuilds the tree edge, checking it against the saved root.
    fn builder(&self) -> Result<TreeBuilder> {
        let size = TreeSize::new(self.verified_size);
        let wanted = TreeBuilder::edge_tile_ids(size);
        let held: Vec<TileId> = self.edge.iter().map(|t| t.id).collect();
        if held != wanted {
            return Err(state_error(format!(
                "audit state: its edge tiles are not those of size {}",
                self.verified_size
            )));
        }
        let tiles: TileMap = self.edge.iter().cloned().collect();
        let builder = TreeBuilder::resume(size, &tiles)
            .map_err(|e| state_error(format!("audit state: {e}")))?;
        if builder.root() != self.prefix_root {
            return Err(state_error(
                "audit state: its edge tiles do not give its prefixRoot",
            ));
        }
        Ok(builder)
    }
}

/// Progress reported after every entry bundle.
#[derive(Debug)]
pub struct AuditProgress<'a> {
    /// Entries verified so far (including those verified before a resume).
    pub verified: u64,
    /// Entries to verify in all (the checkpoint size).
    pub total: u64,
    origin: &'a str,
    builder: &'a TreeBuilder,
}

impl AuditProgress<'_> {
    /// The state to save to resume from here.
    #[must_use]
    pub fn state(&self) -> AuditState {
        AuditState::from_builder(self.origin, self.builder, None)
    }
}

/// The result of a successful audit.
#[derive(Clone, Debug)]
pub struct AuditReport {
    /// The audited tree size.
    pub size: u64,
    /// Its root, equal to the checkpoint's.
    pub root: Hash,
    /// Entries verified by this run (fewer than `size` after a resume).
    pub entries_checked: u64,
    /// Hash tiles checked by this run.
    pub tiles_checked: u64,
    /// The final state: resume from it to audit only what the log adds later.
    pub state: AuditState,
}

/// Compares a recomputed tile with the one the log served.
fn compare(computed: &Tile, served: &Tile) -> Result<()> {
    let mismatch = computed
        .hashes
        .iter()
        .zip(&served.hashes)
        .position(|(c, s)| c != s);
    match mismatch {
        None if computed.hashes.len() == served.hashes.len() => Ok(()),
        None => Err(Error::TileLength {
            path: served.id.path(),
            source: rekor_tlog::TileReadError::WrongLength {
                tile: served.id,
                len: served.hashes.len() * rekor_tlog::HASH_SIZE,
                expected: computed.hashes.len() * rekor_tlog::HASH_SIZE,
            },
        }),
        Some(position) => Err(Error::TileMismatch {
            tile: served.id.path(),
            position,
            found: served.hashes.get(position).copied().unwrap_or(Hash::ZERO),
            computed: computed.hashes.get(position).copied().unwrap_or(Hash::ZERO),
        }),
    }
}

impl Client {
    /// Audits the whole tree of `checkpoint` (see the module docs), resuming from `resume` if
    /// given. `progress` is called after every entry bundle.
    ///
    /// # Errors
    ///
    /// The first problem found, naming the exact tile or bundle: [`Error::LeafHashMismatch`],
    /// [`Error::TileMismatch`], [`Error::RootMismatch`], [`Error::Bundle`],
    /// [`Error::TileLength`], [`Error::NotFound`]; [`Error::State`] for a resume state of another
    /// log or beyond the checkpoint; transport errors.
    pub async fn audit(
        &self,
        checkpoint: &SignedCheckpoint,
        resume: Option<&AuditState>,
        mut progress: impl FnMut(&AuditProgress<'_>),
    ) -> Result<AuditReport> {
        let size = checkpoint.size();
        let origin = checkpoint.checkpoint.origin.as_str();
        let mut builder = match resume {
            None => TreeBuilder::new(),
            Some(state) => {
                if state.origin != origin {
                    return Err(state_error(format!(
                        "the audit state is for log {:?}, not {origin:?}",
                        state.origin
                    )));
                }
                if state.verified_size > size.get() {
                    return Err(state_error(format!(
                        "the audit state covers {} entries, more than the checkpoint's {}",
                        state.verified_size,
                        size.get()
                    )));
                }
                state.builder()?
            }
        };
        let start = builder.size().get();
        let first_bundle = start >> 8;
        // When resuming inside a bundle, the leaf hashes verified before must still be there.
        let verified_before: Vec<Hash> = builder
            .edge_tiles()
            .into_iter()
            .find(|t| t.id.level == TileLevel::ZERO)
            .map(|t| t.hashes)
            .unwrap_or_default();
        let bundle_count = size.get().div_ceil(256);
        let mut tiles_checked: u64 = 0;

        let mut fetches = futures::stream::iter(first_bundle..bundle_count)
            .map(|index| async move {
                let index = TileIndex::new(index);
                let width =
                    tile_width_at(TileLevel::ZERO, index, size).ok_or(Error::IndexBeyondTree {
                        index: index.get() << 8,
                        size: size.get(),
                    })?;
                let bundle = BundleId::new(index, width);
                let (entries, tile) =
                    futures::try_join!(self.bundle(bundle), self.tile(bundle.hash_tile()))?;
                Ok::<_, Error>((bundle, entries, tile))
            })
            .buffered(self.options().concurrency);

        while let Some((bundle, entries, tile)) = fetches.try_next().await? {
            let first = if bundle.index.get() == first_bundle {
                usize::try_from(start & 0xff).unwrap_or(0)
            } else {
                0
            };
            if first > 0 {
                let verified = Tile {
                    id: tile.id,
                    hashes: verified_before.clone(),
                };
                let served = Tile {
                    id: tile.id,
                    hashes: tile.hashes.get(..first).unwrap_or_default().to_vec(),
                };
                compare(&verified, &served)?;
            }
            let mut leaves = Vec::with_capacity(entries.len());
            for (position, (entry, served)) in
                entries.iter().zip(&tile.hashes).enumerate().skip(first)
            {
                let leaf = leaf_hash(entry);
                if leaf != *served {
                    return Err(Error::LeafHashMismatch {
                        tile: tile.id.path(),
                        bundle: bundle.path(),
                        index: (bundle.index.get() << 8)
                            + u64::try_from(position).unwrap_or(u64::MAX),
                        position,
                    });
                }
                leaves.push(leaf);
            }
            tiles_checked += 1;
            for computed in builder.append(&leaves) {
                if computed.id.level != TileLevel::ZERO && computed.id.is_full() {
                    let served = self.tile(computed.id).await?;
                    compare(&computed, &served)?;
                    tiles_checked += 1;
                }
            }
            progress(&AuditProgress {
                verified: builder.size().get(),
                total: size.get(),
                origin,
                builder: &builder,
            });
        }
        drop(fetches);

        for computed in builder.edge_tiles() {
            if computed.id.level != TileLevel::ZERO {
                let served = self.tile(computed.id).await?;
                compare(&computed, &served)?;
                tiles_checked += 1;
            }
        }
        let root = builder.root();
        if root != checkpoint.root() {
            return Err(Error::RootMismatch {
                size: size.get(),
                expected: checkpoint.root(),
                computed: root,
            });
        }
        Ok(AuditReport {
            size: size.get(),
            root,
            entries_checked: size.get() - start,
            tiles_checked,
            state: AuditState::from_builder(origin, &builder, Some(checkpoint.note())),
        })
    }
}

#[cfg(test)]
mod tests {
    use rekor_tlog::MemoryTree;

    use super::*;

    fn builder_of(n: u32) -> TreeBuilder {
        let mut builder = TreeBuilder::new();
        let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let _ = builder.append(&leaves);
        builder
    }

    #[test]
    fn state_round_trips_and_rebuilds_the_same_tree() {
        for n in [0, 1, 255, 256, 300, 65_536 + 513] {
            let builder = builder_of(n);
            let state = AuditState::from_builder("log.example.dev", &builder, Some("note"));
            let json = state.to_json().unwrap();
            let back = AuditState::from_json(json.as_bytes()).unwrap();
            assert_eq!(back, state);
            // The resumed edge gives the same root as the recursive definition.
            let reference: MemoryTree = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
            assert_eq!(
                back.builder().unwrap().root(),
                reference.root(TreeSize::new(u64::from(n))).unwrap()
            );
        }
    }

    #[test]
    fn tampered_state_is_refused() {
        let state = AuditState::from_builder("o", &builder_of(700), None);
        let json: serde_json::Value = serde_json::from_str(&state.to_json().unwrap()).unwrap();

        let mut wrong_size = json.clone();
        wrong_size["verifiedSize"] = 701.into();
        let mut wrong_hash = json.clone();
        wrong_hash["edgeTiles"][0]["hashes"][0] = Hash([9; 32]).to_string().into();
        let mut wrong_root = json.clone();
        wrong_root["prefixRoot"] = Hash([9; 32]).to_string().into();
        let mut unknown = json.clone();
        unknown["extra"] = 1.into();
        for bad in [wrong_size, wrong_hash, wrong_root, unknown] {
            let text = serde_json::to_vec(&bad).unwrap();
            assert!(
                matches!(AuditState::from_json(&text), Err(Error::State { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn compare_names_the_first_differing_hash() {
        let id = TileId::new(
            TileLevel::new(1).unwrap(),
            TileIndex::new(3),
            rekor_tlog::TileWidth::new(4).unwrap(),
        );
        let computed = Tile {
            id,
            hashes: vec![Hash([1; 32]), Hash([2; 32]), Hash([3; 32]), Hash([4; 32])],
        };
        let mut served = computed.clone();
        assert!(compare(&computed, &served).is_ok());
        served.hashes[2] = Hash([7; 32]);
        match compare(&computed, &served) {
            Err(e @ Error::TileMismatch { position: 2, .. }) => {
                assert!(e.to_string().starts_with("tile/1/003.p/4: hash 2 is 0707"));
            }
            other => panic!("{other:?}"),
        }
    }
}
