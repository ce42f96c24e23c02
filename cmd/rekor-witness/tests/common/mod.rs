//! Shared by the end-to-end tests: run the real `rekor-witness` binary on 127.0.0.1 with port 0,
//! talk HTTP/1.1 to it over a plain socket, build test logs, and check cosignatures with code
//! independent of the witness (ed25519-dalek over a message assembled here, per
//! c2sp.org/tlog-cosignature).

#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    reason = "a helper module compiled into each test binary, which uses a part of it"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a failure is a test failure"
)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rekor_note::{Checkpoint, KeyName, LogSigner, Origin};
use rekor_tlog::{Hash, MemoryTree, TreeSize, leaf_hash};
use sha2::{Digest as _, Sha256};

pub const BIN: &str = env!("CARGO_BIN_EXE_rekor-witness");
pub const WITNESS_NAME: &str = "witness.test/w1";
const START_TIMEOUT: Duration = Duration::from_secs(30);
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A running witness; SIGKILLed when dropped.
pub struct WitnessProcess {
    child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub config: PathBuf,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl WitnessProcess {
    /// Starts `serve` on `dir` with `config`, and waits for its `listening` log line.
    pub fn start(dir: &Path, config: &Path) -> Self {
        Self::start_with(dir, config, &[])
    }

    pub fn start_with(dir: &Path, config: &Path, extra: &[&str]) -> Self {
        match Self::try_start(dir, config, extra) {
            Ok(process) => process,
            Err(stderr) => panic!("witness did not start:\n{stderr}"),
        }
    }

    /// Starts the witness; on failure returns its stderr.
    pub fn try_start(dir: &Path, config: &Path, extra: &[&str]) -> Result<Self, String> {
        let mut child = Command::new(BIN)
            .arg("serve")
            .arg("--storage-dir")
            .arg(dir)
            .args(["--name", WITNESS_NAME])
            .arg("--config")
            .arg(config)
            .args([
                "--http-address",
                "127.0.0.1",
                "--http-port",
                "0",
                "--log-json",
            ])
            .args(["--log-level", "debug"])
            .args(extra)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning rekor-witness");
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (sender, receiver) = mpsc::channel();
        {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(addr) = listening(&line) {
                        let _ = sender.send(addr);
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let joined = |lines: &Arc<Mutex<Vec<String>>>| lines.lock().unwrap().join("\n");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match receiver.recv_timeout(Duration::from_millis(100)) {
                Ok(addr) => {
                    return Ok(Self {
                        child,
                        addr,
                        dir: dir.to_path_buf(),
                        config: config.to_path_buf(),
                        stderr: lines,
                    });
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = child.wait();
                    return Err(joined(&lines));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(_)) = child.try_wait() {
                        // Let the reader thread drain what is left.
                        std::thread::sleep(Duration::from_millis(100));
                        return Err(joined(&lines));
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(format!("timed out\n{}", joined(&lines)));
                    }
                }
            }
        }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaping the witness");
    }

    /// Starts a new process on the same directory and config.
    pub fn restart(self) -> Self {
        let (dir, config) = (self.dir.clone(), self.config.clone());
        self.kill9();
        Self::start(&dir, &config)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    pub fn add(&self, body: &[u8]) -> Response {
        request(self.addr, "POST", "/add-checkpoint", body)
    }

    pub fn monitor(&self, origin: &str) -> Response {
        let hash = hex(&Sha256::digest(origin.as_bytes()));
        request(self.addr, "GET", &format!("/{hash}/checkpoint"), b"")
    }
}

impl Drop for WitnessProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn listening(line: &str) -> Option<SocketAddr> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = value.get("fields")?;
    if fields.get("message")?.as_str()? != "listening" {
        return None;
    }
    fields.get("address")?.as_str()?.parse().ok()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A minimal HTTP/1.1 request with `Connection: close`; reads the response to EOF.
pub fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connecting to the witness");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // A server may answer (e.g. 413) before reading a large body and close; ignore write errors.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut content_type = None;
    let mut chunked = false;
    for line in lines {
        let (name, value) = line.split_once(':').unwrap();
        match name.to_ascii_lowercase().as_str() {
            "content-type" => content_type = Some(value.trim().to_owned()),
            "transfer-encoding" => chunked = value.trim().eq_ignore_ascii_case("chunked"),
            _ => {}
        }
    }
    if chunked {
        body = dechunk(&body);
    }
    Response {
        status,
        content_type,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..end]).unwrap().trim(), 16).unwrap();
        raw = &raw[end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// A test log: a key and a Merkle tree of synthetic entries (`salt` makes a different tree).
pub struct TestLog {
    pub origin: String,
    pub signer: Arc<LogSigner>,
    pub tree: MemoryTree,
    salt: u8,
}

impl TestLog {
    pub fn ed25519(origin: &str, seed: u8) -> Self {
        Self::with_signer(
            origin,
            LogSigner::from_ed25519_seed([seed; 32], KeyName::new(origin).unwrap()),
        )
    }

    pub fn with_signer(origin: &str, signer: LogSigner) -> Self {
        Self {
            origin: origin.to_owned(),
            signer: Arc::new(signer),
            tree: MemoryTree::new(),
            salt: 0,
        }
    }

    /// The same key and origin over a different tree (a fork).
    pub fn fork(&self, salt: u8) -> Self {
        Self {
            origin: self.origin.clone(),
            signer: Arc::clone(&self.signer),
            tree: MemoryTree::new(),
            salt,
        }
    }

    /// `log <origin> <vkey>`.
    pub fn config_line(&self) -> String {
        format!(
            "log {} {}\n",
            self.origin,
            self.signer.verifier().to_vkey().unwrap()
        )
    }

    /// Grows the tree to `size` leaves.
    pub fn grow_to(&mut self, size: u64) {
        while self.tree.size().get() < size {
            let mut entry = format!("entry {}", self.tree.size().get()).into_bytes();
            entry.push(self.salt);
            self.tree.append(leaf_hash(&entry));
        }
    }

    pub fn root(&self, size: u64) -> Hash {
        self.tree.root(TreeSize::new(size)).unwrap()
    }

    /// The signed checkpoint note at `size`.
    pub fn checkpoint(&self, size: u64) -> Vec<u8> {
        self.checkpoint_with_root(size, self.root(size))
    }

    pub fn checkpoint_with_root(&self, size: u64, root: Hash) -> Vec<u8> {
        let checkpoint = Checkpoint::new(Origin::new(&self.origin).unwrap(), size, root.0);
        self.signer.sign_checkpoint(&checkpoint).unwrap()
    }

    pub fn proof(&self, old: u64, new: u64) -> Vec<Hash> {
        if old == 0 {
            return Vec::new();
        }
        self.tree
            .consistency_proof(TreeSize::new(old), TreeSize::new(new))
            .unwrap()
    }

    /// The add-checkpoint body from `old` to `size`, with a valid proof.
    pub fn body(&self, old: u64, size: u64) -> Vec<u8> {
        add_body(old, &self.proof(old, size), &self.checkpoint(size))
    }
}

/// `old <old>\n`, proof lines, an empty line, the note.
pub fn add_body(old: u64, proof: &[Hash], note: &[u8]) -> Vec<u8> {
    let mut body = format!("old {old}\n");
    for hash in proof {
        body.push_str(&STANDARD.encode(hash.0));
        body.push('\n');
    }
    body.push('\n');
    let mut body = body.into_bytes();
    body.extend_from_slice(note);
    body
}

/// Writes a config file listing `logs` into `dir`.
pub fn write_config(dir: &Path, logs: &[&TestLog]) -> PathBuf {
    let path = dir.join("logs.conf");
    let text: String = logs.iter().map(|l| l.config_line()).collect();
    std::fs::write(&path, format!("# test logs\n{text}")).unwrap();
    path
}

/// Runs `rekor-witness info` and returns the vkey after `verifier key:`.
pub fn info_vkey(dir: &Path) -> String {
    let output = Command::new(BIN)
        .arg("info")
        .arg("--storage-dir")
        .arg(dir)
        .args(["--name", WITNESS_NAME])
        .env_remove("RUST_LOG")
        .output()
        .expect("running rekor-witness info");
    assert!(
        output.status.success(),
        "info failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("verifier key: "))
        .unwrap_or_else(|| panic!("no `verifier key: ` line in {stdout:?}"))
        .to_owned()
}

/// A witness public key taken from a vkey, checked independently of the witness:
/// `name+hex(keyID)+base64(0x04 || key)`, keyID = SHA-256(name || 0x0A || 0x04 || key)[:4].
#[derive(Debug, Clone)]
pub struct WitnessKey {
    pub name: String,
    pub key_id: [u8; 4],
    pub key: ed25519_dalek::VerifyingKey,
}

impl WitnessKey {
    pub fn from_vkey(vkey: &str) -> Self {
        let mut parts = vkey.splitn(3, '+');
        let (name, id, b64) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let raw = STANDARD.decode(b64).unwrap();
        assert_eq!(raw.len(), 33, "type byte and a 32-byte key");
        assert_eq!(raw[0], 0x04, "cosignature/v1 vkey type");
        let key: [u8; 32] = raw[1..].try_into().unwrap();
        let mut h = Sha256::new();
        h.update(name.as_bytes());
        h.update([0x0a, 0x04]);
        h.update(key);
        let digest = h.finalize();
        let key_id: [u8; 4] = digest[..4].try_into().unwrap();
        assert_eq!(id, hex(&key_id), "vkey key ID");
        Self {
            name: name.to_owned(),
            key_id,
            key: ed25519_dalek::VerifyingKey::from_bytes(&key).unwrap(),
        }
    }

    /// Verifies one response line `— <name> base64(keyID || u64 BE time || sig)\n` over the
    /// checkpoint text (the note up to and including the newline before the blank line).
    /// Returns the timestamp.
    pub fn verify_line(&self, line: &str, checkpoint_text: &str) -> u64 {
        let line = line.strip_suffix('\n').expect("line ends in a newline");
        let rest = line.strip_prefix("\u{2014} ").expect("em dash and space");
        let (name, b64) = rest.split_once(' ').expect("name and signature");
        assert_eq!(name, self.name);
        let raw = STANDARD.decode(b64).unwrap();
        assert_eq!(raw.len(), 4 + 8 + 64);
        assert_eq!(raw[..4], self.key_id, "key ID");
        let timestamp = u64::from_be_bytes(raw[4..12].try_into().unwrap());
        let signature = ed25519_dalek::Signature::from_slice(&raw[12..]).unwrap();
        let mut message = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
        message.extend_from_slice(checkpoint_text.as_bytes());
        self.key
            .verify_strict(&message, &signature)
            .expect("cosignature verifies");
        timestamp
    }
}

/// The text of a note (everything up to and including the newline before the last blank line).
pub fn note_text(note: &[u8]) -> String {
    let note = std::str::from_utf8(note).unwrap();
    let split = note.rfind("\n\n").unwrap();
    note[..=split].to_owned()
}

/// The signature lines of a note, each with its newline.
pub fn note_signature_lines(note: &[u8]) -> Vec<String> {
    let note = std::str::from_utf8(note).unwrap();
    let split = note.rfind("\n\n").unwrap();
    note[split + 2..]
        .split_inclusive('\n')
        .map(str::to_owned)
        .collect()
}

/// Current time in seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
