//! The POSIX backend's search index: sorted immutable run files in `.rekor/search/`.
//!
//! A posting is the first [`KEY_PREFIX_BYTES`] bytes of a term's index key (read as a
//! big-endian `u64`, the *prefix*) and an entry's index. Postings are kept in
//! (prefix, index) order, so a term's entries come out ascending:
//!
//! - Postings of the newest entries, from the end of the runs up to the indexed size, are in
//!   memory (the *tail*). An append that finds the tail covering at least [`RUN_UNIT`] entries
//!   first writes it out as a new run.
//! - Older postings are in run files, each covering a contiguous range of entries, the runs
//!   together covering `0..` the end of the last one. Runs are merged like a binary counter
//!   (the last two whenever the older covers no more entries than the newer), so a log of n
//!   entries has at most about log2(n / unit) + 1 of them and a lookup reads each once.
//! - Closing the index writes the tail out as a run, so a clean stop keeps the indexed size.
//!   After a crash the index resumes from the end of the last whole run, and the indexer
//!   re-reads the rest from the log: the index is derived, so nothing here is fsynced except
//!   each run before it is moved into place.
//!
//! A run stores each posting as one fixed-size record: the prefix's bits below the run's
//! *bucket* bits, then the entry's offset in the run, in as few bits as the run's size needs,
//! rounded up to whole bytes; the bucket bits (the prefix's top bits, chosen so a bucket holds
//! about 16 postings) are implied by where a record sits, given a table of bucket offsets. At
//! 23 million postings (a log of 10 million entries) that is 9 bytes a posting plus a quarter
//! of a byte of table, where fjall took about 12 plus its journal. Records sort as the
//! (prefix, index) pairs they stand for, so a bucket is searched by bisection.
//!
//! Run file: `run-<base>-<count>` (16 hex digits each): the records, the bucket offsets (u32
//! big-endian, one more than the buckets: where each bucket's records start, then the record
//! count), and a 48-byte footer (magic, base, count, postings, bucket bits, index bits, record
//! bytes). Runs are written to a temp file, fsynced and renamed; a start deletes temp files,
//! runs another covers or that follow a gap, damaged runs, and what an earlier version left
//! here (a fjall database): all of it is rebuilt from the log.
//!
//! An 8-byte prefix identifies a term among 2^32 others with a chance of about 2^-32; the
//! search layer confirms every candidate against its entry, as [`crate::SearchIndex::lookup`]
//! allows, so a shared prefix costs a bundle read and never a wrong answer.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read as _, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use tracing::warn;

use super::error::PosixError;
use super::runs::{RUN_PREFIX, TEMP_PREFIX, invalid, merge_ascending, parse_run_name, run_name};
use super::sync::sync_dir;
use crate::search::{MAX_LOOKUP, Posting, SearchIndex, StoredPosting, check_append, key_prefix};
use crate::{Error, Result};

/// The directory in the private directory.
pub(super) const SEARCH_DIR: &str = "search";
/// The lock file of a standalone index's directory.
const STANDALONE_LOCK: &str = "lock";
/// Entries the tail covers before an append writes it out as a run (a multiple of the
/// indexer's commit size, so runs of a catch-up end at full bundles).
pub(super) const RUN_UNIT: u64 = 1 << 16;
/// How much of each index key a posting keeps.
const KEY_PREFIX_BYTES: usize = 8; // the length of `key_prefix`

const MAGIC: &[u8; 8] = b"rksearch";
const FOOTER_BYTES: u64 = 48;
/// About 2^4 = 16 postings per bucket.
const BUCKET_SHIFT: u32 = 4;
const MAX_BUCKET_BITS: u32 = 28;
/// Bucket offsets are u32, and an offset may equal the record count.
const MAX_RUN_POSTINGS: u64 = (1 << 32) - 1;
/// A bucket up to this many records is read in one call; a larger one is bisected.
const READ_WHOLE_BUCKET: u64 = 256;
/// Records read per call when walking forward through a run.
const READ_CHUNK: u64 = 1024;

/// The `bits` low bits set.
fn low_mask(bits: u32) -> u64 {
    u64::MAX.checked_shr(64 - bits.min(64)).unwrap_or(0)
}

/// How one run splits a posting's bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    /// Top bits of the prefix implied by the bucket (0 to 28).
    bucket_bits: u32,
    /// Bits of an entry's offset in the run (1 to 64).
    index_bits: u32,
}

impl Layout {
    /// The layout of a run covering `count` entries with at most `postings` postings.
    fn new(count: u64, postings: u64) -> Layout {
        let index_bits = (u64::BITS - count.saturating_sub(1).leading_zeros()).max(1);
        let per_bucket = postings >> BUCKET_SHIFT;
        let bucket_bits = match per_bucket {
            0 => 0,
            n => (u64::BITS - 1 - n.leading_zeros()).min(MAX_BUCKET_BITS),
        };
        Layout {
            bucket_bits,
            index_bits,
        }
    }

    fn rest_bits(self) -> u32 {
        64 - self.bucket_bits
    }

    fn record_bytes(self) -> u64 {
        u64::from((self.rest_bits() + self.index_bits).div_ceil(8))
    }

    fn buckets(self) -> usize {
        1 << self.bucket_bits
    }

    /// A prefix's bucket and the bits below it.
    fn split(self, prefix: u64) -> (usize, u64) {
        let bucket = prefix.checked_shr(self.rest_bits()).unwrap_or(0);
        (
            usize::try_from(bucket).unwrap_or(usize::MAX),
            prefix & low_mask(self.rest_bits()),
        )
    }

    fn join(self, bucket: usize, rest: u64) -> u64 {
        let bucket = u64::try_from(bucket).unwrap_or(u64::MAX);
        bucket.checked_shl(self.rest_bits()).unwrap_or(0) | rest
    }

    /// The record of a posting: `rest` then `offset`, big-endian, in the low bytes of the array.
    fn encode(self, rest: u64, offset: u64) -> [u8; 16] {
        ((u128::from(rest) << self.index_bits) | u128::from(offset)).to_be_bytes()
    }

    /// A record's rest bits and offset.
    fn decode(self, record: &[u8]) -> (u64, u64) {
        let mut bytes = [0u8; 16];
        let skip = 16 - record.len().min(16);
        bytes[skip..].copy_from_slice(&record[..16 - skip]);
        let value = u128::from_be_bytes(bytes);
        let offset = u64::try_from(value & u128::from(low_mask(self.index_bits))).unwrap_or(0);
        let rest = u64::try_from(value >> self.index_bits).unwrap_or(u64::MAX);
        (rest, offset)
    }

    fn file_len(self, postings: u64) -> u64 {
        let buckets = u64::try_from(self.buckets()).unwrap_or(u64::MAX);
        postings * self.record_bytes() + (buckets + 1) * 4 + FOOTER_BYTES
    }
}

fn footer(base: u64, count: u64, postings: u64, layout: Layout) -> [u8; 48] {
    let mut out = [0u8; 48];
    out[..8].copy_from_slice(MAGIC);
    out[8..16].copy_from_slice(&base.to_be_bytes());
    out[16..24].copy_from_slice(&count.to_be_bytes());
    out[24..32].copy_from_slice(&postings.to_be_bytes());
    out[32..36].copy_from_slice(&layout.bucket_bits.to_be_bytes());
    out[36..40].copy_from_slice(&layout.index_bits.to_be_bytes());
    out[40..44].copy_from_slice(
        &u32::try_from(layout.record_bytes())
            .unwrap_or(0)
            .to_be_bytes(),
    );
    out
}

fn be_u64(bytes: &[u8]) -> u64 {
    let mut array = [0u8; 8];
    array.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(array)
}

fn be_u32(bytes: &[u8]) -> u32 {
    let mut array = [0u8; 4];
    array.copy_from_slice(&bytes[..4]);
    u32::from_be_bytes(array)
}

/// One immutable run: the postings of the entries `base..base + count`.
#[derive(Debug)]
struct Run {
    path: PathBuf,
    file: File,
    base: u64,
    count: u64,
    postings: u64,
    layout: Layout,
    /// Where each bucket's records start, then the record count.
    offsets: Vec<u32>,
}

impl Run {
    fn end(&self) -> u64 {
        self.base + self.count
    }

    /// Opens and checks the run at `path`, which its name says covers `base..base + count`.
    fn open(path: PathBuf, base: u64, count: u64) -> io::Result<Run> {
        if count == 0 {
            return Err(invalid("empty run"));
        }
        let file = File::open(&path)?;
        let len = file.metadata()?.len();
        let mut tail = [0u8; 48];
        file.read_exact_at(
            &mut tail,
            len.checked_sub(FOOTER_BYTES).ok_or(invalid("run"))?,
        )?;
        let postings = be_u64(&tail[24..32]);
        let layout = Layout {
            bucket_bits: be_u32(&tail[32..36]),
            index_bits: be_u32(&tail[36..40]),
        };
        if layout.bucket_bits > MAX_BUCKET_BITS
            || layout.index_bits != Layout::new(count, 0).index_bits
            || postings > MAX_RUN_POSTINGS
            || tail != footer(base, count, postings, layout)
        {
            return Err(invalid("run footer"));
        }
        if len != layout.file_len(postings) {
            return Err(invalid("run file length"));
        }
        let mut raw = vec![0u8; (layout.buckets() + 1) * 4];
        file.read_exact_at(&mut raw, postings * layout.record_bytes())?;
        let offsets: Vec<u32> = raw.chunks_exact(4).map(be_u32).collect();
        let ordered = offsets.first() == Some(&0)
            && offsets.windows(2).all(|pair| pair[0] <= pair[1])
            && offsets.last().map(|&last| u64::from(last)) == Some(postings);
        if !ordered {
            return Err(invalid("run bucket offsets"));
        }
        Ok(Run {
            path,
            file,
            base,
            count,
            postings,
            layout,
            offsets,
        })
    }

    /// The records `from..to` (record numbers), as bytes.
    fn read_records(&self, from: u64, to: u64) -> io::Result<Vec<u8>> {
        let size = self.layout.record_bytes();
        let len = usize::try_from((to - from) * size).map_err(|_| invalid("records"))?;
        let mut raw = vec![0u8; len];
        self.file.read_exact_at(&mut raw, from * size)?;
        Ok(raw)
    }

    /// The first record in `from..to` (one bucket) that sorts at or after (`rest`, `offset`).
    fn lower_bound(&self, from: u64, to: u64, rest: u64, offset: u64) -> io::Result<u64> {
        let size = usize::try_from(self.layout.record_bytes()).unwrap_or(16);
        if to - from <= READ_WHOLE_BUCKET {
            let raw = self.read_records(from, to)?;
            let skip = raw
                .chunks_exact(size)
                .take_while(|record| self.layout.decode(record) < (rest, offset))
                .count();
            return Ok(from + u64::try_from(skip).unwrap_or(0));
        }
        let (mut low, mut high) = (from, to);
        let mut record = vec![0u8; size];
        while low < high {
            let middle = low + (high - low) / 2;
            self.file
                .read_exact_at(&mut record, middle * self.layout.record_bytes())?;
            if self.layout.decode(&record) < (rest, offset) {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        Ok(low)
    }

    /// Appends to `out` the indices in `start..below` recorded under `prefix`, ascending, until
    /// `out` holds `limit`.
    fn lookup(
        &self,
        prefix: u64,
        start: u64,
        below: u64,
        limit: usize,
        out: &mut Vec<u64>,
    ) -> io::Result<()> {
        let (first, end) = (start.max(self.base), below.min(self.end()));
        if first >= end || out.len() >= limit {
            return Ok(());
        }
        let (bucket, rest) = self.layout.split(prefix);
        let (Some(&from), Some(&to)) = (self.offsets.get(bucket), self.offsets.get(bucket + 1))
        else {
            return Err(invalid("bucket beyond the run"));
        };
        let (from, to) = (u64::from(from), u64::from(to));
        let mut position = self.lower_bound(from, to, rest, first - self.base)?;
        let size = usize::try_from(self.layout.record_bytes()).unwrap_or(16);
        while position < to {
            let want = u64::try_from(limit - out.len()).unwrap_or(u64::MAX);
            let chunk_end = to.min(position + want.clamp(1, READ_CHUNK));
            for record in self.read_records(position, chunk_end)?.chunks_exact(size) {
                let (stored, offset) = self.layout.decode(record);
                if stored != rest || self.base + offset >= end {
                    return Ok(());
                }
                out.push(self.base + offset);
                if out.len() >= limit {
                    return Ok(());
                }
            }
            position = chunk_end;
        }
        Ok(())
    }

    /// The postings with a prefix in `first..=last` and an index below `below`, in order, at
    /// most `limit`.
    fn scan(&self, first: u64, last: u64, below: u64, limit: usize) -> io::Result<Vec<(u64, u64)>> {
        let mut out = Vec::new();
        if self.base >= below || first > last {
            return Ok(out);
        }
        let (bucket, rest) = self.layout.split(first);
        let (Some(&from), Some(&to)) = (self.offsets.get(bucket), self.offsets.get(bucket + 1))
        else {
            return Err(invalid("bucket beyond the run"));
        };
        let mut position = self.lower_bound(u64::from(from), u64::from(to), rest, 0)?;
        let mut bucket = bucket;
        let size = usize::try_from(self.layout.record_bytes()).unwrap_or(16);
        while position < self.postings && out.len() < limit {
            let chunk_end = self.postings.min(position + READ_CHUNK);
            for (record, at) in self
                .read_records(position, chunk_end)?
                .chunks_exact(size)
                .zip(position..)
            {
                while self
                    .offsets
                    .get(bucket + 1)
                    .is_some_and(|&o| u64::from(o) <= at)
                {
                    bucket += 1;
                }
                let (rest, offset) = self.layout.decode(record);
                let prefix = self.layout.join(bucket, rest);
                if prefix > last {
                    return Ok(out);
                }
                if self.base + offset < below {
                    out.push((prefix, self.base + offset));
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            position = chunk_end;
        }
        Ok(out)
    }

    /// Every posting as (prefix, index), in order, streamed from the file.
    fn entries(&self) -> io::Result<RunEntries> {
        Ok(RunEntries {
            reader: BufReader::with_capacity(1 << 16, File::open(&self.path)?),
            layout: self.layout,
            base: self.base,
            offsets: self.offsets.clone(),
            bucket: 0,
            position: 0,
        })
    }
}

/// A run's postings streamed from its file, in order.
struct RunEntries {
    reader: BufReader<File>,
    layout: Layout,
    base: u64,
    offsets: Vec<u32>,
    bucket: usize,
    position: u32,
}

impl Iterator for RunEntries {
    type Item = io::Result<(u64, u64)>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.offsets.get(self.bucket + 1) == Some(&self.position) {
            self.bucket += 1;
        }
        if self.bucket + 1 >= self.offsets.len() {
            return None;
        }
        let mut record = [0u8; 16];
        let size = usize::try_from(self.layout.record_bytes()).unwrap_or(16);
        if let Err(e) = self.reader.read_exact(&mut record[..size]) {
            return Some(Err(e));
        }
        self.position += 1;
        let (rest, offset) = self.layout.decode(&record[..size]);
        Some(Ok((
            self.layout.join(self.bucket, rest),
            self.base + offset,
        )))
    }
}

/// Writes the run `base..base + count` from `postings` (at most `most` of them) as
/// (prefix, index) in ascending order, repeats dropped, and moves it into place durably.
fn write_run(
    dir: &Path,
    (base, count): (u64, u64),
    most: u64,
    postings: impl Iterator<Item = io::Result<(u64, u64)>>,
) -> io::Result<Run> {
    if count == 0 || most > MAX_RUN_POSTINGS {
        return Err(invalid("run size out of range"));
    }
    let layout = Layout::new(count, most);
    let name = run_name(base, count);
    let temp = dir.join(format!("{TEMP_PREFIX}{name}"));
    let mut out = BufWriter::with_capacity(1 << 16, File::create(&temp)?);
    let mut offsets = vec![0u32; layout.buckets() + 1];
    let size = usize::try_from(layout.record_bytes()).unwrap_or(16);
    let mut written = 0u64;
    let mut last = None;
    for posting in postings {
        let (prefix, index) = posting?;
        if last == Some((prefix, index)) {
            continue;
        }
        if last.is_some_and(|l| l > (prefix, index)) {
            return Err(invalid("run postings out of order"));
        }
        last = Some((prefix, index));
        let offset = index
            .checked_sub(base)
            .filter(|&offset| offset < count)
            .ok_or_else(|| invalid("posting outside the run"))?;
        let (bucket, rest) = layout.split(prefix);
        offsets[bucket + 1] += 1;
        out.write_all(&layout.encode(rest, offset)[16 - size..])?;
        written += 1;
    }
    if written > most {
        return Err(invalid("run posting count"));
    }
    for i in 1..offsets.len() {
        offsets[i] += offsets[i - 1];
    }
    for offset in &offsets {
        out.write_all(&offset.to_be_bytes())?;
    }
    out.write_all(&footer(base, count, written, layout))?;
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    drop(file);
    let path = dir.join(name);
    fs::rename(&temp, &path)?;
    sync_dir(dir)?;
    Run::open(path, base, count)
}

/// Merges two adjacent runs into one.
fn merge_runs(dir: &Path, older: &Run, newer: &Run) -> io::Result<Run> {
    let merged = merge_ascending(older.entries()?, newer.entries()?);
    write_run(
        dir,
        (older.base, older.count + newer.count),
        older.postings + newer.postings,
        merged,
    )
}

/// What lookups see.
#[derive(Debug, Default)]
struct State {
    /// Contiguous from 0, oldest first.
    runs: Vec<Arc<Run>>,
    /// Postings of the entries from the end of the runs to `indexed`, as (prefix, index).
    tail: BTreeSet<(u64, u64)>,
    indexed: u64,
}

impl State {
    fn runs_end(&self) -> u64 {
        self.runs.last().map_or(0, |run| run.end())
    }
}

struct Inner {
    dir: PathBuf,
    unit: u64,
    state: RwLock<State>,
    /// Serialises commits, so the compare-and-swap on the size holds within this process (the
    /// directory lock keeps other processes out).
    commit: tokio::sync::Mutex<()>,
    /// One flush at a time (an append dropped while its flush runs releases `commit` first).
    flushing: std::sync::Mutex<()>,
    /// For an index in a directory of its own ([`PosixSearchIndex::open_standalone`]): its
    /// lock file, held exclusively while the index is open. (An index inside a log directory
    /// is covered by the log's lock.)
    _lock: Option<File>,
}

impl Inner {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        // Every change is made whole under the lock, so the state stays valid if a holder panicked.
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes the tail out as a run, then merges the newest runs as the module docs say.
    fn flush(&self) -> io::Result<()> {
        let _flushing = self
            .flushing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (base, end, postings) = {
            let state = self.read();
            let postings: Vec<(u64, u64)> = state.tail.iter().copied().collect();
            (state.runs_end(), state.indexed, postings)
        };
        if end == base {
            return Ok(());
        }
        let most = u64::try_from(postings.len()).unwrap_or(u64::MAX);
        let run = write_run(
            &self.dir,
            (base, end - base),
            most,
            postings.into_iter().map(Ok),
        )?;
        {
            let mut state = self.write();
            state.runs.push(Arc::new(run));
            // Appends made meanwhile (by an append whose flush was dropped) stay.
            state.tail.retain(|(_, index)| *index >= end);
        }
        loop {
            let pair = {
                let state = self.read();
                match state.runs.as_slice() {
                    [.., older, newer]
                        if older.count <= newer.count
                            && older.postings + newer.postings <= MAX_RUN_POSTINGS =>
                    {
                        Some((Arc::clone(older), Arc::clone(newer)))
                    }
                    _ => None,
                }
            };
            let Some((older, newer)) = pair else {
                return Ok(());
            };
            let merged = merge_runs(&self.dir, &older, &newer)?;
            {
                let mut state = self.write();
                let kept = state.runs.len() - 2;
                state.runs.truncate(kept);
                state.runs.push(Arc::new(merged));
            }
            // Lookups still reading them hold the files open.
            fs::remove_file(&older.path)?;
            fs::remove_file(&newer.path)?;
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A clean close keeps what is indexed; without it, the next start re-reads the tail's
        // entries from the log.
        if let Err(error) = self.flush() {
            warn!(%error, "writing out the search index's newest postings failed");
        }
    }
}

/// The search index of a POSIX log directory.
#[derive(Clone)]
pub struct PosixSearchIndex {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PosixSearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PosixSearchIndex").finish_non_exhaustive()
    }
}

/// Whether `name` is one this index writes.
fn ours(name: &str) -> bool {
    name.starts_with(RUN_PREFIX) || name.starts_with(TEMP_PREFIX)
}

impl PosixSearchIndex {
    /// Opens (creating if needed) the index in the private directory `private`.
    pub(super) fn open(private: &Path) -> Result<PosixSearchIndex, PosixError> {
        PosixSearchIndex::open_with_unit(private, RUN_UNIT, None)
    }

    /// Opens (creating if needed) a search index kept in a directory of its own, not inside a
    /// log directory: what a standalone indexer that follows a remote log uses.
    ///
    /// ```text
    /// <dir>/lock      held exclusively while a process has the index open
    /// <dir>/search/   the index's run files
    /// ```
    ///
    /// The caller may keep files of its own beside them. The index is held open until the
    /// last handle is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Locked`] if another process has the index open; I/O errors.
    pub fn open_standalone(dir: &Path) -> Result<PosixSearchIndex> {
        Ok(PosixSearchIndex::open_standalone_dir(dir)?)
    }

    fn open_standalone_dir(dir: &Path) -> Result<PosixSearchIndex, PosixError> {
        fs::create_dir_all(dir)?;
        let lock = super::lock_exclusively(&dir.join(STANDALONE_LOCK))?;
        PosixSearchIndex::open_with_unit(dir, RUN_UNIT, Some(lock))
    }

    /// [`PosixSearchIndex::open`], writing a run whenever the tail covers `unit` entries.
    fn open_with_unit(
        private: &Path,
        unit: u64,
        lock: Option<File>,
    ) -> Result<PosixSearchIndex, PosixError> {
        let dir = private.join(SEARCH_DIR);
        fs::create_dir_all(&dir)?;
        let names: Vec<String> = fs::read_dir(&dir)?
            .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<io::Result<_>>()?;
        if names.iter().any(|name| !ours(name)) {
            // An earlier version's fjall database: derived, so rebuilt from the log.
            warn!(dir = %dir.display(), "replacing an earlier version's search index; it is rebuilt from the log");
            fs::remove_dir_all(&dir)?;
            fs::create_dir_all(&dir)?;
        }
        let mut found: BTreeMap<u64, Vec<(u64, PathBuf)>> = BTreeMap::new();
        let mut unused = Vec::new();
        for name in names.iter().filter(|name| ours(name)) {
            let path = dir.join(name);
            match parse_run_name(name) {
                Some((base, count)) => found.entry(base).or_default().push((count, path)),
                None => unused.push(path),
            }
        }
        let mut runs = Vec::new();
        let mut position = 0;
        while let Some(mut candidates) = found.remove(&position) {
            // The largest first: a merge's output covers its inputs.
            candidates.sort_by_key(|&(count, _)| std::cmp::Reverse(count));
            let mut opened = None;
            for (count, path) in candidates {
                if opened.is_some() {
                    unused.push(path);
                    continue;
                }
                match Run::open(path.clone(), position, count) {
                    Ok(run) => opened = Some(run),
                    Err(error) => {
                        warn!(path = %path.display(), %error, "deleting a damaged search index run");
                        unused.push(path);
                    }
                }
            }
            let Some(run) = opened else { break };
            position = run.end();
            runs.push(Arc::new(run));
        }
        // Runs inside one kept (a merge's inputs) or past a gap.
        unused.extend(found.into_values().flatten().map(|(_, path)| path));
        for path in unused {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(PosixSearchIndex {
            inner: Arc::new(Inner {
                dir,
                unit: unit.max(1),
                state: RwLock::new(State {
                    runs,
                    tail: BTreeSet::new(),
                    indexed: position,
                }),
                commit: tokio::sync::Mutex::new(()),
                flushing: std::sync::Mutex::new(()),
                _lock: lock,
            }),
        })
    }

    /// The postings whose key prefix (the first 8 bytes of the index key) lies in
    /// `first..=last`, of entries below `below` and the indexed size, in (prefix, index)
    /// order, at most `limit`: the order the index keeps them in, for scans over key ranges.
    ///
    /// # Errors
    ///
    /// I/O failures and damaged runs.
    pub async fn scan_prefixes(
        &self,
        first: [u8; KEY_PREFIX_BYTES],
        last: [u8; KEY_PREFIX_BYTES],
        below: u64,
        limit: usize,
    ) -> Result<Vec<([u8; KEY_PREFIX_BYTES], u64)>> {
        let (first, last) = (u64::from_be_bytes(first), u64::from_be_bytes(last));
        let this = self.clone();
        tokio::task::spawn_blocking(move || -> Result<_, Error> {
            let (mut runs, mut found, below) = {
                let state = this.inner.read();
                let below = below.min(state.indexed);
                let tail: Vec<(u64, u64)> = state
                    .tail
                    .range((first, 0)..)
                    .take_while(|(prefix, _)| *prefix <= last)
                    .filter(|(_, index)| *index < below)
                    .take(limit)
                    .copied()
                    .collect();
                (state.runs.clone(), tail, below)
            };
            // The largest runs first: once one run yields `limit` postings, nothing after its
            // last prefix can be among the first `limit`, so the smaller runs stop there
            // instead of each decoding `limit` postings that are then thrown away.
            runs.sort_by_key(|run| std::cmp::Reverse(run.postings));
            let filled_to = |page: &[(u64, u64)]| match page.last() {
                Some(&(prefix, _)) if page.len() >= limit => prefix,
                _ => u64::MAX,
            };
            let mut last = last.min(filled_to(&found));
            for run in runs {
                let scanned = run
                    .scan(first, last, below, limit)
                    .map_err(PosixError::from)?;
                last = last.min(filled_to(&scanned));
                found.extend(scanned);
            }
            // Each run's postings (and the tail's) are already in order: the stable sort finds
            // those sorted stretches and only merges them.
            found.sort();
            found.truncate(limit);
            Ok(found
                .into_iter()
                .map(|(prefix, index)| (prefix.to_be_bytes(), index))
                .collect())
        })
        .await
        .map_err(PosixError::from)?
    }
}

#[async_trait]
impl SearchIndex for PosixSearchIndex {
    async fn indexed_size(&self) -> Result<u64> {
        Ok(self.inner.read().indexed)
    }

    async fn append(&self, from: u64, to: u64, postings: Vec<Posting>) -> Result<()> {
        check_append(super::BACKEND, from, to, &postings)?;
        let _commit = self.inner.commit.lock().await;
        let precondition = |found: u64| Error::Precondition {
            what: "search indexed size",
            expected: from.to_string(),
            found: found.to_string(),
        };
        let (indexed, runs_end) = {
            let state = self.inner.read();
            (state.indexed, state.runs_end())
        };
        if indexed != from {
            return Err(precondition(indexed));
        }
        if from - runs_end >= self.inner.unit {
            let inner = Arc::clone(&self.inner);
            tokio::task::spawn_blocking(move || inner.flush())
                .await
                .map_err(PosixError::from)?
                .map_err(PosixError::from)?;
        }
        let mut state = self.inner.write();
        if state.indexed != from {
            return Err(precondition(state.indexed));
        }
        state.tail.extend(
            postings
                .iter()
                .map(|(key, index)| (u64::from_be_bytes(key_prefix(key)), *index)),
        );
        state.indexed = to;
        Ok(())
    }

    async fn lookup(
        &self,
        key: [u8; 32],
        start: u64,
        below: u64,
        limit: usize,
    ) -> Result<Vec<u64>> {
        let prefix = u64::from_be_bytes(key_prefix(&key));
        let limit = limit.min(MAX_LOOKUP);
        let (runs, below, tail) = {
            let state = self.inner.read();
            let below = below.min(state.indexed);
            if start >= below || limit == 0 {
                return Ok(Vec::new());
            }
            let tail: Vec<u64> = state
                .tail
                .range((prefix, start)..(prefix, below))
                .map(|(_, index)| *index)
                .take(limit)
                .collect();
            let runs: Vec<Arc<Run>> = state
                .runs
                .iter()
                .filter(|run| run.base < below && run.end() > start)
                .cloned()
                .collect();
            (runs, below, tail)
        };
        if runs.is_empty() {
            return Ok(tail);
        }
        tokio::task::spawn_blocking(move || -> Result<Vec<u64>, Error> {
            let mut found = Vec::new();
            for run in runs {
                run.lookup(prefix, start, below, limit, &mut found)
                    .map_err(PosixError::from)?;
            }
            // The tail's entries come after every run's.
            found.extend(tail);
            found.truncate(limit);
            Ok(found)
        })
        .await
        .map_err(PosixError::from)?
    }

    async fn scan(
        &self,
        from: StoredPosting,
        last_prefix: u64,
        below: u64,
        limit: usize,
    ) -> Result<Vec<StoredPosting>> {
        let limit = limit.min(MAX_LOOKUP);
        if from.0 > last_prefix || limit == 0 {
            return Ok(Vec::new());
        }
        // The rest of `from`'s prefix (a lookup, which keys on the prefix alone), then the
        // prefixes after it.
        let mut key = [0u8; 32];
        key[..KEY_PREFIX_BYTES].copy_from_slice(&from.0.to_be_bytes());
        let mut found: Vec<StoredPosting> = self
            .lookup(key, from.1, below, limit)
            .await?
            .into_iter()
            .map(|index| (from.0, index))
            .collect();
        if found.len() < limit
            && let Some(next) = from.0.checked_add(1).filter(|next| *next <= last_prefix)
        {
            let rest = self
                .scan_prefixes(
                    next.to_be_bytes(),
                    last_prefix.to_be_bytes(),
                    below,
                    limit - found.len(),
                )
                .await?;
            found.extend(
                rest.into_iter()
                    .map(|(prefix, index)| (u64::from_be_bytes(prefix), index)),
            );
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> [u8; 32] {
        [b; 32]
    }

    #[tokio::test]
    async fn passes_the_conformance_suite_and_survives_a_reopen() {
        for unit in [RUN_UNIT, 1, 3] {
            let dir = tempfile::tempdir().unwrap();
            {
                let index = PosixSearchIndex::open_with_unit(dir.path(), unit, None).unwrap();
                let again = index.clone();
                crate::conformance::search_index_suite(&index, &again).await;
            }
            let reopened = PosixSearchIndex::open(dir.path()).unwrap();
            assert_eq!(reopened.indexed_size().await.unwrap(), (1 << 40) + 6);
            assert_eq!(
                reopened.lookup([2; 32], 0, u64::MAX, 10).await.unwrap(),
                vec![1, 7]
            );
        }
    }

    #[test]
    fn records_sort_as_their_postings_and_round_trip() {
        for (count, postings) in [(1, 0), (3, 5), (65_536, 150_000), (10_000_000, 23_000_000)] {
            let layout = Layout::new(count, postings);
            let size = usize::try_from(layout.record_bytes()).unwrap();
            let prefixes = [0, 1, 0x00ff_0000_0000_0000, u64::MAX - 1, u64::MAX];
            let mut last = None;
            for prefix in prefixes {
                for offset in BTreeSet::from([0, count / 2, count - 1]) {
                    let (bucket, rest) = layout.split(prefix);
                    assert_eq!(layout.join(bucket, rest), prefix);
                    let record = layout.encode(rest, offset);
                    assert!(record[..16 - size].iter().all(|b| *b == 0));
                    assert_eq!(layout.decode(&record[16 - size..]), (rest, offset));
                    let sorted = (bucket, record);
                    assert!(last < Some(sorted));
                    last = Some(sorted);
                }
            }
        }
        // 9 bytes a posting at 10M entries.
        assert_eq!(Layout::new(10_000_000, 23_000_000).record_bytes(), 9);
    }

    /// A random-looking key for term `t`.
    fn term(t: u64) -> [u8; 32] {
        let mut key = [0u8; 32];
        let mixed = t.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29) ^ t;
        key[..8].copy_from_slice(&mixed.to_be_bytes());
        key
    }

    #[tokio::test]
    async fn runs_are_written_merged_and_read_like_the_memory_index() {
        let dir = tempfile::tempdir().unwrap();
        let index = PosixSearchIndex::open_with_unit(dir.path(), 64, None).unwrap();
        let memory = crate::MemorySearchIndex::default();
        // Entry i carries term i (unique), term 1000 + i % 7 (common), and, every third, term 50000.
        let postings_of = |i: u64| {
            let mut out = vec![(term(i), i), (term(1000 + i % 7), i)];
            if i.is_multiple_of(3) {
                out.push((term(50_000), i));
            }
            out
        };
        let mut from = 0;
        for step in [10, 54, 1, 100, 200, 30, 64, 500, 41, 70, 10] {
            let to = from + step;
            let postings: Vec<Posting> = (from..to).flat_map(postings_of).collect();
            index.append(from, to, postings.clone()).await.unwrap();
            memory.append(from, to, postings).await.unwrap();
            from = to;
        }
        // Runs of 959 and 111 entries (the binary counter's merges), then a tail of 10.
        let runs: Vec<(u64, u64)> = index
            .inner
            .read()
            .runs
            .iter()
            .map(|r| (r.base, r.count))
            .collect();
        assert_eq!(runs, [(0, 959), (959, 111)]);
        assert_eq!(index.inner.read().tail.len(), 10 * 2 + 3);
        let check = |index: PosixSearchIndex| {
            let memory = &memory;
            async move {
                for t in [0, 5, 77, 999, 1000, 1003, 1006, 4242, 50_000] {
                    for (start, below, limit) in
                        [(0, u64::MAX, 10_000), (100, 700, 17), (63, 65, 5)]
                    {
                        assert_eq!(
                            index.lookup(term(t), start, below, limit).await.unwrap(),
                            memory.lookup(term(t), start, below, limit).await.unwrap(),
                            "term {t}, {start}..{below}, limit {limit}"
                        );
                    }
                }
                // A scan over every prefix gives every posting once, in order.
                let all = index
                    .scan_prefixes([0; 8], [0xff; 8], u64::MAX, usize::MAX)
                    .await
                    .unwrap();
                assert_eq!(
                    all.len(),
                    usize::try_from(from * 2 + from.div_ceil(3)).unwrap()
                );
                assert!(all.windows(2).all(|pair| pair[0] < pair[1]));
                // Paged with small limits (the runs and the tail each hold part of a page),
                // the scan gives those postings again, page for page as the memory index.
                let all: Vec<StoredPosting> = all
                    .into_iter()
                    .map(|(prefix, i)| (u64::from_be_bytes(prefix), i))
                    .collect();
                for limit in [1, 7, 100] {
                    let mut paged = Vec::new();
                    let mut cursor = (0, 0);
                    loop {
                        let page = index.scan(cursor, u64::MAX, u64::MAX, limit).await.unwrap();
                        assert_eq!(
                            page,
                            memory
                                .scan(cursor, u64::MAX, u64::MAX, limit)
                                .await
                                .unwrap(),
                            "from {cursor:?}, limit {limit}"
                        );
                        let Some(&(prefix, i)) = page.last() else {
                            break;
                        };
                        cursor = (prefix, i + 1);
                        paged.extend(page);
                    }
                    assert_eq!(paged, all, "limit {limit}");
                }
                let some = index
                    .scan_prefixes(
                        term(50_000)[..8].try_into().unwrap(),
                        term(50_000)[..8].try_into().unwrap(),
                        300,
                        20,
                    )
                    .await
                    .unwrap();
                let expected: Vec<u64> = (0..300u64)
                    .filter(|i| i.is_multiple_of(3))
                    .take(20)
                    .collect();
                assert_eq!(some.iter().map(|(_, i)| *i).collect::<Vec<_>>(), expected);
            }
        };
        check(index.clone()).await;
        drop(index);
        // Closed cleanly: everything is in runs, and a start reads them back.
        let reopened = PosixSearchIndex::open_with_unit(dir.path(), 64, None).unwrap();
        assert_eq!(reopened.indexed_size().await.unwrap(), from);
        assert!(reopened.inner.read().tail.is_empty());
        check(reopened).await;
    }

    #[tokio::test]
    async fn a_start_drops_damage_leftovers_and_an_earlier_database() {
        let dir = tempfile::tempdir().unwrap();
        {
            let index = PosixSearchIndex::open_with_unit(dir.path(), 4, None).unwrap();
            for from in (0..16).step_by(4) {
                let postings = (from..from + 4).map(|i| (key(1), i)).collect();
                index.append(from, from + 4, postings).await.unwrap();
            }
        }
        let search = dir.path().join(SEARCH_DIR);
        let mut names: Vec<String> = fs::read_dir(&search)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec![run_name(0, 16)]);
        // A merge's input left behind, a temp file, and a run past a gap.
        fs::write(search.join(run_name(0, 4)), b"stale").unwrap();
        fs::write(search.join(format!("{TEMP_PREFIX}x")), b"").unwrap();
        fs::write(search.join(run_name(20, 4)), b"").unwrap();
        let index = PosixSearchIndex::open(dir.path()).unwrap();
        assert_eq!(index.indexed_size().await.unwrap(), 16);
        assert_eq!(
            index.lookup(key(1), 0, u64::MAX, 100).await.unwrap(),
            (0..16).collect::<Vec<_>>()
        );
        drop(index);
        assert_eq!(fs::read_dir(&search).unwrap().count(), 1);

        // A damaged run is dropped, and the index starts over from the log.
        let run = search.join(run_name(0, 16));
        let len = fs::metadata(&run).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&run)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        assert_eq!(
            PosixSearchIndex::open(dir.path())
                .unwrap()
                .indexed_size()
                .await
                .unwrap(),
            0
        );

        // What an earlier version kept here (a fjall database) is replaced.
        fs::create_dir_all(search.join("keyspaces")).unwrap();
        fs::write(search.join("version"), b"3").unwrap();
        let index = PosixSearchIndex::open(dir.path()).unwrap();
        assert_eq!(index.indexed_size().await.unwrap(), 0);
        assert!(!search.join("version").exists());
    }

    #[tokio::test]
    async fn a_standalone_index_is_locked_while_open_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let index_dir = dir.path().join("index");
        {
            let index = PosixSearchIndex::open_standalone(&index_dir).unwrap();
            index.append(0, 3, vec![([5; 32], 2)]).await.unwrap();
            assert!(matches!(
                PosixSearchIndex::open_standalone(&index_dir),
                Err(Error::Locked { .. })
            ));
        }
        let reopened = PosixSearchIndex::open_standalone(&index_dir).unwrap();
        assert_eq!(reopened.indexed_size().await.unwrap(), 3);
        assert_eq!(reopened.lookup([5; 32], 0, 3, 10).await.unwrap(), vec![2]);
        assert!(index_dir.join("search").is_dir());
    }
}
