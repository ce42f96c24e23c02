//! Building the log and its search index in this process, without HTTP.
//!
//! The log goes through [`rekor_log::Log`] on a [`PosixBackend`], the same pipeline and backend
//! `rekor-server-posix serve` runs (with a larger batch cap, as `--batch-max-size` allows, and
//! no persistent-dedup lookups, since every entry is new): tiles, entry bundles, the dedup index
//! and checkpoints signed with the key `serve` loads from the directory. The index is built by
//! [`rekor_search::Indexer::catch_up`] into the directory's POSIX search index.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use rekor_log::{Log, LogConfig};
use rekor_note::{Checkpoint, Note, Origin};
use rekor_search::{Commitment, Indexer, SearchTree};
use rekor_storage::Storage as _;
use rekor_storage::posix::{PRIVATE_DIR, PosixBackend};
use rekor_tlog::Hash;
use tokio::task::JoinSet;

use crate::corpus::Corpus;
use crate::report::{CpuTime, say};

/// How the log was built.
pub(crate) struct LogBuild {
    pub(crate) seconds: f64,
    pub(crate) checkpoints: u64,
}

/// Logs entries `0..n` of `corpus` into the empty log directory `dir`, at most `window` in
/// flight, failing if it takes longer than `limit`.
pub(crate) async fn build_log(
    dir: &Path,
    hostname: &str,
    corpus: Arc<Corpus>,
    n: u64,
    batch_max_size: usize,
    window: usize,
    limit: Duration,
) -> anyhow::Result<LogBuild> {
    let backend = PosixBackend::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    // The key `serve` will load (generated on first use, as `serve` and `info` do).
    let signer = rekor_server::keys::load_or_generate(dir, hostname)?;
    let config = LogConfig {
        batch_max_size,
        batch_max_age: Duration::from_millis(20),
        pushback_max_outstanding: window + 1,
        persistent_dedup: false,
        ..LogConfig::default()
    };
    let log = Log::open(
        Arc::clone(&backend.storage) as _,
        Arc::clone(&backend.coordinator) as _,
        Arc::new(signer),
        Origin::new(hostname)?,
        config,
    )
    .await?;
    if log.checkpoint().size != 0 {
        bail!("{} already holds a log", dir.display());
    }
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    let mut next = 0u64;
    let mut done = 0u64;
    let step = (n / 10).max(1);
    while done < n {
        while next < n && tasks.len() < window {
            let leaf = Bytes::from(corpus.entry(next));
            let log = log.clone();
            tasks.spawn(async move { log.add(leaf).await });
            next += 1;
        }
        match tasks.join_next().await {
            Some(joined) => {
                joined.context("an add task failed")??;
                done += 1;
                if done.is_multiple_of(step) {
                    say(format!(
                        "  logged {done} of {n} ({:.0} entries/s so far)",
                        rate(done, started.elapsed())
                    ));
                }
            }
            None => bail!("no add in flight with {done} of {n} done"),
        }
        if started.elapsed() > limit {
            bail!(
                "building the log took more than {limit:?} ({done} of {n} entries); raise --max-build-seconds"
            );
        }
    }
    let size = log.checkpoint().size;
    let checkpoints = log.stats().checkpoints();
    let proof_failures = log.stats().proof_failures();
    log.shutdown().await;
    backend.sync().await?;
    let seconds = started.elapsed().as_secs_f64();
    if size != n || proof_failures != 0 {
        bail!("the log ended at size {size} (wanted {n}) with {proof_failures} proof failures");
    }
    Ok(LogBuild {
        seconds,
        checkpoints,
    })
}

/// How the index was built.
pub(crate) struct IndexBuild {
    pub(crate) seconds: f64,
    pub(crate) cpu: CpuTime,
    /// Bytes under the index directory right after the build, the index still open.
    pub(crate) open_bytes: DirBytes,
    /// The same once the index is closed.
    pub(crate) closed_bytes: DirBytes,
}

/// Indexes the log of `n` entries in `dir` from zero (an index already there is removed first),
/// failing if it takes longer than `limit`.
///
/// With `verify_bundles`, each bundle is first proven to be part of the log's checkpoint
/// (`Indexer::catch_up_verified`, as the standalone indexer does).
pub(crate) async fn build_index(
    dir: &Path,
    n: u64,
    limit: Duration,
    verify_bundles: bool,
) -> anyhow::Result<IndexBuild> {
    let index_dir = search_dir(dir);
    if index_dir.exists() {
        std::fs::remove_dir_all(&index_dir)
            .with_context(|| format!("removing {}", index_dir.display()))?;
    }
    let backend = PosixBackend::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    let index = Arc::new(backend.open_search_index()?);
    let indexer = Indexer::new(Arc::clone(&backend.storage) as _, Arc::clone(&index) as _);
    let cpu_before = CpuTime::now()?;
    let started = Instant::now();
    let tree = if verify_bundles {
        Some(checkpoint_tree(&backend, n).await?)
    } else {
        None
    };
    let indexing = async {
        match tree {
            Some(tree) => indexer.catch_up_verified(tree).await,
            None => indexer.catch_up(n).await,
        }
    };
    let indexed = tokio::time::timeout(limit, indexing)
        .await
        .with_context(|| format!("indexing took more than {limit:?}"))??;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = CpuTime::now()?.since(&cpu_before);
    if indexed != n {
        bail!("indexed {indexed} entries, wanted {n}");
    }
    let open_bytes = DirBytes::of(&index_dir)?;
    drop(indexer);
    drop(index);
    drop(backend);
    // The database's background threads let go of it shortly after the last handle.
    let closed_bytes = settled(&index_dir, Duration::from_secs(30))?;
    Ok(IndexBuild {
        seconds,
        cpu,
        open_bytes,
        closed_bytes,
    })
}

/// How the search-index commitment was built.
pub(crate) struct CommitmentBuild {
    pub(crate) seconds: f64,
    pub(crate) cpu: CpuTime,
    pub(crate) bucket_bits: u8,
    pub(crate) postings: u64,
}

/// Builds and signs the search-index commitment of the log of `n` entries in `dir` (its index
/// built), as the server does every `--search-commitment-interval`: one pass over the index.
pub(crate) async fn build_commitment(
    dir: &Path,
    n: u64,
    hostname: &str,
) -> anyhow::Result<CommitmentBuild> {
    let backend = PosixBackend::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    let index = backend.open_search_index()?;
    let signer = rekor_server::keys::load_or_generate(dir, hostname)?;
    let tree = checkpoint_tree(&backend, n).await?;
    let cpu_before = CpuTime::now()?;
    let started = Instant::now();
    let commitment = Commitment::build(&index, tree, hostname, &signer).await?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = CpuTime::now()?.since(&cpu_before);
    Ok(CommitmentBuild {
        seconds,
        cpu,
        bucket_bits: commitment.statement.bucket_bits,
        postings: commitment.statement.postings,
    })
}

/// The tree of the log's checkpoint, which must be of size `n`.
async fn checkpoint_tree(backend: &PosixBackend, n: u64) -> anyhow::Result<SearchTree> {
    let note = backend
        .storage
        .read_checkpoint()
        .await?
        .context("the log has no checkpoint")?;
    let checkpoint = Checkpoint::parse(Note::parse(&note.data)?.text())?;
    if checkpoint.size != n {
        bail!("the checkpoint is of size {}, wanted {n}", checkpoint.size);
    }
    Ok(SearchTree {
        size: n,
        root: Hash(checkpoint.root),
    })
}

/// The search index's directory in the log directory `dir`.
pub(crate) fn search_dir(dir: &Path) -> std::path::PathBuf {
    dir.join(PRIVATE_DIR).join("search")
}

/// Entries per second.
#[allow(clippy::as_conversions, reason = "counts far below 2^53")]
pub(crate) fn rate(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// The size of a directory tree: apparent bytes, allocated bytes, and the apparent bytes of
/// each of its direct children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DirBytes {
    pub(crate) apparent: u64,
    pub(crate) allocated: u64,
    pub(crate) parts: Vec<(String, u64)>,
}

impl DirBytes {
    pub(crate) fn of(dir: &Path) -> anyhow::Result<DirBytes> {
        let mut parts = Vec::new();
        let mut apparent = 0;
        let mut allocated = 0;
        for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry?;
            let (a, b) = tree_bytes(&entry.path())?;
            parts.push((entry.file_name().to_string_lossy().into_owned(), a));
            apparent += a;
            allocated += b;
        }
        parts.sort();
        Ok(DirBytes {
            apparent,
            allocated,
            parts,
        })
    }

    /// The children as `name=bytes ...`.
    pub(crate) fn describe_parts(&self) -> String {
        self.parts
            .iter()
            .map(|(name, bytes)| format!("{name}={bytes}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn tree_bytes(path: &Path) -> anyhow::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Ok((meta.len(), meta.blocks() * 512));
    }
    let mut total = (0, 0);
    for entry in std::fs::read_dir(path)? {
        let (a, b) = tree_bytes(&entry?.path())?;
        total.0 += a;
        total.1 += b;
    }
    Ok(total)
}

/// The directory's size once it has not changed for a second (background flushes and
/// compactions done), or after `limit`.
pub(crate) fn settled(dir: &Path, limit: Duration) -> anyhow::Result<DirBytes> {
    let started = Instant::now();
    let mut last = DirBytes::of(dir)?;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = DirBytes::of(dir)?;
        if now == last || started.elapsed() > limit {
            return Ok(now);
        }
        last = now;
    }
}
