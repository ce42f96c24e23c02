//! The fjall database of a log begun by an earlier version, in `.rekor/db/`.
//!
//! Earlier versions kept the leaves, the sizes and every entry's dedup key in it. The first start
//! of this version moves the leaves and sizes out ([`migrate`]); a `dedup` keyspace with entries
//! stays, read-only, for the entries it covers ([`LegacyDedup`]; the dedup index starts where it
//! ends), and the database is deleted if there is none.
//!
//! The keyspace held 32-byte keys with 8-byte indices, later 16-byte key prefixes with 5-byte
//! indices. A 128-bit prefix of a SHA-256 key does not collide by chance; matching someone
//! else's entry would take a second preimage.
//!
//! The coordinator calls [`migrate`] on a start that finds no state file, records the
//! [`Format`] of a keyspace that stays in the state file (`dedup-legacy`), and opens it with
//! [`LegacyDedup::open`] on every start after.

use std::fs;
use std::io;
use std::path::Path;

use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use tracing::warn;

use super::error::PosixError;
use super::journal::Journal;

/// The database's directory in the private directory.
pub(super) const DB_DIR: &str = "db";
const DEDUP_KEYSPACE: &str = "dedup";
const META_SEQUENCED: &[u8] = b"sequenced";
const META_INTEGRATED: &[u8] = b"integrated";
const META_DEDUP_FORMAT: &[u8] = b"dedup-format";
/// The length of a key prefix in a legacy keyspace.
const KEY_PREFIX_BYTES: usize = 16;

/// The layout of a legacy `dedup` keyspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// 16-byte key prefixes and 5-byte indices: the keyspace's `dedup-format` says
    /// `key16-index40`.
    Compact,
    /// A keyspace without a `dedup-format`: it may hold full 32-byte keys (with 8-byte indices)
    /// as well as 16-byte prefixes.
    FullKeys,
}

impl Format {
    /// The name the state file records it by (the compact one also in the keyspace's meta).
    pub(super) fn name(self) -> &'static str {
        match self {
            Format::Compact => "key16-index40",
            Format::FullKeys => "key32-index64",
        }
    }

    /// The format named `name`, if it is one.
    pub(super) fn from_name(name: &str) -> Option<Format> {
        [Format::Compact, Format::FullKeys]
            .into_iter()
            .find(|format| format.name() == name)
    }
}

/// What [`migrate`] moved out of a legacy database, for the state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Migrated {
    /// The integrated size; the leaves from it on are in the new journal.
    pub(super) integrated: u64,
    /// Where the dedup index starts: the sequenced size if the keyspace stays, else 0.
    pub(super) runs_from: u64,
    /// The format of the keyspace that stays, if it has entries.
    pub(super) dedup: Option<Format>,
}

/// Moves the legacy database in `private` out, if there is one: the leaves from its integrated
/// size on into a new journal in `journal_dir`, then `commit` records what was moved (the
/// coordinator writes its state file, the commit point: until it exists, the next start begins
/// again). Then the database is deleted, unless its dedup keyspace has entries.
///
/// Returns what `commit` returned, or `None` if there is no legacy database.
///
/// # Errors
///
/// A database that does not decode (sizes, a missing leaf, a `dedup-format` this version does not
/// know) is [`PosixError::Corrupt`] and is left as it is; database, journal and I/O failures, and
/// `commit`'s.
pub(super) fn migrate<T>(
    private: &Path,
    journal_dir: &Path,
    commit: impl FnOnce(Migrated) -> Result<T, PosixError>,
) -> Result<Option<T>, PosixError> {
    let db_path = private.join(DB_DIR);
    if !db_path.exists() {
        return Ok(None);
    }
    let db = Database::builder(&db_path).open()?;
    let keyspace = |name| db.keyspace(name, KeyspaceCreateOptions::default);
    let (meta, sequenced) = (keyspace("meta")?, keyspace("sequenced")?);
    let read_meta = |key: &[u8], what| -> Result<u64, PosixError> {
        match meta.get(key)? {
            Some(value) => decode_u64(&value, what),
            None => Ok(0),
        }
    };
    let integrated = read_meta(META_INTEGRATED, "integrated size")?;
    let sequenced_size = read_meta(META_SEQUENCED, "sequenced size")?;
    if integrated > sequenced_size {
        return Err(PosixError::Corrupt {
            what: "integrated size beyond sequenced size",
        });
    }
    let format = match meta.get(META_DEDUP_FORMAT)? {
        None => Format::FullKeys,
        Some(format) if &*format == Format::Compact.name().as_bytes() => Format::Compact,
        Some(_) => {
            return Err(PosixError::Corrupt {
                what: "dedup format (written by a newer version?)",
            });
        }
    };
    let has_keys = db.keyspace_exists(DEDUP_KEYSPACE) && !keyspace(DEDUP_KEYSPACE)?.is_empty()?;
    let leaves = (integrated..sequenced_size)
        .map(|index| match sequenced.get(index.to_be_bytes())? {
            Some(leaf) => Ok(Bytes::copy_from_slice(&leaf)),
            None => Err(PosixError::Corrupt {
                what: "sequenced leaf missing",
            }),
        })
        .collect::<Result<Vec<_>, PosixError>>()?;
    // A start that stopped part-way through this left a journal behind; begin it again.
    match fs::remove_dir_all(journal_dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    let (journal, _) = Journal::open(journal_dir, integrated).map_err(PosixError::Journal)?;
    if !leaves.is_empty() {
        journal.append(integrated, &leaves)?;
    }
    let committed = commit(Migrated {
        integrated,
        runs_from: if has_keys { sequenced_size } else { 0 },
        dedup: has_keys.then_some(format),
    })?;
    drop((meta, sequenced, db));
    if !has_keys && let Err(e) = fs::remove_dir_all(&db_path) {
        warn!(path = %db_path.display(), error = %e, "could not delete the migrated database");
    }
    Ok(Some(committed))
}

/// A `dedup` keyspace written by an earlier version: it covers the entries below the index's start.
pub(super) struct LegacyDedup {
    keyspace: Keyspace,
    /// Whether full 32-byte keys may be in it, besides 16-byte prefixes.
    full_keys: bool,
    _db: Database,
}

impl LegacyDedup {
    /// Opens the keyspace [`migrate`] left in `private`, whose format it reported.
    ///
    /// # Errors
    ///
    /// [`PosixError::Corrupt`] if the keyspace is gone; database failures.
    pub(super) fn open(private: &Path, format: Format) -> Result<LegacyDedup, PosixError> {
        let db = Database::builder(private.join(DB_DIR)).open()?;
        if !db.keyspace_exists(DEDUP_KEYSPACE) {
            return Err(PosixError::Corrupt {
                what: "legacy dedup keyspace (missing)",
            });
        }
        let keyspace = db.keyspace(DEDUP_KEYSPACE, KeyspaceCreateOptions::default)?;
        Ok(LegacyDedup {
            keyspace,
            full_keys: format == Format::FullKeys,
            _db: db,
        })
    }

    /// The index the entry with `key` was logged at, if the keyspace has it: by the key's 16-byte
    /// prefix, or (in a keyspace that may hold them) by the full key.
    ///
    /// # Errors
    ///
    /// [`PosixError::Corrupt`] for an index that does not decode; database failures.
    pub(super) fn lookup(&self, key: &[u8; 32]) -> Result<Option<u64>, PosixError> {
        if let Some(value) = self.keyspace.get(&key[..KEY_PREFIX_BYTES])? {
            return decode_index(&value).map(Some);
        }
        if self.full_keys
            && let Some(value) = self.keyspace.get(key)?
        {
            return decode_index(&value).map(Some);
        }
        Ok(None)
    }
}

/// Decodes an index from a legacy dedup keyspace: 5 or 8 big-endian bytes.
fn decode_index(bytes: &[u8]) -> Result<u64, PosixError> {
    match bytes.len() {
        5 => {
            let mut wide = [0u8; 8];
            wide[3..].copy_from_slice(bytes);
            Ok(u64::from_be_bytes(wide))
        }
        _ => decode_u64(bytes, "dedup index"),
    }
}

fn decode_u64(bytes: &[u8], what: &'static str) -> Result<u64, PosixError> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| PosixError::Corrupt { what })?;
    Ok(u64::from_be_bytes(array))
}

#[cfg(test)]
mod tests {
    use fjall::PersistMode;

    use super::*;
    use crate::posix::test_support::{entry, leaf, open_coordinator};
    use crate::{Coordinator, Error, SequenceState};

    /// A fjall database as an earlier version left it: `meta` sizes and format, the kept
    /// leaves, and dedup entries (key bytes → index bytes).
    fn legacy_db(
        dir: &Path,
        format: Option<&str>,
        sizes: (u64, u64),
        dedup: &[(&[u8], &[u8])],
        kept: &[(u64, Vec<u8>)],
    ) {
        let db = Database::builder(dir.join(DB_DIR)).open().unwrap();
        let keyspace = |name| db.keyspace(name, KeyspaceCreateOptions::default).unwrap();
        let (sequenced, dedup_keyspace, meta) =
            (keyspace("sequenced"), keyspace("dedup"), keyspace("meta"));
        for (key, index) in dedup {
            dedup_keyspace.insert(*key, *index).unwrap();
        }
        for (index, data) in kept {
            sequenced.insert(index.to_be_bytes(), data).unwrap();
        }
        if let Some(format) = format {
            meta.insert(META_DEDUP_FORMAT, format).unwrap();
        }
        meta.insert(META_INTEGRATED, sizes.0.to_be_bytes()).unwrap();
        meta.insert(META_SEQUENCED, sizes.1.to_be_bytes()).unwrap();
        db.persist(PersistMode::SyncAll).unwrap();
    }

    fn key(first: u8, last: u8) -> [u8; 32] {
        let mut key = [first; 32];
        key[31] = last;
        key
    }

    /// The dedup fields of the state file the coordinator wrote in `dir`.
    fn recorded_dedup(dir: &Path) -> String {
        let state = fs::read_to_string(dir.join("state")).unwrap();
        let start = state.find("dedup-runs-from").unwrap();
        state[start..].to_owned()
    }

    #[tokio::test]
    async fn a_database_with_full_dedup_keys_is_moved_out_of_and_still_read() {
        let dir = tempfile::tempdir().unwrap();
        // The first layout: 32-byte keys, 8-byte indices, no format; then 16-byte prefixes.
        // Entry 2 is sequenced, not yet integrated.
        legacy_db(
            dir.path(),
            None,
            (2, 3),
            &[
                (&key(7, 7), &0u64.to_be_bytes()),
                (&key(6, 6)[..16], &[0, 0, 0, 0, 1]),
                (&leaf(2).dedup_key[..16], &[0, 0, 0, 0, 2]),
            ],
            &[(2, entry(2))],
        );
        for start in 0..2 {
            let coordinator = open_coordinator(dir.path()).unwrap();
            assert_eq!(
                coordinator.state().await.unwrap(),
                SequenceState {
                    integrated: 2,
                    sequenced: 3 + start
                }
            );
            assert_eq!(coordinator.read_sequenced(2, 3).await.unwrap(), [entry(2)]);
            if start == 0 {
                assert_eq!(coordinator.sequence(&[leaf(3)]).await.unwrap(), 3);
            }
            let found = coordinator
                .lookup(&[
                    key(7, 7),
                    key(6, 6),
                    leaf(2).dedup_key,
                    leaf(3).dedup_key,
                    key(7, 6),
                ])
                .await
                .unwrap();
            assert_eq!(
                found,
                [Some(0), Some(1), Some(2), Some(3), None],
                "start {start}: old keys match in full, or by their 16-byte prefix"
            );
        }
        assert_eq!(
            recorded_dedup(dir.path()),
            "dedup-runs-from 3\ndedup-legacy key32-index64\n"
        );
    }

    #[tokio::test]
    async fn a_database_with_16_byte_dedup_keys_is_still_read() {
        let dir = tempfile::tempdir().unwrap();
        legacy_db(
            dir.path(),
            Some(Format::Compact.name()),
            (1, 1),
            &[(&key(5, 0)[..16], &[0, 0, 0, 0, 0])],
            &[],
        );
        let coordinator = open_coordinator(dir.path()).unwrap();
        assert_eq!(
            recorded_dedup(dir.path()),
            "dedup-runs-from 1\ndedup-legacy key16-index40\n"
        );
        let found = coordinator.lookup(&[key(5, 9), key(4, 0)]).await.unwrap();
        assert_eq!(found, [Some(0), None]);
    }

    #[tokio::test]
    async fn a_database_without_dedup_keys_is_moved_out_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        legacy_db(dir.path(), Some(Format::Compact.name()), (0, 0), &[], &[]);
        let coordinator = open_coordinator(dir.path()).unwrap();
        assert_eq!(
            recorded_dedup(dir.path()),
            "dedup-runs-from 0\ndedup-legacy none\n"
        );
        assert!(!dir.path().join(DB_DIR).exists());
        assert_eq!(coordinator.sequence(&[leaf(0)]).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn an_unknown_dedup_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        legacy_db(dir.path(), Some("key8"), (0, 0), &[], &[]);
        assert!(matches!(
            open_coordinator(dir.path()),
            Err(Error::Corrupt { what, .. }) if what.starts_with("dedup format")
        ));
        assert!(dir.path().join(DB_DIR).exists());
    }

    #[test]
    fn formats_are_named_as_the_state_file_records_them() {
        for format in [Format::Compact, Format::FullKeys] {
            assert_eq!(Format::from_name(format.name()), Some(format));
        }
        assert_eq!(Format::from_name("key8"), None);
    }

    #[test]
    fn legacy_dedup_indices_are_5_or_8_bytes() {
        assert_eq!(decode_index(&[0, 0, 0, 1, 2]).unwrap(), 258);
        assert_eq!(decode_index(&[1, 0, 0, 0, 0, 0, 0, 0]).unwrap(), 1 << 56);
        assert!(decode_index(&[1, 2, 3]).is_err());
    }
}
