//! The POSIX backend's sequencing journal: sequenced leaves, fsynced before they are answered and
//! kept until the tiles made from them are durable.
//!
//! `.rekor/journal/<first index, 16 hex digits>` are segments of records, one record per
//! `sequence` call, appended and fdatasynced:
//!
//! ```text
//! "rklj" | first index (u64) | leaf count (u32) | payload length (u32) | checksum (8 bytes)
//! payload: each leaf as its length (u32) and its bytes
//! ```
//!
//! Integers are big-endian; the checksum is the first 8 bytes of SHA-256 over the header bytes
//! before it and the payload. A record is acknowledged only after its fdatasync, and a failed
//! append is cut off again (or stops the journal), so a crash can tear only the last record of
//! the last segment: a start drops it. Anything else that does not check out (a bad record before
//! the end, a gap between records) is corruption and stops the start.
//!
//! A segment is deleted once the persisted integrated size has passed its end; the last one too,
//! so a log stopped cleanly leaves an empty journal.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tracing::warn;

use super::sync::sync_dir;

const MAGIC: &[u8; 4] = b"rklj";
const HEADER_BYTES: usize = 28;
/// A new segment is started once the last one is this long.
const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

fn corrupt(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

fn checksum(header: &[u8], payload: &[u8]) -> [u8; 8] {
    let digest = Sha256::new()
        .chain_update(header)
        .chain_update(payload)
        .finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

/// Encodes one record holding `leaves` from index `first`.
fn encode_record(first: u64, leaves: &[Bytes]) -> io::Result<Vec<u8>> {
    let too_large = || io::Error::new(io::ErrorKind::InvalidInput, "journal record too large");
    let payload_len: usize = leaves.iter().map(|leaf| 4 + leaf.len()).sum();
    let mut record = Vec::with_capacity(HEADER_BYTES + payload_len);
    record.extend_from_slice(MAGIC);
    record.extend_from_slice(&first.to_be_bytes());
    record.extend_from_slice(
        &u32::try_from(leaves.len())
            .map_err(|_| too_large())?
            .to_be_bytes(),
    );
    record.extend_from_slice(
        &u32::try_from(payload_len)
            .map_err(|_| too_large())?
            .to_be_bytes(),
    );
    record.extend_from_slice(&[0u8; 8]);
    for leaf in leaves {
        record.extend_from_slice(
            &u32::try_from(leaf.len())
                .map_err(|_| too_large())?
                .to_be_bytes(),
        );
        record.extend_from_slice(leaf);
    }
    let sum = checksum(&record[..20], &record[HEADER_BYTES..]);
    record[20..HEADER_BYTES].copy_from_slice(&sum);
    Ok(record)
}

/// Decodes the record at the start of `bytes`: its first index, leaves and length, or `None` if
/// the bytes there are not a whole, intact record.
fn decode_record(bytes: &[u8]) -> Option<(u64, Vec<Bytes>, usize)> {
    let header = bytes.get(..HEADER_BYTES)?;
    if &header[..4] != MAGIC {
        return None;
    }
    let field = |range: std::ops::Range<usize>| header.get(range);
    let first = u64::from_be_bytes(field(4..12)?.try_into().ok()?);
    let count = u32::from_be_bytes(field(12..16)?.try_into().ok()?);
    let payload_len = usize::try_from(u32::from_be_bytes(field(16..20)?.try_into().ok()?)).ok()?;
    let payload = bytes.get(HEADER_BYTES..HEADER_BYTES.checked_add(payload_len)?)?;
    if checksum(&header[..20], payload) != header[20..HEADER_BYTES] {
        return None;
    }
    let mut leaves = Vec::new();
    let mut rest = payload;
    for _ in 0..count {
        let (len, after) = rest.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
        let leaf = after.get(..len)?;
        leaves.push(Bytes::copy_from_slice(leaf));
        rest = &after[len..];
    }
    rest.is_empty()
        .then_some((first, leaves, HEADER_BYTES + payload_len))
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    /// One past the last index in it.
    end: u64,
}

#[derive(Debug)]
struct Active {
    segment: Segment,
    file: File,
    len: u64,
}

#[derive(Debug, Default)]
struct Segments {
    /// Oldest first.
    closed: VecDeque<Segment>,
    active: Option<Active>,
    /// Set when an append failed and could not be cut off: the file may hold bytes that are
    /// not a record, and a record after them would be lost at the next start.
    failed: bool,
}

/// See the module docs.
#[derive(Debug)]
pub(super) struct Journal {
    dir: PathBuf,
    segments: Mutex<Segments>,
}

/// What a start finds in the journal.
#[derive(Debug)]
pub(super) struct Recovered {
    /// The leaves from the integrated size on.
    pub(super) kept: Vec<Bytes>,
    /// The sequenced size: one past the last leaf.
    pub(super) sequenced: u64,
}

fn lock(segments: &Mutex<Segments>) -> MutexGuard<'_, Segments> {
    // Every change is made whole under the lock (or marks the journal failed).
    segments
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn segment_name(first: u64) -> String {
    format!("{first:016x}")
}

impl Journal {
    /// Opens the journal in `dir` (creating it) for a log whose persisted integrated size is
    /// `integrated`, and returns the leaves it keeps from there on.
    pub(super) fn open(dir: &Path, integrated: u64) -> io::Result<(Journal, Recovered)> {
        fs::create_dir_all(dir)?;
        let mut found = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let first = name
                .to_str()
                .filter(|name| name.len() == 16)
                .and_then(|name| u64::from_str_radix(name, 16).ok())
                .ok_or_else(|| corrupt(format!("unexpected file {name:?} in the journal")))?;
            found.push((first, entry.path()));
        }
        found.sort_unstable();

        let mut segments = Segments::default();
        let mut kept = Vec::new();
        // One past the last leaf read so far.
        let mut next: Option<u64> = None;
        let count = found.len();
        for (position, (first, path)) in found.into_iter().enumerate() {
            if next.is_some_and(|next| next != first) {
                return Err(corrupt(format!(
                    "journal segment {} does not follow the one before",
                    path.display()
                )));
            }
            let bytes = fs::read(&path)?;
            let mut end = first;
            let mut offset = 0;
            while offset < bytes.len() {
                let record = bytes
                    .get(offset..)
                    .and_then(decode_record)
                    .filter(|(start, _, _)| *start == end);
                let Some((_, leaves, len)) = record else {
                    if position + 1 != count {
                        return Err(corrupt(format!(
                            "journal segment {} is damaged at byte {offset}",
                            path.display()
                        )));
                    }
                    // The one record a crash can tear: it was never acknowledged.
                    warn!(path = %path.display(), offset, "dropping a torn record at the end of the journal");
                    let file = OpenOptions::new().write(true).open(&path)?;
                    file.set_len(u64::try_from(offset).map_err(io::Error::other)?)?;
                    file.sync_all()?;
                    break;
                };
                for leaf in leaves {
                    if end >= integrated {
                        kept.push(leaf);
                    }
                    end += 1;
                }
                offset += len;
            }
            next = Some(end);
            if end == first {
                // Nothing in it was acknowledged, and the next append starts a segment of the
                // same name.
                remove(&path)?;
            } else {
                segments.closed.push_back(Segment { path, end });
            }
        }
        let sequenced = next.unwrap_or(integrated).max(integrated);
        // The leaves from the integrated size on must all be here.
        let kept_from = sequenced - u64::try_from(kept.len()).map_err(io::Error::other)?;
        if kept_from != integrated {
            return Err(corrupt(format!(
                "the journal holds leaves from {kept_from}, not from the integrated size {integrated}"
            )));
        }
        let journal = Journal {
            dir: dir.to_path_buf(),
            segments: Mutex::new(segments),
        };
        journal.release(integrated)?;
        Ok((journal, Recovered { kept, sequenced }))
    }

    /// Appends the leaves from index `first` and makes them durable.
    ///
    /// # Errors
    ///
    /// I/O errors; then none of the leaves is in the journal. After an error that could not be
    /// cut off, every later append fails too (until the next start).
    pub(super) fn append(&self, first: u64, leaves: &[Bytes]) -> io::Result<()> {
        let record = encode_record(first, leaves)?;
        let mut segments = lock(&self.segments);
        if segments.failed {
            return Err(io::Error::other(
                "the sequencing journal stopped after a failed write; restart to recover",
            ));
        }
        let full = segments
            .active
            .as_ref()
            .is_none_or(|active| active.len >= SEGMENT_BYTES);
        if full {
            if let Some(active) = segments.active.take() {
                segments.closed.push_back(active.segment);
            }
            let path = self.dir.join(segment_name(first));
            // A file of this name can only be left by an attempt that failed before anything in
            // it was acknowledged (a record in it would have moved `first` on).
            let file = OpenOptions::new().append(true).create(true).open(&path)?;
            file.set_len(0)?;
            // The segment must be found at a start before anything in it is acknowledged.
            sync_dir(&self.dir)?;
            segments.active = Some(Active {
                segment: Segment { path, end: first },
                file,
                len: 0,
            });
        }
        let Some(active) = segments.active.as_mut() else {
            return Err(io::Error::other("no active journal segment"));
        };
        if active.segment.end != first {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("journal append at {first}, expected {}", active.segment.end),
            ));
        }
        let written = active
            .file
            .write_all(&record)
            .and_then(|()| active.file.sync_data());
        if let Err(e) = written {
            // Cut the record off again, so a later record does not follow a torn one. After a
            // failed fsync the file's state is unknown, so that counts as not cut off.
            let cut = active
                .file
                .set_len(active.len)
                .and_then(|()| active.file.sync_data());
            if cut.is_err() || e.kind() != io::ErrorKind::StorageFull {
                segments.failed = true;
            }
            return Err(e);
        }
        active.len += u64::try_from(record.len()).map_err(io::Error::other)?;
        active.segment.end = first + u64::try_from(leaves.len()).map_err(io::Error::other)?;
        Ok(())
    }

    /// `Err` once an append failed and could not be cut off: no append succeeds until a restart.
    pub(super) fn health(&self) -> io::Result<()> {
        if lock(&self.segments).failed {
            return Err(io::Error::other(
                "the sequencing journal stopped after a failed write; restart to recover",
            ));
        }
        Ok(())
    }

    /// Deletes the segments that hold nothing from `integrated` on (which must be persisted).
    pub(super) fn release(&self, integrated: u64) -> io::Result<()> {
        let mut segments = lock(&self.segments);
        while segments
            .closed
            .front()
            .is_some_and(|segment| segment.end <= integrated)
        {
            if let Some(segment) = segments.closed.pop_front() {
                remove(&segment.path)?;
            }
        }
        if segments.closed.is_empty()
            && segments
                .active
                .as_ref()
                .is_some_and(|active| active.segment.end <= integrated)
            && let Some(active) = segments.active.take()
        {
            remove(&active.segment.path)?;
        }
        Ok(())
    }

    /// The segment files, oldest first.
    #[cfg(test)]
    fn files(&self) -> Vec<PathBuf> {
        let segments = lock(&self.segments);
        segments
            .closed
            .iter()
            .map(|segment| segment.path.clone())
            .chain(
                segments
                    .active
                    .iter()
                    .map(|active| active.segment.path.clone()),
            )
            .collect()
    }
}

fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(range: std::ops::Range<u64>) -> Vec<Bytes> {
        range.map(|n| Bytes::from(format!("leaf {n}"))).collect()
    }

    use crate::posix::test_support::file_names as names;

    #[test]
    fn records_round_trip_and_damage_is_detected() {
        let record = encode_record(7, &leaves(0..3)).unwrap();
        let (first, decoded, len) = decode_record(&record).unwrap();
        assert_eq!((first, decoded, len), (7, leaves(0..3), record.len()));
        // Each byte matters: the header fields and the payload are under the checksum.
        for at in [0, 5, 13, 17, 21, HEADER_BYTES + 2, record.len() - 1] {
            let mut damaged = record.clone();
            damaged[at] ^= 0x40;
            assert!(decode_record(&damaged).is_none(), "byte {at}");
        }
        assert!(decode_record(&record[..record.len() - 1]).is_none());
    }

    #[test]
    fn leaves_survive_a_restart_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, recovered) = Journal::open(dir.path(), 0).unwrap();
        assert_eq!((recovered.kept.len(), recovered.sequenced), (0, 0));
        journal.append(0, &leaves(0..3)).unwrap();
        journal.append(3, &leaves(3..5)).unwrap();
        assert!(journal.append(9, &leaves(9..10)).is_err(), "a gap");
        drop(journal);

        let (journal, recovered) = Journal::open(dir.path(), 2).unwrap();
        assert_eq!(recovered.kept, leaves(2..5));
        assert_eq!(recovered.sequenced, 5);
        journal.append(5, &leaves(5..6)).unwrap();
        assert_eq!(journal.files().len(), 2, "a start appends to a new segment");
        journal.release(5).unwrap();
        assert_eq!(names(dir.path()), [segment_name(5)]);
        journal.release(6).unwrap();
        assert!(names(dir.path()).is_empty(), "a released journal is empty");
        drop(journal);

        let (_, recovered) = Journal::open(dir.path(), 6).unwrap();
        assert_eq!((recovered.kept.len(), recovered.sequenced), (0, 6));
    }

    #[test]
    fn a_stopped_journal_refuses_appends_and_reports_it() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(dir.path(), 0).unwrap();
        journal.append(0, &leaves(0..1)).unwrap();
        journal.health().unwrap();
        // As after an append whose bytes could not be cut off again.
        lock(&journal.segments).failed = true;
        assert!(journal.health().is_err());
        assert!(journal.append(1, &leaves(1..2)).is_err());
        drop(journal);
        let (journal, recovered) = Journal::open(dir.path(), 0).unwrap();
        journal.health().unwrap();
        assert_eq!(recovered.kept, leaves(0..1));
    }

    #[test]
    fn a_torn_last_record_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(dir.path(), 0).unwrap();
        journal.append(0, &leaves(0..2)).unwrap();
        journal.append(2, &leaves(2..4)).unwrap();
        drop(journal);
        let path = dir.path().join(segment_name(0));
        let whole = fs::metadata(&path).unwrap().len();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(whole - 3).unwrap();

        let (journal, recovered) = Journal::open(dir.path(), 0).unwrap();
        assert_eq!(recovered.kept, leaves(0..2));
        assert_eq!(recovered.sequenced, 2);
        // The torn bytes are gone, so what comes next is read back.
        journal.append(2, &leaves(2..3)).unwrap();
        drop(journal);
        let (_, recovered) = Journal::open(dir.path(), 0).unwrap();
        assert_eq!(recovered.kept, leaves(0..3));
    }

    #[test]
    fn a_segment_left_empty_by_a_crash_is_started_again() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(dir.path(), 0).unwrap();
        journal.append(0, &leaves(0..2)).unwrap();
        drop(journal);
        // Created, then the process died before its first record.
        fs::write(dir.path().join(segment_name(2)), b"").unwrap();
        let (journal, recovered) = Journal::open(dir.path(), 0).unwrap();
        assert_eq!(recovered.sequenced, 2);
        journal.append(2, &leaves(2..3)).unwrap();
        // Releasing what came before must not take the new segment with it.
        journal.release(2).unwrap();
        drop(journal);
        let (_, recovered) = Journal::open(dir.path(), 2).unwrap();
        assert_eq!(recovered.kept, leaves(2..3));
    }

    #[test]
    fn damage_before_the_end_or_a_gap_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(dir.path(), 0).unwrap();
        journal.append(0, &leaves(0..2)).unwrap();
        drop(journal);
        let (journal, _) = Journal::open(dir.path(), 0).unwrap();
        journal.append(2, &leaves(2..4)).unwrap();
        drop(journal);
        // The first segment is damaged; the second follows it.
        let first = dir.path().join(segment_name(0));
        let mut bytes = fs::read(&first).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&first, &bytes).unwrap();
        let err = Journal::open(dir.path(), 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        bytes[last] ^= 1;
        fs::write(&first, &bytes).unwrap();
        Journal::open(dir.path(), 0).unwrap();

        // Leaves from the integrated size on must all be there.
        fs::remove_file(&first).unwrap();
        let err = Journal::open(dir.path(), 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let (_, recovered) = Journal::open(dir.path(), 2).unwrap();
        assert_eq!(recovered.kept, leaves(2..4));
    }
}
