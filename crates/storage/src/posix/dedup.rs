//! The POSIX backend's dedup index: the index an entry was logged at, by its dedup key.
//!
//! Everything in it is derived from the log: a dedup key is the SHA-256 of an entry, and the
//! entries are in the entry bundles (or, until their tiles are durable, among the leaves the
//! sequencing journal keeps). So the index has no crash safety of its own to get right; a start
//! re-reads whatever it lacks.
//!
//! - Entries from `indexed` on are in a hash map in memory, by full key. A start fills it from
//!   the bundles and the kept leaves.
//! - Entries below `indexed` are in immutable run files under `.rekor/dedup/`, each covering a
//!   contiguous range of indices, sorted by key. Once the durable log passes the next multiple
//!   of the run unit ([`RUN_UNIT`] entries), the entries up to it become a new run, and runs are
//!   merged like a binary counter (the last two whenever the older is no larger): a log of n
//!   entries has at most log2(n / unit) + 1 runs and each entry is rewritten about that often.
//!
//! A run stores 5 bytes an entry, 36 bits of the key (its top bits implied by a bucket of about
//! 16 entries) and the entry's offset in the run, plus a 4-byte bucket offset per 16 entries:
//! 5.25 bytes an entry, where a key-value store took 28. 36 bits do not identify an entry, so a
//! match in a run is a candidate, confirmed by hashing the entry in its bundle. A run of n
//! entries offers a false candidate to about n / 2^36 of lookups (one in 8,000 at 8M entries),
//! each costing a bundle read.
//!
//! Run file: `run-<base>-<count>` (16 hex digits each), holding a 40-byte header (magic, base,
//! count, records, index bits), the records (5 bytes each, big-endian) and the bucket offsets
//! (u32 big-endian, one more than the buckets). A log written without dedup may hold an entry
//! twice; the index keeps one of its indices (either answers a lookup truly), so a run may hold
//! fewer records than its range has entries. Runs are written to a temp file, fsynced and renamed,
//! so a run under its final name is whole; a merge's inputs are deleted after it, and a start
//! ignores (and deletes) runs another covers.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rekor_tlog::{LeafIndex, TreeSize, bundle_for_leaf, decode_bundle_exact};
use tracing::warn;

use super::error::PosixError;
use super::runs::{TEMP_PREFIX, invalid, merge_ascending, parse_run_name, run_name};
use super::sync::sync_dir;
use crate::dedup_key;

/// Entries per new run. A multiple of 256, so every run ends at a full bundle.
pub(super) const RUN_UNIT: u64 = 1 << 16;

const MAGIC: &[u8; 8] = b"rkdedup1";
const HEADER_BYTES: u64 = 40;
const RECORD_BYTES: usize = 5;
/// Key bits a run keeps per entry: bucket bits plus fingerprint bits, the same for every size.
const KEY_BITS: u32 = 36;
/// About 2^4 = 16 entries per bucket.
const BUCKET_SHIFT: u32 = 4;
const MIN_INDEX_BITS: u32 = 16;
/// Bucket offsets are u32, and an offset may equal the count.
const MAX_RUN_ENTRIES: u64 = (1 << 32) - 1;

/// The top 36 bits of a key, as a run keeps them.
fn key_bits(key: &[u8; 32]) -> u64 {
    let mut top = [0u8; 8];
    top.copy_from_slice(&key[..8]);
    u64::from_be_bytes(top) >> (64 - KEY_BITS)
}

/// How a run of a given size splits its records' 40 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    /// Bits of the offset within the run (16 to 32).
    index_bits: u32,
}

impl Layout {
    fn for_count(count: u64) -> Layout {
        let needed = u64::BITS - count.saturating_sub(1).leading_zeros();
        Layout {
            index_bits: needed.max(MIN_INDEX_BITS),
        }
    }

    fn bucket_bits(self) -> u32 {
        self.index_bits - BUCKET_SHIFT
    }

    fn fingerprint_bits(self) -> u32 {
        KEY_BITS - self.bucket_bits()
    }

    fn buckets(self) -> usize {
        1 << self.bucket_bits()
    }

    /// The bucket and fingerprint of a key's 36 bits.
    fn split(self, bits: u64) -> (usize, u64) {
        let fingerprint_bits = self.fingerprint_bits();
        let bucket = usize::try_from(bits >> fingerprint_bits).unwrap_or(usize::MAX);
        (bucket, bits & ((1 << fingerprint_bits) - 1))
    }

    fn join(self, bucket: usize, fingerprint: u64) -> u64 {
        (u64::try_from(bucket).unwrap_or(u64::MAX) << self.fingerprint_bits()) | fingerprint
    }

    fn encode(self, fingerprint: u64, offset: u64) -> [u8; RECORD_BYTES] {
        let bytes = ((fingerprint << self.index_bits) | offset).to_be_bytes();
        let mut record = [0u8; RECORD_BYTES];
        record.copy_from_slice(&bytes[8 - RECORD_BYTES..]);
        record
    }

    /// A record's fingerprint and offset.
    fn decode(self, record: &[u8]) -> (u64, u64) {
        let mut bytes = [0u8; 8];
        bytes[8 - RECORD_BYTES..].copy_from_slice(record);
        let value = u64::from_be_bytes(bytes);
        (
            value >> self.index_bits,
            value & ((1 << self.index_bits) - 1),
        )
    }

    fn file_len(self, records: u64) -> u64 {
        let offsets = u64::try_from(self.buckets() + 1).unwrap_or(u64::MAX) * 4;
        HEADER_BYTES + records * u64::try_from(RECORD_BYTES).unwrap_or(u64::MAX) + offsets
    }
}

/// One immutable run: the entries `base..base + count`, by key.
#[derive(Debug)]
struct Run {
    path: PathBuf,
    file: File,
    base: u64,
    count: u64,
    records: u64,
    layout: Layout,
    /// Where each bucket's records start (in records), and the record count at the end.
    offsets: Vec<u32>,
}

impl Run {
    fn end(&self) -> u64 {
        self.base + self.count
    }

    /// Opens and checks the run at `path`, which its name says covers `base..base + count`.
    fn open(path: PathBuf, base: u64, count: u64) -> io::Result<Run> {
        if count == 0 || count > MAX_RUN_ENTRIES {
            return Err(invalid("run size out of range"));
        }
        let layout = Layout::for_count(count);
        let file = File::open(&path)?;
        let mut header = [0u8; 40];
        file.read_exact_at(&mut header, 0)?;
        let mut records = [0u8; 8];
        records.copy_from_slice(&header[24..32]);
        let records = u64::from_be_bytes(records);
        if records > count || header != run_header(base, count, records, layout) {
            return Err(invalid("run header"));
        }
        if file.metadata()?.len() != layout.file_len(records) {
            return Err(invalid("run file length"));
        }
        let mut raw = vec![0u8; (layout.buckets() + 1) * 4];
        file.read_exact_at(&mut raw, HEADER_BYTES + records * 5)?;
        let offsets: Vec<u32> = raw
            .chunks_exact(4)
            .map(|chunk| u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
            .collect();
        let ordered = offsets.first() == Some(&0)
            && offsets.windows(2).all(|pair| pair[0] <= pair[1])
            && offsets.last().map(|&last| u64::from(last)) == Some(records);
        if !ordered {
            return Err(invalid("run bucket offsets"));
        }
        Ok(Run {
            path,
            file,
            base,
            count,
            records,
            layout,
            offsets,
        })
    }

    /// The indices of this run's entries whose key shares `key`'s 36 bits.
    fn candidates(&self, key: &[u8; 32]) -> io::Result<Vec<u64>> {
        let (bucket, fingerprint) = self.layout.split(key_bits(key));
        let (Some(&start), Some(&end)) = (self.offsets.get(bucket), self.offsets.get(bucket + 1))
        else {
            return Err(invalid("bucket beyond the run"));
        };
        if start == end {
            return Ok(Vec::new());
        }
        let records = usize::try_from(end - start).map_err(|_| invalid("bucket size"))?;
        let mut raw = vec![0u8; records * RECORD_BYTES];
        self.file
            .read_exact_at(&mut raw, HEADER_BYTES + u64::from(start) * 5)?;
        let mut found = Vec::new();
        for record in raw.chunks_exact(RECORD_BYTES) {
            let (stored, offset) = self.layout.decode(record);
            if stored == fingerprint && offset < self.count {
                found.push(self.base + offset);
            }
        }
        Ok(found)
    }

    /// Reads every entry as (key bits, index), in key order.
    fn read_all(&self) -> io::Result<RunEntries> {
        let mut reader = BufReader::with_capacity(1 << 16, File::open(&self.path)?);
        io::copy(&mut (&mut reader).take(HEADER_BYTES), &mut io::sink())?;
        Ok(RunEntries {
            reader,
            layout: self.layout,
            base: self.base,
            offsets: self.offsets.clone(),
            bucket: 0,
            position: 0,
        })
    }
}

fn run_header(base: u64, count: u64, records: u64, layout: Layout) -> [u8; 40] {
    let mut header = [0u8; 40];
    header[..8].copy_from_slice(MAGIC);
    header[8..16].copy_from_slice(&base.to_be_bytes());
    header[16..24].copy_from_slice(&count.to_be_bytes());
    header[24..32].copy_from_slice(&records.to_be_bytes());
    header[32] = u8::try_from(layout.index_bits).unwrap_or(u8::MAX);
    header
}

/// A run's entries streamed from its file, in key order.
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
        let mut record = [0u8; RECORD_BYTES];
        if let Err(e) = self.reader.read_exact(&mut record) {
            return Some(Err(e));
        }
        self.position += 1;
        let (fingerprint, offset) = self.layout.decode(&record);
        Some(Ok((
            self.layout.join(self.bucket, fingerprint),
            self.base + offset,
        )))
    }
}

/// Writes the run `base..base + count` from its `records` entries as (key bits, index) in key
/// order, and moves it into place durably.
fn write_run(
    dir: &Path,
    (base, count): (u64, u64),
    records: u64,
    entries: impl Iterator<Item = io::Result<(u64, u64)>>,
) -> io::Result<Run> {
    if count == 0 || count > MAX_RUN_ENTRIES || records > count {
        return Err(invalid("run size out of range"));
    }
    let layout = Layout::for_count(count);
    let name = run_name(base, count);
    let temp = dir.join(format!("{TEMP_PREFIX}{name}"));
    let mut out = BufWriter::with_capacity(1 << 16, File::create(&temp)?);
    out.write_all(&run_header(base, count, records, layout))?;
    let mut offsets = vec![0u32; layout.buckets() + 1];
    let (mut written, mut last) = (0u64, 0u64);
    for entry in entries {
        let (bits, index) = entry?;
        let offset = index
            .checked_sub(base)
            .filter(|&offset| offset < count)
            .ok_or_else(|| invalid("entry outside the run"))?;
        if bits < last {
            return Err(invalid("run entries out of order"));
        }
        last = bits;
        let (bucket, fingerprint) = layout.split(bits);
        offsets[bucket + 1] += 1;
        out.write_all(&layout.encode(fingerprint, offset))?;
        written += 1;
    }
    if written != records {
        return Err(invalid("run record count"));
    }
    for i in 1..offsets.len() {
        offsets[i] += offsets[i - 1];
    }
    for offset in &offsets {
        out.write_all(&offset.to_be_bytes())?;
    }
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
    let merged = merge_ascending(older.read_all()?, newer.read_all()?);
    write_run(
        dir,
        (older.base, older.count + newer.count),
        older.records + newer.records,
        merged,
    )
}

/// What lookups see: the runs and the entries newer than them.
#[derive(Debug)]
struct IndexState {
    /// Contiguous, oldest first, from the index's start to `indexed`.
    runs: Arc<Vec<Arc<Run>>>,
    indexed: u64,
    /// Entries from `indexed` on.
    recent: HashMap<[u8; 32], u64>,
}

/// See the module docs.
#[derive(Debug)]
pub(super) struct DedupIndex {
    dir: PathBuf,
    /// The log root, for reading bundles.
    root: PathBuf,
    unit: u64,
    state: Mutex<IndexState>,
    /// One compaction at a time.
    compacting: Mutex<()>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change to the guarded state is made whole under the lock, so it stays valid if a
    // holder panicked.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl DedupIndex {
    /// Opens the runs in `dir` (creating it) that cover the log from `from` on, contiguously.
    /// Runs that another covers, runs past a gap, damaged runs and temp files are deleted: all
    /// of it is derived from the log. The caller then adds the entries from
    /// [`DedupIndex::indexed`] on, with [`DedupIndex::load_bundles`] and [`DedupIndex::insert`].
    pub(super) fn open(
        dir: &Path,
        root: &Path,
        from: u64,
        unit: u64,
    ) -> Result<DedupIndex, PosixError> {
        fs::create_dir_all(dir)?;
        let mut found: BTreeMap<u64, Vec<(u64, PathBuf)>> = BTreeMap::new();
        let mut unused = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            match name.to_str().and_then(parse_run_name) {
                Some((base, count)) => found.entry(base).or_default().push((count, entry.path())),
                None => unused.push(entry.path()),
            }
        }
        let mut runs = Vec::new();
        let mut position = from;
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
                    Err(e) => {
                        warn!(path = %path.display(), error = %e, "damaged dedup run deleted; its entries are indexed again from the log");
                        unused.push(path);
                    }
                }
            }
            let Some(run) = opened else { break };
            position = run.end();
            runs.push(Arc::new(run));
        }
        unused.extend(found.into_values().flatten().map(|(_, path)| path));
        for path in unused {
            if let Err(e) = fs::remove_file(&path) {
                warn!(path = %path.display(), error = %e, "could not delete an unused dedup file");
            }
        }
        Ok(DedupIndex {
            dir: dir.to_path_buf(),
            root: root.to_path_buf(),
            unit,
            state: Mutex::new(IndexState {
                runs: Arc::new(runs),
                indexed: position,
                recent: HashMap::new(),
            }),
            compacting: Mutex::new(()),
        })
    }

    /// Where the runs end and the entries in memory begin.
    pub(super) fn indexed(&self) -> u64 {
        lock(&self.state).indexed
    }

    /// Adds the entries `first..first + keys.len()` by their keys.
    pub(super) fn insert(&self, first: u64, keys: impl IntoIterator<Item = [u8; 32]>) {
        let mut state = lock(&self.state);
        for (index, key) in (first..).zip(keys) {
            state.recent.insert(key, index);
        }
    }

    /// Adds the entries from [`DedupIndex::indexed`] up to `durable` (the persisted integrated
    /// size) from their bundles.
    pub(super) fn load_bundles(&self, durable: u64) -> Result<(), PosixError> {
        let mut next = self.indexed();
        while next < durable {
            let keys = self.bundle_keys(next, durable, usize::MAX)?;
            let count = u64::try_from(keys.len()).unwrap_or(u64::MAX);
            self.insert(next, keys);
            next += count;
        }
        Ok(())
    }

    /// The keys of up to `limit` entries from `index` on, from its bundle in a log of `size`.
    fn bundle_keys(
        &self,
        index: u64,
        size: u64,
        limit: usize,
    ) -> Result<Vec<[u8; 32]>, PosixError> {
        let corrupt = |what| PosixError::Corrupt { what };
        let (bundle, position) = bundle_for_leaf(LeafIndex::new(index), TreeSize::new(size))
            .ok_or(corrupt("entry beyond the log"))?;
        let bytes = fs::read(self.root.join(bundle.path()))?;
        let entries =
            decode_bundle_exact(&bytes, bundle.width).map_err(|_| corrupt("entry bundle"))?;
        Ok(entries
            .iter()
            .skip(position)
            .take(limit)
            .map(|entry| dedup_key(entry))
            .collect())
    }

    /// The index of the entry with each key, for those in the index; one look at the entries in
    /// memory for the whole batch, then the runs for the keys not found there.
    pub(super) fn lookup(&self, keys: &[[u8; 32]]) -> Result<Vec<Option<u64>>, PosixError> {
        let (mut found, runs) = {
            let state = lock(&self.state);
            let found: Vec<Option<u64>> = keys
                .iter()
                .map(|key| state.recent.get(key).copied())
                .collect();
            (found, Arc::clone(&state.runs))
        };
        for (key, slot) in keys.iter().zip(&mut found) {
            if slot.is_none() {
                *slot = self.lookup_in_runs(&runs, key)?;
            }
        }
        Ok(found)
    }

    fn lookup_in_runs(&self, runs: &[Arc<Run>], key: &[u8; 32]) -> Result<Option<u64>, PosixError> {
        for run in runs.iter().rev() {
            for index in run.candidates(key)? {
                // Runs end at full bundles, so the candidate's bundle is full below `run.end()`.
                if self.bundle_keys(index, run.end(), 1)?.first() == Some(key) {
                    return Ok(Some(index));
                }
            }
        }
        Ok(None)
    }

    /// Moves the entries below `durable` (rounded down to the run unit) from memory into a run,
    /// then merges runs. The bundles below `durable` must be durable. Does nothing if a
    /// compaction is already running.
    pub(super) fn compact(&self, durable: u64) -> Result<(), PosixError> {
        let Ok(_compacting) = self.compacting.try_lock() else {
            return Ok(());
        };
        let end = durable / self.unit * self.unit;
        let (base, mut entries) = {
            let state = lock(&self.state);
            if end <= state.indexed {
                return Ok(());
            }
            let base = state.indexed;
            let entries: Vec<(u64, u64)> = state
                .recent
                .iter()
                .filter(|&(_, &index)| index < end)
                .map(|(key, &index)| (key_bits(key), index))
                .collect();
            (base, entries)
        };
        entries.sort_unstable();
        let records = u64::try_from(entries.len()).unwrap_or(u64::MAX);
        let run = write_run(
            &self.dir,
            (base, end - base),
            records,
            entries.into_iter().map(Ok),
        )?;
        {
            let mut state = lock(&self.state);
            let mut runs = state.runs.as_ref().clone();
            runs.push(Arc::new(run));
            state.runs = Arc::new(runs);
            state.recent.retain(|_, index| *index >= end);
            state.indexed = end;
        }
        self.merge()
    }

    /// Merges the last two runs while the older is no larger than the newer.
    fn merge(&self) -> Result<(), PosixError> {
        loop {
            let runs = Arc::clone(&lock(&self.state).runs);
            let [.., older, newer] = runs.as_slice() else {
                return Ok(());
            };
            if older.count > newer.count || older.count + newer.count > MAX_RUN_ENTRIES {
                return Ok(());
            }
            let merged = merge_runs(&self.dir, older, newer)?;
            {
                let mut state = lock(&self.state);
                let mut now = state.runs.as_ref().clone();
                now.truncate(now.len() - 2);
                now.push(Arc::new(merged));
                state.runs = Arc::new(now);
            }
            // Lookups still holding the old runs read them through their open files.
            for run in [older, newer] {
                if let Err(e) = fs::remove_file(&run.path) {
                    warn!(path = %run.path.display(), error = %e, "could not delete a merged dedup run");
                }
            }
        }
    }

    /// The runs' (base, count), oldest first, and how many entries are in memory.
    #[cfg(test)]
    fn shape(&self) -> (Vec<(u64, u64)>, usize) {
        let state = lock(&self.state);
        let runs = state.runs.iter().map(|r| (r.base, r.count)).collect();
        (runs, state.recent.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::posix::test_support::{file_names, write_bundles};

    /// A log of `size` entries in `root`'s bundles (full bundles only up to the last full one,
    /// then the partial), and their keys.
    fn write_log(root: &Path, size: u64) -> Vec<[u8; 32]> {
        let entries: Vec<Vec<u8>> = (0..size)
            .map(|i| format!("{{\"entry\":{i}}}").into_bytes())
            .collect();
        write_entries(root, &entries)
    }

    fn write_entries(root: &Path, entries: &[Vec<u8>]) -> Vec<[u8; 32]> {
        write_bundles(root, entries);
        entries.iter().map(|e| dedup_key(e)).collect()
    }

    fn find(index: &DedupIndex, key: &[u8; 32]) -> Option<u64> {
        index.lookup(std::slice::from_ref(key)).unwrap()[0]
    }

    fn open(root: &Path, from: u64, durable: u64) -> DedupIndex {
        let index = DedupIndex::open(&root.join("dedup"), root, from, 512).unwrap();
        index.load_bundles(durable).unwrap();
        index
    }

    fn run_files(root: &Path) -> Vec<String> {
        file_names(&root.join("dedup"))
    }

    #[test]
    fn layouts_keep_36_key_bits_in_40_bit_records() {
        for count in [1, 512, 65_536, 65_537, 8 << 20, MAX_RUN_ENTRIES] {
            let layout = Layout::for_count(count);
            assert_eq!(layout.bucket_bits() + layout.fingerprint_bits(), KEY_BITS);
            assert!(layout.index_bits + layout.fingerprint_bits() <= 40);
            assert!(count <= 1 << layout.index_bits, "{count}");
            let bits = 0x9_8765_4321 & ((1 << KEY_BITS) - 1);
            let (bucket, fingerprint) = layout.split(bits);
            assert_eq!(layout.join(bucket, fingerprint), bits);
            let offset = count - 1;
            assert_eq!(
                layout.decode(&layout.encode(fingerprint, offset)),
                (fingerprint, offset)
            );
        }
        assert_eq!(Layout::for_count(65_537).index_bits, 17);
    }

    #[test]
    fn every_entry_is_found_through_runs_and_merges_like_a_binary_counter() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let keys = write_log(root, 3 * 512 + 100);
        let index = open(root, 0, keys.len() as u64);
        assert_eq!(index.shape(), (vec![], keys.len()));

        index.compact(512).unwrap();
        assert_eq!(index.shape(), (vec![(0, 512)], keys.len() - 512));
        index.compact(1024 + 7).unwrap();
        // Two runs of 512 merged into one of 1024; the inputs are gone.
        assert_eq!(index.shape(), (vec![(0, 1024)], keys.len() - 1024));
        index.compact(keys.len() as u64).unwrap();
        assert_eq!(index.shape(), (vec![(0, 1024), (1024, 512)], 100));
        assert_eq!(
            run_files(root),
            [run_name(0, 1024), run_name(1024, 512)].map(String::from)
        );
        // Records and offsets: 5.25 bytes an entry beyond a fixed header and offset table.
        let size = fs::metadata(root.join("dedup").join(run_name(0, 1024)))
            .unwrap()
            .len();
        assert_eq!(size, 40 + 1024 * 5 + (4096 + 1) * 4);

        for (i, key) in keys.iter().enumerate() {
            assert_eq!(find(&index, key), Some(i as u64), "entry {i}");
        }
        assert_eq!(find(&index, &dedup_key(b"never logged")), None);
    }

    #[test]
    fn a_key_sharing_an_entrys_36_bits_is_not_that_entry() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let keys = write_log(root, 512);
        let index = open(root, 0, 512);
        index.compact(512).unwrap();
        assert_eq!(index.shape().1, 0);
        let mut near = keys[300];
        near[31] ^= 1;
        assert_eq!(key_bits(&near), key_bits(&keys[300]));
        let runs = Arc::clone(&lock(&index.state).runs);
        assert_eq!(runs[0].candidates(&near).unwrap(), [300]);
        assert_eq!(find(&index, &near), None);
        assert_eq!(find(&index, &keys[300]), Some(300));
    }

    #[test]
    fn a_start_keeps_the_covering_runs_and_reads_the_rest_from_the_bundles() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let keys = write_log(root, 1024 + 300);
        let index = open(root, 0, 1024 + 300);
        index.compact(512).unwrap();
        // Keep the 512-entry run's file as if a merge had stopped before deleting its inputs.
        let first = fs::read(root.join("dedup").join(run_name(0, 512))).unwrap();
        index.compact(1024).unwrap();
        drop(index);
        fs::write(root.join("dedup").join(run_name(0, 512)), first).unwrap();
        fs::write(root.join("dedup").join(".tmp-run-x"), b"partial").unwrap();
        // A run past a gap is not used.
        fs::write(root.join("dedup").join(run_name(4096, 512)), b"stray").unwrap();

        let reopened = open(root, 0, 1024 + 300);
        assert_eq!(reopened.shape(), (vec![(0, 1024)], 300));
        assert_eq!(run_files(root), [run_name(0, 1024)]);
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(find(&reopened, key), Some(i as u64), "entry {i}");
        }
    }

    #[test]
    fn a_damaged_run_is_dropped_and_its_entries_read_again_from_the_bundles() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let keys = write_log(root, 1536);
        let index = open(root, 0, 1536);
        index.compact(1536).unwrap();
        assert_eq!(index.shape(), (vec![(0, 1536)], 0));
        drop(index);
        let path = root.join("dedup").join(run_name(0, 1536));
        let mut bytes = fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 1);
        fs::write(&path, bytes).unwrap();

        let reopened = open(root, 0, 1536);
        assert_eq!(reopened.shape(), (vec![], 1536));
        assert!(run_files(root).is_empty());
        assert_eq!(find(&reopened, &keys[1000]), Some(1000));
    }

    #[test]
    fn an_entry_logged_twice_is_found_at_one_of_its_indices() {
        // A log written without dedup: entry 700 repeats entry 100, entry 1100 repeats 1000.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut entries: Vec<Vec<u8>> = (0..1200u64)
            .map(|i| format!("{{\"entry\":{i}}}").into_bytes())
            .collect();
        entries[700] = entries[100].clone();
        entries[1100] = entries[1000].clone();
        let keys = write_entries(root, &entries);
        let index = open(root, 0, 1200);
        index.compact(1200).unwrap();
        assert_eq!(index.shape(), (vec![(0, 1024)], 176));
        for (i, key) in keys.iter().enumerate() {
            let found = find(&index, key).unwrap();
            assert_eq!(
                entries[usize::try_from(found).unwrap()],
                entries[i],
                "entry {i}"
            );
        }
        drop(index);
        let reopened = open(root, 0, 1200);
        assert_eq!(find(&reopened, &keys[100]), Some(700));
    }

    #[test]
    fn an_index_may_start_past_the_first_entry() {
        // A log whose earlier entries are indexed elsewhere (a database from before runs).
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let keys = write_log(root, 1200);
        let index = open(root, 300, 1200);
        assert_eq!(find(&index, &keys[299]), None);
        index.compact(1200).unwrap();
        assert_eq!(index.shape(), (vec![(300, 724)], 176));
        for (i, key) in keys.iter().enumerate().skip(300) {
            assert_eq!(find(&index, key), Some(i as u64), "entry {i}");
        }
    }
}
