//! End-to-end scenarios shared by every backend's tests, so each backend runs the same checks.
//!
//! [`frontends_build_one_tree`]: clients write concurrently through one or more frontends that
//! share a backend (half over HTTP, half over gRPC); every answer is verified completely; then
//! the indices must be exactly `0..total` with none given twice, every checkpoint any client saw
//! must be a prefix of the one audited tree (no fork), every frontend must serve that same tree,
//! and a resubmission through another frontend must be refused with the first index.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::assertions::{audit, verify_entry};
use crate::error::{Error, Result, ensure_eq};
use crate::fixtures::{ClientKey, KeyKind, Submission, artifact};
use crate::{HttpClient, LatencySummary, TestLog, merkle};

/// What [`frontends_build_one_tree`] measured.
#[derive(Clone, Debug)]
pub struct SharedBackendReport {
    /// Entries written.
    pub entries: usize,
    /// Write latency as the clients saw it (answer verified after the clock stopped).
    pub latency: Option<LatencySummary>,
    /// Wall time of the concurrent phase.
    pub elapsed: Duration,
    /// Distinct checkpoints the clients were answered with.
    pub checkpoints_seen: usize,
    /// Checkpoints the frontends published, summed (from their metrics).
    pub checkpoints_published: u64,
    /// Tiles and entry bundles the frontends wrote, summed (from their metrics).
    pub objects_written: u64,
}

impl std::fmt::Display for SharedBackendReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let latency = self
            .latency
            .map_or_else(|| "no samples".to_string(), |l| l.to_string());
        let per_publication = if self.checkpoints_published == 0 {
            0.0
        } else {
            self.objects_written as f64 / self.checkpoints_published as f64
        };
        write!(
            f,
            "{} entries in {:.2?}; latency {latency}; {} checkpoints seen by clients, {} published, \
             {} objects written ({per_publication:.1} per publication)",
            self.entries,
            self.elapsed,
            self.checkpoints_seen,
            self.checkpoints_published,
            self.objects_written
        )
    }
}

struct Written {
    index: u64,
    body: Vec<u8>,
    tree_size: u64,
    root: [u8; 32],
    latency: Duration,
}

/// Writes `clients_per_frontend × entries_per_client` entries through each frontend at once and
/// checks that together they built one tree. The log must be empty when called.
///
/// # Errors
///
/// The first failed write, verification or tree check.
pub async fn frontends_build_one_tree(
    frontends: &[Arc<TestLog>],
    clients_per_frontend: usize,
    entries_per_client: usize,
) -> Result<SharedBackendReport> {
    let first = frontends
        .first()
        .ok_or_else(|| Error::malformed("frontends", "none given"))?;
    let mut plans = Vec::new();
    for (f, frontend) in frontends.iter().enumerate() {
        for client in 0..clients_per_frontend {
            let key = ClientKey::generate(if client % 5 == 3 {
                KeyKind::Ed25519ph
            } else {
                KeyKind::EcdsaP256
            })?;
            let submissions = (0..entries_per_client)
                .map(|n| key.hashed_rekord(&artifact(&format!("frontend {f} client {client}"), n)?))
                .collect::<Result<Vec<Submission>>>()?;
            plans.push((Arc::clone(frontend), client % 2 == 0, submissions));
        }
    }

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (frontend, over_http, submissions) in plans {
        tasks.spawn(async move {
            let mut written = Vec::new();
            for submission in submissions {
                let sent = Instant::now();
                let entry = if over_http {
                    frontend.http.create_entry(&submission).await?
                } else {
                    frontend.grpc.create_entry_for(&submission).await?
                };
                let latency = sent.elapsed();
                let verified = verify_entry(&frontend.trust, &submission, &entry)?;
                written.push(Written {
                    index: verified.index,
                    body: entry.canonicalized_body,
                    tree_size: verified.checkpoint.size,
                    root: verified.checkpoint.root,
                    latency,
                });
            }
            Ok::<_, Error>(written)
        });
    }
    let mut written = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let batch = joined.map_err(|e| Error::io("a client task", std::io::Error::other(e)))??;
        written.extend(batch);
    }
    let elapsed = started.elapsed();
    let total = frontends.len() * clients_per_frontend * entries_per_client;
    ensure_eq("answers", total, written.len())?;

    let mut by_index: BTreeMap<u64, &Written> = BTreeMap::new();
    for w in &written {
        if by_index.insert(w.index, w).is_some() {
            return Err(Error::mismatch(
                "indices",
                "each index given once",
                format!("index {} given twice", w.index),
            ));
        }
    }
    let expected: Vec<u64> = (0..u64::try_from(total).unwrap_or(u64::MAX)).collect();
    let indices: Vec<u64> = by_index.keys().copied().collect();
    ensure_eq("indices", expected, indices)?;

    // Every frontend serves the same, complete tree.
    let report = audit(&first.http, &first.trust).await?;
    ensure_eq(
        "audited size",
        u64::try_from(total).unwrap_or(u64::MAX),
        report.checkpoint.size,
    )?;
    for frontend in &frontends[1..] {
        let note = frontend.http.checkpoint().await?;
        ensure_eq(
            "checkpoint served by every frontend",
            String::from_utf8_lossy(&report.checkpoint.note).into_owned(),
            String::from_utf8_lossy(&note).into_owned(),
        )?;
    }
    for (index, w) in &by_index {
        let at = usize::try_from(*index).unwrap_or(usize::MAX);
        if report.entries.get(at) != Some(&w.body) {
            return Err(Error::mismatch(
                format!("entry bundle at {index}"),
                "the body the client was answered with",
                "different bytes",
            ));
        }
    }
    // No fork: every checkpoint a client saw is a prefix of the audited tree.
    let mut roots: BTreeMap<u64, [u8; 32]> = BTreeMap::new();
    for w in &written {
        if let Some(previous) = roots.insert(w.tree_size, w.root)
            && previous != w.root
        {
            return Err(Error::mismatch(
                format!("root of tree size {}", w.tree_size),
                hex::encode(previous),
                hex::encode(w.root),
            ));
        }
    }
    for (&size, root) in &roots {
        let prefix = &report.leaf_hashes[..usize::try_from(size).unwrap_or(usize::MAX)];
        ensure_eq(
            format!("root of the checkpoint of size {size}"),
            hex::encode(merkle::root(prefix)),
            hex::encode(root),
        )?;
    }

    // A resubmission through any frontend is refused with the first index.
    if let Some(last) = frontends.last() {
        let key = ClientKey::generate(KeyKind::EcdsaP256)?;
        let submission = key.hashed_rekord(&artifact("resubmitted", 0)?)?;
        let entry = first.http.create_entry(&submission).await?;
        let index = verify_entry(&first.trust, &submission, &entry)?.index;
        last.expect_duplicate_http(&submission, index).await?;
        last.expect_duplicate_grpc(&submission, index).await?;
    }

    let mut checkpoints_published = 0;
    let mut objects_written = 0;
    for frontend in frontends {
        let metrics = HttpClient::new(frontend.server.listeners().metrics)?;
        let text = metrics.get("/metrics").await?.text();
        checkpoints_published += metric(&text, "rekor_v2_checkpoints_published")?;
        objects_written += metric(&text, "rekor_v2_storage_objects_written")?;
    }
    let latencies: Vec<Duration> = written.iter().map(|w| w.latency).collect();
    Ok(SharedBackendReport {
        entries: total,
        latency: LatencySummary::of(&latencies),
        elapsed,
        checkpoints_seen: roots.len(),
        checkpoints_published,
        objects_written,
    })
}

/// Reads an integer gauge from a Prometheus text exposition.
fn metric(text: &str, name: &str) -> Result<u64> {
    text.lines()
        .find_map(|line| {
            let rest = line.strip_prefix(name)?;
            let value = rest.strip_prefix(' ')?;
            value.trim().parse::<u64>().ok()
        })
        .ok_or_else(|| Error::malformed("metrics", format!("no value for {name}")))
}

/// The suite every shared backend runs: two frontends started from `config` write concurrently
/// and must build one tree ([`frontends_build_one_tree`]); then one is killed (SIGKILL) and
/// restarted, and a write through it lands right after everything before it; then both stop
/// cleanly, having logged no errors.
///
/// # Errors
///
/// The first failed start, write, check or stop.
pub async fn shared_backend_suite(
    config: &crate::ServerConfig,
    clients_per_frontend: usize,
    entries_per_client: usize,
) -> Result<SharedBackendReport> {
    let first = Arc::new(TestLog::start(config).await?);
    let second = Arc::new(TestLog::start(config).await?);
    let report = frontends_build_one_tree(
        &[Arc::clone(&first), Arc::clone(&second)],
        clients_per_frontend,
        entries_per_client,
    )
    .await?;
    let first =
        Arc::into_inner(first).ok_or_else(|| Error::malformed("frontend", "still shared"))?;
    let second =
        Arc::into_inner(second).ok_or_else(|| Error::malformed("frontend", "still shared"))?;
    // Everything so far, plus the resubmission check's one entry.
    let size = u64::try_from(report.entries + 1).unwrap_or(u64::MAX);

    first.kill().await?;
    let restarted = TestLog::start(config).await?;
    let key = ClientKey::generate(KeyKind::EcdsaP256)?;
    let submission = key.hashed_rekord(&artifact("after restart", 0)?)?;
    let entry = restarted.grpc.create_entry_for(&submission).await?;
    let verified = verify_entry(&restarted.trust, &submission, &entry)?;
    ensure_eq("index of the write after a restart", size, verified.index)?;
    // The other frontend serves the new tree, and refuses the entry as a duplicate.
    second.expect_duplicate_http(&submission, size).await?;
    let after = audit(&second.http, &second.trust).await?;
    ensure_eq("size after the restart", size + 1, after.checkpoint.size)?;

    // Frozen while both frontends run: both refuse writes from then on, as does a new one,
    // and the final checkpoint covers everything that was logged.
    let last = freeze_and_check(config, &[&restarted, &second], size + 1).await?;
    let late = TestLog::start(config).await?;
    expect_frozen(
        &late,
        &key.hashed_rekord(&artifact("after the freeze", 1)?)?,
    )
    .await?;
    ensure_eq(
        "checkpoint of a frontend started after the freeze",
        last,
        late.http.checkpoint().await?.to_vec(),
    )?;
    late.stop().await?;

    for frontend in [restarted, second] {
        let errors = frontend.server.logged_errors();
        if !errors.is_empty() {
            return Err(Error::mismatch(
                "errors logged by a frontend",
                "none",
                errors.join("\n"),
            ));
        }
        frontend.stop().await?;
    }
    Ok(report)
}

/// Runs `freeze` with `config` and checks what it says and what `frontends` serve after it: the
/// final size `size`, the final checkpoint (verified, and the one served), writes refused on both
/// transports, and a second `freeze` reporting the same. Returns the final checkpoint.
///
/// # Errors
///
/// [`Error::Mismatch`] naming what differed.
pub async fn freeze_and_check(
    config: &crate::ServerConfig,
    frontends: &[&TestLog],
    size: u64,
) -> Result<Vec<u8>> {
    let run = |config: crate::ServerConfig| async move {
        tokio::task::spawn_blocking(move || config.run_subcommand("freeze"))
            .await
            .map_err(|e| Error::io("running freeze", std::io::Error::other(e)))?
    };
    let said = run(config.clone()).await?;
    let (head, note) = said
        .split_once("\nfinal checkpoint:\n")
        .ok_or_else(|| Error::malformed("freeze output", said.clone()))?;
    ensure_eq(
        "freeze output",
        format!("frozen at size {size}"),
        head.to_string(),
    )?;
    let key = ClientKey::generate(KeyKind::EcdsaP256)?;
    for (n, frontend) in frontends.iter().enumerate() {
        let checkpoint = crate::assertions::verify_checkpoint(&frontend.trust, note.as_bytes())?;
        ensure_eq("final checkpoint size", size, checkpoint.size)?;
        ensure_eq(
            "checkpoint served after the freeze",
            note.as_bytes().to_vec(),
            frontend.http.checkpoint().await?.to_vec(),
        )?;
        expect_frozen(frontend, &key.hashed_rekord(&artifact("frozen", n)?)?).await?;
        let report = audit(&frontend.http, &frontend.trust).await?;
        ensure_eq("entries after the freeze", size, report.checkpoint.size)?;
    }
    let again = run(config.clone()).await?;
    ensure_eq("a second freeze", said.as_str(), again.as_str())?;
    Ok(note.as_bytes().to_vec())
}

/// Checks that `log` refuses `submission` as a frozen log: HTTP 405 with rekor-tiles' text, gRPC
/// `Unimplemented`.
///
/// # Errors
///
/// [`Error::Mismatch`] naming what differed.
pub async fn expect_frozen(log: &TestLog, submission: &Submission) -> Result<()> {
    let reply = log
        .http
        .post_entry(submission.request_json_text())
        .await?
        .expect_status(405)?;
    ensure_eq(
        "HTTP answer of a frozen log",
        "This log has been frozen, please switch to the latest log.\n".to_string(),
        reply.text(),
    )?;
    match log.grpc.create_entry(submission.request_proto()?).await {
        Err(status) if status.code() == tonic::Code::Unimplemented => Ok(()),
        other => Err(Error::mismatch(
            "gRPC answer of a frozen log",
            "Unimplemented",
            format!("{other:?}"),
        )),
    }
}

/// Search on a shared backend: two frontends started with `--search-index` (and commitments
/// every 200 ms) index one log into one shared index. Entries written through either are
/// found through both, each checked by this crate's verifier against its submission, and
/// both come to sign a commitment to the whole tree.
///
/// # Errors
///
/// The first check that fails.
pub async fn shared_search_suite(config: &crate::ServerConfig) -> Result<()> {
    use sha2::{Digest as _, Sha256};

    let config =
        config
            .clone()
            .with_args(["--search-index", "--search-commitment-interval", "200ms"]);
    let frontends = [
        TestLog::start(&config).await?,
        TestLog::start(&config).await?,
    ];
    let alice = ClientKey::generate(KeyKind::EcdsaP256)?;
    let bob = ClientKey::generate(KeyKind::EcdsaP256)?;
    let shared = artifact("shared search", 0)?;
    let mut alices = Vec::new();
    let mut shared_entries = Vec::new();
    for n in 0..4 {
        let frontend = &frontends[n % 2];
        let submission = alice.hashed_rekord(&artifact("alice search", n)?)?;
        let entry = frontend.http.create_entry(&submission).await?;
        alices.push((entry.log_index, submission));
    }
    for (n, key) in [&alice, &bob].into_iter().enumerate() {
        let submission = key.hashed_rekord(&shared)?;
        let entry = frontends[n].http.create_entry(&submission).await?;
        shared_entries.push((entry.log_index, submission));
    }
    alices.push(shared_entries[0].clone());
    alices.sort_by_key(|(index, _)| *index);
    let size = 6;

    let alice_key = format!(
        "key=sha256:{}",
        hex::encode(Sha256::digest(alice.public_key_der()))
    );
    let digest = format!("digest=sha256:{}", hex::encode(Sha256::digest(&shared)));
    for frontend in &frontends {
        for (query, want) in [(&alice_key, &alices), (&digest, &shared_entries)] {
            let found = search_until(frontend, query, size).await?;
            let indices: Vec<u64> = found.iter().map(|e| e.log_index).collect();
            let expected: Vec<u64> = want.iter().map(|(index, _)| *index).collect();
            ensure_eq(format!("entries for {query}"), expected, indices)?;
            for (entry, (_, submission)) in found.iter().zip(want.iter()) {
                verify_entry(&frontend.trust, submission, entry)?;
            }
        }
        // A signed commitment to the whole tree, from each frontend.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let reply = frontend
                .http
                .get(&format!("/api/v2/search/completeness?{digest}"))
                .await?;
            let committed = reply.status == 200
                && reply.json()?["commitment"]
                    .as_str()
                    .is_some_and(|c| c.contains(&format!("/search-index/v1\n{size}\n")));
            if committed {
                break;
            }
            if Instant::now() > deadline {
                return Err(Error::mismatch(
                    "search-index commitment",
                    format!("one for size {size}"),
                    format!("HTTP {} after 30 s", reply.status),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for frontend in frontends {
        frontend.stop().await?;
    }
    Ok(())
}

/// The entries of a search once its checkpoint has `size` entries (a frontend may serve an
/// older checkpoint for a moment), each with its proof to the answer's checkpoint.
async fn search_until(log: &TestLog, query: &str, size: u64) -> Result<Vec<crate::LogEntry>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = log
            .http
            .get(&format!("/api/v2/search?{query}&pageSize=100"))
            .await?
            .expect_status(200)?
            .json()?;
        let checkpoint = answer["checkpoint"].as_str().unwrap_or_default();
        let entries = answer["entries"].as_array().cloned().unwrap_or_default();
        let parsed = entries
            .iter()
            .map(crate::LogEntry::from_protojson)
            .collect::<Result<Vec<_>>>()?;
        let tree_size = |e: &crate::LogEntry| e.proof.as_ref().map_or(0, |p| p.tree_size);
        if parsed.iter().any(|e| tree_size(e) != size) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        for (entry, value) in parsed.iter().zip(&entries) {
            let envelope = value["inclusionProof"]["checkpoint"]["envelope"].as_str();
            ensure_eq(
                "the checkpoint an entry is proven into",
                Some(checkpoint),
                envelope,
            )?;
            ensure_eq("the size of the tree searched", size, tree_size(entry))?;
        }
        return Ok(parsed);
    }
}
