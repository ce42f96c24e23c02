//! The `rekor-search-indexer` binary against a POSIX log running without `--search-index`, all
//! on 127.0.0.1: it indexes what was logged, `rekor_client::Client::search` pointed at it
//! finds exactly the entries the uploads returned (every page verified against the log's own
//! key, and by the testkit's independent verifier), it follows the log as it grows, resumes
//! from its directory after a restart, and never indexes a checkpoint it cannot verify.
//!
//! The log is `rekor_server::start` over a `PosixBackend`, built as `rekor-server-posix`'s main
//! builds it, in this process: cargo gives a test the path of its own package's binaries only,
//! and the binary under test here is the indexer.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use clap::Parser as _;
use rekor_client::{Client, ClientOptions, Completeness};
use rekor_entries::search::SearchTerm;
use rekor_server::{Backend, RunningServer, ServerArgs};
use rekor_storage::SearchIndex as _;
use rekor_storage::posix::{PosixBackend, PosixSearchIndex};
use rekor_testkit::fixtures::artifact;
use rekor_testkit::{ClientKey, HttpClient, KeyKind, LogEntry, Submission, TrustedLog};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

const HOSTNAME: &str = "indexer-e2e.test";
/// How long any wait for the indexer may take.
const WAIT: Duration = Duration::from_secs(60);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(clap::Parser)]
struct LogCli {
    #[command(flatten)]
    server: ServerArgs,
}

/// A POSIX log serving HTTP on 127.0.0.1, without a search index.
struct TestLog {
    server: RunningServer,
    posix: PosixBackend,
    http: HttpClient,
    trust: TrustedLog,
}

impl TestLog {
    async fn start(dir: &Path) -> anyhow::Result<TestLog> {
        let cli = LogCli::try_parse_from([
            "rekor-server-posix",
            "--hostname",
            HOSTNAME,
            "--http-address",
            "127.0.0.1",
            "--http-port",
            "0",
            "--grpc-address",
            "127.0.0.1",
            "--grpc-port",
            "0",
            "--http-metrics-port",
            "0",
        ])?;
        ensure!(!cli.server.search_index, "the log must not index");
        let posix = PosixBackend::open(dir)?;
        let backend = Backend {
            generated_key_dir: Some(dir.to_path_buf()),
            ..Backend::new(
                Arc::clone(&posix.storage) as _,
                Arc::clone(&posix.coordinator) as _,
            )
        };
        let server = rekor_server::start(cli.server, backend).await?;
        let http = HttpClient::new(server.http_address)?;
        let trust = TrustedLog::from_storage_dir(dir, HOSTNAME)?;
        Ok(TestLog {
            server,
            posix,
            http,
            trust,
        })
    }

    /// The tlog-tiles base the indexer follows.
    fn tiles_url(&self) -> String {
        format!("http://{}/api/v2", self.server.http_address)
    }

    fn vkey(&self) -> anyhow::Result<String> {
        self.trust
            .verifier
            .to_vkey()
            .context("an Ed25519 log key has a vkey")
    }

    async fn log(&self, submission: &Submission) -> anyhow::Result<u64> {
        Ok(self.http.create_entry(submission).await?.log_index)
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.server.stop().await;
        self.posix.sync().await?;
        Ok(())
    }
}

/// The indexer binary, with its JSON log lines kept; killed when dropped.
struct IndexerProcess {
    child: Child,
    address: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl IndexerProcess {
    fn start(args: &[&str]) -> anyhow::Result<IndexerProcess> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rekor-search-indexer"))
            .args(args)
            .args(["--listen", "127.0.0.1:0", "--poll-interval", "100ms"])
            .args(["--log-json", "--log-level", "info"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().context("stderr is piped")?;
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Ok(mut lines) = lines.lock() {
                        lines.push(line);
                    }
                }
            });
        }
        let mut process = IndexerProcess {
            child,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            lines,
        };
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(address) = process
                .find(|f| f["message"] == "listening")
                .and_then(|f| f["address"].as_str().and_then(|a| a.parse().ok()))
            {
                process.address = address;
                return Ok(process);
            }
            if let Some(status) = process.child.try_wait()? {
                bail!("the indexer exited with {status}:\n{}", process.stderr());
            }
            if Instant::now() > deadline {
                bail!(
                    "the indexer did not listen in {WAIT:?}:\n{}",
                    process.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The indexer following `log_url` with the verifier key `vkey`, indexing into `index_dir`.
    fn follow(log_url: &str, vkey: &str, index_dir: &Path) -> anyhow::Result<IndexerProcess> {
        IndexerProcess::start(&[
            "--log-url",
            log_url,
            "--log-vkey",
            vkey,
            "--index-dir",
            index_dir.to_str().context("utf-8 path")?,
        ])
    }

    /// The `fields` of the last log line they satisfy.
    fn find(&self, wanted: impl Fn(&Value) -> bool) -> Option<Value> {
        let lines = self.lines.lock().ok()?;
        lines
            .iter()
            .rev()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .map(|line| line["fields"].clone())
            .find(|fields| wanted(fields))
    }

    fn stderr(&self) -> String {
        self.lines.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Waits (bounded) until the indexer reports an index of `size` entries.
    async fn wait_indexed(&self, size: u64) -> anyhow::Result<()> {
        let deadline = Instant::now() + WAIT;
        while self
            .find(|f| f["message"] == "search index caught up with the log" && f["indexed"] == size)
            .is_none()
        {
            if Instant::now() > deadline {
                bail!("not indexed up to {size} in {WAIT:?}:\n{}", self.stderr());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(
            &format!("http://{}", self.address),
            ClientOptions::default(),
        )?)
    }

    /// SIGTERM, and a bounded wait for the exit.
    fn stop(mut self) -> anyhow::Result<ExitStatus> {
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        ensure!(kill.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("the indexer did not stop:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for IndexerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The indices `Client::search` finds for `term` on the indexer, every page verified with the
/// log's key; a page size of 1 makes it follow every token.
async fn client_search(
    indexer: &IndexerProcess,
    log: &TestLog,
    term: &SearchTerm,
) -> anyhow::Result<Vec<u64>> {
    let results = indexer
        .client()?
        .search(&log.trust.verifier, term, 1)
        .await?;
    match &results.completeness {
        Completeness::Unchecked { reason } => ensure!(
            reason.contains("standalone search indexer"),
            "completeness: {reason}"
        ),
        other => bail!("completeness from an indexer that cannot sign: {other:?}"),
    }
    Ok(results.entries.iter().map(|e| e.index).collect())
}

fn key_term(key: &ClientKey) -> anyhow::Result<SearchTerm> {
    Ok(SearchTerm::key(&format!(
        "sha256:{}",
        hex(&Sha256::digest(key.public_key_der()))
    ))?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_log_and_answers_searches_verified_by_the_log_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let log = TestLog::start(&dir.path().join("log")).await?;
    let alice = ClientKey::generate(KeyKind::EcdsaP256)?;
    let bob = ClientKey::generate(KeyKind::EcdsaP256)?;
    let shared = artifact("indexer shared", 0)?;
    let mut submissions = vec![alice.hashed_rekord(&shared)?];
    for n in 1..3 {
        submissions.push(alice.hashed_rekord(&artifact("indexer alice", n)?)?);
    }
    submissions.push(bob.hashed_rekord(&shared)?);
    submissions.push(bob.hashed_rekord(&artifact("indexer bob", 1)?)?);
    let mut indices = Vec::new();
    for submission in &submissions {
        indices.push(log.log(submission).await?);
    }

    let index_dir = dir.path().join("index");
    let vkey = log.vkey()?;
    let log_url = log.tiles_url();
    let indexer = IndexerProcess::follow(&log_url, &vkey, &index_dir)?;
    indexer.wait_indexed(5).await?;

    let digest = SearchTerm::digest(&format!("sha256:{}", hex(&Sha256::digest(&shared))))?;
    ensure!(
        client_search(&indexer, &log, &digest).await? == [indices[0], indices[3]],
        "shared digest"
    );
    ensure!(
        client_search(&indexer, &log, &key_term(&alice)?).await? == indices[..3],
        "alice's key"
    );
    ensure!(
        client_search(&indexer, &log, &key_term(&bob)?).await? == indices[3..],
        "bob's key"
    );

    // The raw answer, checked by the testkit's own verifier against the submissions.
    let http = HttpClient::new(indexer.address)?;
    let answer = http
        .get(&format!("/api/v2/search?{}={}", "digest", digest.value()))
        .await?
        .expect_status(200)?
        .json()?;
    let entries = answer["entries"].as_array().context("entries")?;
    ensure!(entries.len() == 2, "{answer}");
    for (value, i) in entries.iter().zip([0, 3]) {
        let entry = LogEntry::from_protojson(value)?;
        rekor_testkit::verify_entry(&log.trust, &submissions[i], &entry)?;
        ensure!(
            value["inclusionProof"]["checkpoint"]["envelope"] == answer["checkpoint"],
            "proof to another checkpoint"
        );
    }
    // The checkpoint and the tiles are the log's; completeness is the log's to sign; there is
    // nothing to write to.
    ensure!(http.checkpoint().await? == log.http.checkpoint().await?);
    for tile in ["tile/0/000.p/5", "tile/entries/000.p/5"] {
        ensure!(
            http.tile(tile).await? == log.http.tile(tile).await?,
            "{tile}"
        );
    }
    let reply = http
        .get(&format!(
            "/api/v2/search/completeness?digest={}",
            digest.value()
        ))
        .await?
        .expect_status(501)?;
    ensure!(
        reply.text().contains("signed only by the log"),
        "{}",
        reply.text()
    );
    http.post_entry(submissions[0].request_json_text())
        .await?
        .expect_status(404)?;

    // The log grows: the new entries are indexed and found.
    let more = [
        alice.hashed_rekord(&artifact("indexer alice", 3)?)?,
        alice.hashed_rekord(&artifact("indexer alice", 4)?)?,
    ];
    for submission in &more {
        indices.push(log.log(submission).await?);
    }
    indexer.wait_indexed(7).await?;
    let alice_entries = [indices[0], indices[1], indices[2], indices[5], indices[6]];
    ensure!(client_search(&indexer, &log, &key_term(&alice)?).await? == alice_entries);

    // A graceful stop; the directory holds the index and the last verified checkpoint.
    let status = indexer.stop()?;
    ensure!(status.success(), "exit {status}");
    {
        let index = PosixSearchIndex::open_standalone(&index_dir)?;
        ensure!(index.indexed_size().await? == 7, "indexed size on disk");
        let head = std::fs::read(index_dir.join("checkpoint"))?;
        ensure!(log.trust.verifier.verify_checkpoint(&head)?.size == 7);
    }

    // A restart resumes from the directory, then follows the log on.
    let late = bob.hashed_rekord(&artifact("indexer bob", 2)?)?;
    indices.push(log.log(&late).await?);
    let indexer = IndexerProcess::follow(&log_url, &vkey, &index_dir)?;
    let opened = indexer
        .find(|f| f["message"] == "following the log")
        .context("no start line")?;
    ensure!(
        opened["indexed"] == 7 && opened["verified"] == 7,
        "did not resume: {opened}"
    );
    indexer.wait_indexed(8).await?;
    ensure!(
        client_search(&indexer, &log, &key_term(&bob)?).await?
            == [indices[3], indices[4], indices[7]]
    );
    ensure!(indexer.stop()?.success());
    log.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_the_key_does_not_verify_is_never_indexed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let log = TestLog::start(&dir.path().join("log")).await?;
    let alice = ClientKey::generate(KeyKind::EcdsaP256)?;
    let data = artifact("indexer wrong key", 0)?;
    log.log(&alice.hashed_rekord(&data)?).await?;
    log.log(&alice.hashed_rekord(&artifact("indexer wrong key", 1)?)?)
        .await?;

    // Another key under the log's own name: the log's checkpoints are not signed by it.
    let impostor =
        rekor_note::LogSigner::from_ed25519_seed([42; 32], rekor_note::KeyName::new(HOSTNAME)?);
    let wrong_vkey = impostor.verifier().to_vkey().context("vkey")?;
    let index_dir = dir.path().join("index");
    let log_url = log.tiles_url();
    let indexer = IndexerProcess::follow(&log_url, &wrong_vkey, &index_dir)?;
    let http = HttpClient::new(indexer.address)?;
    let digest = format!("sha256:{}", hex(&Sha256::digest(&data)));
    // Several poll intervals: every answer is 503, none an entry.
    let until = Instant::now() + Duration::from_secs(2);
    let mut asked = 0;
    while Instant::now() < until {
        let search = http.get(&format!("/api/v2/search?digest={digest}")).await?;
        ensure!(
            search.status == 503,
            "search answered {}: {}",
            search.status,
            search.text()
        );
        ensure!(search.text().contains("refused"), "{}", search.text());
        http.get("/api/v2/checkpoint").await?.expect_status(503)?;
        asked += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure!(asked >= 3, "asked {asked} times");
    ensure!(indexer.stop()?.success());
    let index = PosixSearchIndex::open_standalone(&index_dir)?;
    ensure!(index.indexed_size().await? == 0, "something was indexed");
    ensure!(
        !index_dir.join("checkpoint").exists(),
        "a refused checkpoint was kept"
    );
    log.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_that_is_not_the_logs_is_never_indexed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let log_dir = dir.path().join("log");
    let log = TestLog::start(&log_dir).await?;
    let alice = ClientKey::generate(KeyKind::EcdsaP256)?;
    let hidden = artifact("indexer bundle", 2)?;
    for data in [
        artifact("indexer bundle", 0)?,
        artifact("indexer bundle", 1)?,
        hidden.clone(),
    ] {
        log.log(&alice.hashed_rekord(&data)?).await?;
    }
    // The bundle of the 3-entry checkpoint, as a mirror that hides the last entry would serve
    // it: that entry replaced by a copy of the first. It still decodes, and its hash tiles
    // are the log's own.
    let bundle_path = log_dir.join("tile/entries/000.p/3");
    let genuine = std::fs::read(&bundle_path)?;
    let entries =
        rekor_tlog::decode_bundle_exact(&genuine, rekor_tlog::TileWidth::new(3).context("width")?)?;
    ensure!(entries.len() == 3, "{} entries", entries.len());
    let mut forged = Vec::new();
    for entry in [entries[0], entries[1], entries[0]] {
        forged.extend_from_slice(&u16::try_from(entry.len())?.to_be_bytes());
        forged.extend_from_slice(entry);
    }
    std::fs::remove_file(&bundle_path)?;
    std::fs::write(&bundle_path, &forged)?;

    let index_dir = dir.path().join("index");
    let log_url = log.tiles_url();
    let vkey = log.vkey()?;
    let indexer = IndexerProcess::follow(&log_url, &vkey, &index_dir)?;
    // The checkpoint is accepted (it is the log's), the bundle is refused, and nothing is
    // indexed from it.
    let deadline = Instant::now() + WAIT;
    while indexer
        .find(|f| {
            f["message"] == "following the log failed; retrying"
                && f["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("is not part of the log's tree of size 3"))
        })
        .is_none()
    {
        ensure!(
            Instant::now() < deadline,
            "the forged bundle was not refused:\n{}",
            indexer.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(
        indexer
            .find(|f| f["message"] == "search index caught up with the log" && f["indexed"] != 0)
            .is_none(),
        "indexed from the forged bundle:\n{}",
        indexer.stderr()
    );
    // The genuine bundle back: the next retry indexes all three, the hidden entry included.
    std::fs::remove_file(&bundle_path)?;
    std::fs::write(&bundle_path, &genuine)?;
    indexer.wait_indexed(3).await?;
    let http = HttpClient::new(indexer.address)?;
    let digest = format!("sha256:{}", hex(&Sha256::digest(&hidden)));
    let found = http.get(&format!("/api/v2/search?digest={digest}")).await?;
    let found = found.expect_status(200)?;
    let answer: Value = serde_json::from_str(&found.text())?;
    let indices: Vec<&Value> = answer["entries"]
        .as_array()
        .context("entries")?
        .iter()
        .map(|entry| &entry["logIndex"])
        .collect();
    ensure!(indices == [&Value::from("2")], "found {indices:?}");
    ensure!(indexer.stop()?.success());
    log.stop().await
}
