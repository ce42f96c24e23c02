//! The server and the lookups: `rekor-server-posix serve --search-index` on the log directory,
//! on 127.0.0.1, and `GET /api/v2/search` over one kept-alive HTTP/1.1 connection, one query at
//! a time (closed loop). Each answer is timed from the first byte written to the last byte
//! read, then checked (outside the timing) against what the corpus says it must hold.

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rekor_entries::search::{SearchTerm, search_terms};

use crate::report::{CpuTime, Latency};

/// The longest wait for one answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer accepted (a page of 100 entries with proofs is about 300 KB).
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// A running `rekor-server-posix serve`, stopped (SIGTERM) when dropped.
pub(crate) struct Server {
    child: Option<Child>,
    pub(crate) address: SocketAddr,
}

impl Server {
    /// The server's CPU time so far (all its threads, user and system).
    pub(crate) fn cpu_time(&self) -> anyhow::Result<CpuTime> {
        let child = self.child.as_ref().context("the server has stopped")?;
        CpuTime::of(&child.id().to_string())
    }

    /// Starts the server on `dir` with its HTTP port `port` (gRPC and metrics on the next two),
    /// its log in `log_file`, and waits until `/healthz` answers 200, at most `limit`.
    pub(crate) fn start(
        bin: &Path,
        dir: &Path,
        hostname: &str,
        port: u16,
        log_file: &Path,
        limit: Duration,
    ) -> anyhow::Result<(Server, Duration)> {
        let log = std::fs::File::create(log_file)
            .with_context(|| format!("creating {}", log_file.display()))?;
        let started = Instant::now();
        let child = Command::new(bin)
            .arg("serve")
            .arg("--storage-dir")
            .arg(dir)
            .args(["--hostname", hostname])
            .args(["--http-address", "127.0.0.1", "--grpc-address", "127.0.0.1"])
            .args(["--http-port", &port.to_string()])
            .args(["--grpc-port", &(port + 1).to_string()])
            .args(["--http-metrics-port", &(port + 2).to_string()])
            .args(["--search-index", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut server = Server {
            child: Some(child),
            address: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        loop {
            if let Some(child) = server.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                server.child = None;
                bail!(
                    "the server exited ({status}) before answering; see {}",
                    log_file.display()
                );
            }
            if let Ok(mut client) = Client::connect(server.address)
                && let Ok((200, _)) = client.get("/healthz")
            {
                return Ok((server, started.elapsed()));
            }
            if started.elapsed() > limit {
                bail!(
                    "the server did not answer /healthz within {limit:?}; see {}",
                    log_file.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits (at most 60 s, then SIGKILL) for the exit status.
    pub(crate) fn stop(mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        terminate(&mut child)?;
        Ok(())
    }
}

fn terminate(child: &mut Child) -> anyhow::Result<()> {
    let pid = rustix::process::Pid::from_child(child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM)
        .context("sending SIGTERM to the server")?;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("the server exited with {status}");
            }
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            child.kill()?;
            child.wait()?;
            bail!("the server did not stop within 60 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = terminate(&mut child);
        }
    }
}

/// One kept-alive HTTP/1.1 connection, blocking.
pub(crate) struct Client {
    stream: TcpStream,
    host: String,
    input: Vec<u8>,
}

fn malformed(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// Waits until the server serves its first signed commitment to the index (it builds one as it
/// starts, paced so that lookups keep their latency, but a lookup timed while it runs still
/// shares the cores with it), at most `limit`; returns how long that took.
pub(crate) fn wait_for_commitment(
    client: &mut Client,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let path = format!(
        "/api/v2/search/completeness?digest=sha256:{}",
        "00".repeat(32)
    );
    loop {
        match client.get(&path)? {
            (200, _) => return Ok(started.elapsed()),
            (503, _) if started.elapsed() < limit => std::thread::sleep(Duration::from_millis(50)),
            (503, _) => bail!("the server served no search-index commitment within {limit:?}"),
            (status, body) => bail!("GET {path}: {status} {}", String::from_utf8_lossy(&body)),
        }
    }
}

impl Client {
    pub(crate) fn connect(address: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        stream.set_write_timeout(Some(ANSWER_TIMEOUT))?;
        Ok(Client {
            stream,
            host: address.to_string(),
            input: Vec::with_capacity(512 * 1024),
        })
    }

    /// `GET path`: the status and the whole body (read by `Content-Length`).
    pub(crate) fn get(&mut self, path: &str) -> io::Result<(u16, Vec<u8>)> {
        let request = format!("GET {path} HTTP/1.1\r\nhost: {}\r\n\r\n", self.host);
        self.stream.write_all(request.as_bytes())?;
        self.input.clear();
        let mut chunk = vec![0u8; 256 * 1024];
        let head_end = loop {
            if let Some(at) = self.input.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if self.input.len() > 64 * 1024 {
                return Err(malformed("response head over 64 KiB"));
            }
            let read = self.stream.read(&mut chunk)?;
            if read == 0 {
                return Err(malformed("connection closed inside the response head"));
            }
            self.input.extend_from_slice(&chunk[..read]);
        };
        let head = std::str::from_utf8(&self.input[..head_end])
            .map_err(|_| malformed("response head is not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| malformed("no status line"))?;
        let mut length = None;
        for line in lines {
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    return Err(malformed("chunked answers are not read here"));
                }
            }
        }
        let length = length.ok_or_else(|| malformed("no content-length"))?;
        if length > MAX_ANSWER {
            return Err(malformed(format!("answer of {length} bytes")));
        }
        let total = head_end + length;
        while self.input.len() < total {
            let read = self.stream.read(&mut chunk)?;
            if read == 0 {
                return Err(malformed("connection closed inside the body"));
            }
            self.input.extend_from_slice(&chunk[..read]);
        }
        if self.input.len() > total {
            return Err(malformed("bytes after the answer"));
        }
        Ok((status, self.input[head_end..].to_vec()))
    }
}

/// One query and what its answer must hold.
pub(crate) struct Query {
    pub(crate) term: SearchTerm,
    /// Entries the first page must hold.
    pub(crate) expect: usize,
    /// Whether a next page must be announced.
    pub(crate) more: bool,
}

impl Query {
    fn path(&self) -> String {
        let value: String = form_encode(self.term.value());
        format!("/api/v2/search?{}={value}", self.term.kind().name())
    }
}

fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The results of one class of queries.
pub(crate) struct ClassResult {
    pub(crate) latency: Latency,
    /// The timed queries whose term had not been asked before in this class (nor in its
    /// warm-up): what a server's caches have not seen for that term, though other terms may
    /// share its tiles. `None` when every term had been asked before.
    pub(crate) first_asked: Option<Latency>,
    /// Answers that did not hold what they must (status, count, terms, order).
    pub(crate) wrong: usize,
    /// The first wrong answer's description.
    pub(crate) first_wrong: Option<String>,
    pub(crate) mean_bytes: usize,
    /// The server's CPU time per timed query (user and system, all threads): steadier than
    /// latency on a shared machine, so the figure to compare two builds by.
    pub(crate) server_cpu: Duration,
}

/// Sends `warmup` untimed queries, then times each of `queries`, one at a time.
pub(crate) fn run_class(
    client: &mut Client,
    server: &Server,
    warmup: &[Query],
    queries: &[Query],
    limit: Duration,
) -> anyhow::Result<ClassResult> {
    let mut asked = std::collections::HashSet::new();
    for query in warmup {
        let path = query.path();
        client.get(&path).context("a warm-up query")?;
        asked.insert(path);
    }
    let cpu_before = server.cpu_time()?;
    let started = Instant::now();
    let mut samples = Vec::with_capacity(queries.len());
    let mut first_samples = Vec::new();
    let mut wrong = 0;
    let mut first_wrong = None;
    let mut bytes = 0usize;
    for query in queries {
        let path = query.path();
        let sent = Instant::now();
        let (status, body) = client.get(&path).with_context(|| format!("GET {path}"))?;
        let took = sent.elapsed();
        samples.push(took);
        if !asked.contains(&path) {
            first_samples.push(took);
        }
        bytes += body.len();
        if let Err(problem) = check(query, status, &body) {
            wrong += 1;
            first_wrong.get_or_insert_with(|| format!("GET {path}: {problem}"));
        }
        asked.insert(path);
        if started.elapsed() > limit {
            bail!("the queries took more than {limit:?}");
        }
    }
    let server_cpu = server.cpu_time()?.since(&cpu_before).total()
        / u32::try_from(queries.len().max(1)).unwrap_or(u32::MAX);
    Ok(ClassResult {
        server_cpu,
        latency: Latency::of(samples),
        first_asked: (!first_samples.is_empty()).then(|| Latency::of(first_samples)),
        wrong,
        first_wrong,
        mean_bytes: bytes / queries.len().max(1),
    })
}

/// Checks an answer: 200, the expected number of entries in ascending index order, each
/// carrying the term, and `nextPageToken` exactly when more entries match.
fn check(query: &Query, status: u16, body: &[u8]) -> Result<(), String> {
    if status != 200 {
        return Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ));
    }
    let answer: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let entries = answer
        .get("entries")
        .and_then(serde_json::Value::as_array)
        .ok_or("no entries array")?;
    if entries.len() != query.expect {
        return Err(format!(
            "{} entries, expected {}",
            entries.len(),
            query.expect
        ));
    }
    if answer.get("nextPageToken").is_some() != query.more {
        return Err(format!("nextPageToken present: {}", !query.more));
    }
    let mut last = None;
    for entry in entries {
        let index: u64 = entry
            .get("logIndex")
            .and_then(serde_json::Value::as_str)
            .and_then(|s| s.parse().ok())
            .ok_or("an entry without logIndex")?;
        if last.is_some_and(|l| l >= index) {
            return Err("entries out of order".into());
        }
        last = Some(index);
        let body = entry
            .get("canonicalizedBody")
            .and_then(serde_json::Value::as_str)
            .and_then(|b| STANDARD.decode(b).ok())
            .ok_or("an entry without canonicalizedBody")?;
        if !search_terms(&body).contains(&query.term) {
            return Err(format!("entry {index} does not carry the term"));
        }
    }
    Ok(())
}

/// Where the server writes its own log.
pub(crate) fn server_log(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(".server.log");
    PathBuf::from(name)
}
