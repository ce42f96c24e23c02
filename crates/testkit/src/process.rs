//! Running `rekor-server-posix` as a child process on loopback, with the ports it chose.
//!
//! The server is started with port 0 for every listener and `--log-json`; it logs one
//! `{"fields":{"message":"listening","listener":..,"address":..}}` line per listener on stderr.
//! A background thread reads stderr for the whole life of the process: it reports those
//! addresses, and keeps the last [`STDERR_TAIL_LINES`] lines for failure messages.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Lines of server stderr kept for diagnostics.
pub const STDERR_TAIL_LINES: usize = 400;

/// How long [`ServerProcess::start`] waits for the three listeners.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long [`ServerProcess::stop`] waits for the process to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The hostname (checkpoint origin) the tests use unless they pass another.
pub const DEFAULT_HOSTNAME: &str = "rekor-e2e.test";

/// The addresses a server bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listeners {
    /// The HTTP API.
    pub http: SocketAddr,
    /// The gRPC API.
    pub grpc: SocketAddr,
    /// Prometheus metrics.
    pub metrics: SocketAddr,
}

/// How to start a server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The server binary (`env!("CARGO_BIN_EXE_rekor-server-posix")`, or a cloud backend's).
    pub binary: PathBuf,
    /// `--storage-dir` (POSIX); empty for the cloud backends, which take their storage flags in
    /// [`ServerConfig::extra_args`].
    pub storage_dir: PathBuf,
    /// `--signer-filepath`, when the key is not one the server generated in its storage dir.
    pub signer_file: Option<PathBuf>,
    /// `--hostname`.
    pub hostname: String,
    /// Environment variables for the server (emulator endpoints, credentials).
    pub envs: Vec<(String, String)>,
    /// Further flags, e.g. `["--read-only"]`.
    pub extra_args: Vec<String>,
}

impl ServerConfig {
    /// A config with [`DEFAULT_HOSTNAME`] and no extra flags.
    pub fn new(binary: impl Into<PathBuf>, storage_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            binary: binary.into(),
            storage_dir: storage_dir.into(),
            signer_file: None,
            hostname: DEFAULT_HOSTNAME.to_string(),
            envs: Vec::new(),
            extra_args: Vec::new(),
        }
    }

    /// A config for a cloud backend: no storage dir, the signing key in `signer_file` (every
    /// frontend of one log shares it), and the backend's flags in `backend_args`.
    pub fn cloud<I, S>(
        binary: impl Into<PathBuf>,
        signer_file: impl Into<PathBuf>,
        backend_args: I,
    ) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ServerConfig {
            binary: binary.into(),
            storage_dir: PathBuf::new(),
            signer_file: Some(signer_file.into()),
            hostname: DEFAULT_HOSTNAME.to_string(),
            envs: Vec::new(),
            extra_args: backend_args.into_iter().map(Into::into).collect(),
        }
    }

    /// The same config with the environment variable `name` set to `value` for the server.
    #[must_use]
    pub fn with_env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.envs.push((name.into(), value.into()));
        self
    }

    /// The same config with `args` appended.
    #[must_use]
    pub fn with_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.extra_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Runs `binary <subcommand>` (e.g. `freeze`) against the same storage, key, hostname, flags
    /// and environment as [`ServerProcess::start`] would serve, to completion.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if the binary cannot be run, [`Error::Mismatch`] (with its stderr) if it
    /// exits with a failure; otherwise its stdout.
    pub fn run_subcommand(&self, subcommand: &str) -> Result<String> {
        let mut command = Command::new(&self.binary);
        command.arg(subcommand);
        if !self.storage_dir.as_os_str().is_empty() {
            command.arg("--storage-dir").arg(&self.storage_dir);
        }
        if let Some(signer) = &self.signer_file {
            command.arg("--signer-filepath").arg(signer);
        }
        let output = command
            .args(["--hostname", &self.hostname])
            .args(&self.extra_args)
            .env_remove("RUST_LOG")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .map_err(|source| Error::Spawn {
                binary: self.binary.clone(),
                source,
            })?;
        if !output.status.success() {
            return Err(Error::mismatch(
                "exit status",
                format!("{subcommand} succeeds"),
                format!(
                    "{}; stderr:\n{}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                ),
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

type Tail = Arc<Mutex<VecDeque<String>>>;

/// A running server; killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    listeners: Listeners,
    config: ServerConfig,
    tail: Tail,
    reader: Option<JoinHandle<()>>,
}

impl ServerProcess {
    /// Starts `rekor-server-posix serve` as `config` says, on `127.0.0.1` with ports chosen by the
    /// system, and waits (at most [`START_TIMEOUT`]) until it has logged all three listeners.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`], [`Error::ExitedEarly`] or [`Error::StartTimeout`] (both with the
    /// server's stderr).
    pub fn start(config: &ServerConfig) -> Result<Self> {
        let mut command = Command::new(&config.binary);
        command.arg("serve");
        if !config.storage_dir.as_os_str().is_empty() {
            command.arg("--storage-dir").arg(&config.storage_dir);
        }
        if let Some(signer) = &config.signer_file {
            command.arg("--signer-filepath").arg(signer);
        }
        command
            .args(["--hostname", &config.hostname])
            .args(["--http-address", "127.0.0.1", "--http-port", "0"])
            .args(["--grpc-address", "127.0.0.1", "--grpc-port", "0"])
            .args(["--http-metrics-port", "0", "--log-json"])
            .args(&config.extra_args)
            .env_remove("RUST_LOG")
            .envs(config.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|source| Error::Spawn {
            binary: config.binary.clone(),
            source,
        })?;
        let Some(stderr) = child.stderr.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::io(
                "server stderr",
                std::io::Error::other("stderr was not piped"),
            ));
        };
        let tail: Tail = Arc::new(Mutex::new(VecDeque::new()));
        let (sender, receiver) = mpsc::channel();
        let reader = {
            let tail = Arc::clone(&tail);
            std::thread::Builder::new()
                .name("rekor-server-stderr".into())
                .spawn(move || drain_stderr(stderr, &tail, &sender))
                .map_err(|source| Error::io("spawning the stderr reader", source))?
        };
        let mut process = ServerProcess {
            child,
            listeners: Listeners {
                http: unspecified(),
                grpc: unspecified(),
                metrics: unspecified(),
            },
            config: config.clone(),
            tail,
            reader: Some(reader),
        };
        process.listeners = process.await_listeners(&receiver)?;
        Ok(process)
    }

    fn await_listeners(
        &mut self,
        receiver: &mpsc::Receiver<(String, SocketAddr)>,
    ) -> Result<Listeners> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut found: HashMap<String, SocketAddr> = HashMap::new();
        loop {
            if let (Some(http), Some(grpc), Some(metrics)) =
                (found.get("http"), found.get("grpc"), found.get("metrics"))
            {
                return Ok(Listeners {
                    http: *http,
                    grpc: *grpc,
                    metrics: *metrics,
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.join_reader();
                return Err(Error::StartTimeout {
                    waited: START_TIMEOUT,
                    stderr: self.stderr_tail(),
                });
            }
            match receiver.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok((listener, address)) => {
                    found.insert(listener, address);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stderr closed: the process is gone or going.
                    let status = wait_with_deadline(&mut self.child, Duration::from_secs(10))
                        .map_or_else(|| "still running".to_string(), |s| s.to_string());
                    self.join_reader();
                    return Err(Error::ExitedEarly {
                        status,
                        stderr: self.stderr_tail(),
                    });
                }
            }
        }
    }

    /// The bound addresses.
    pub fn listeners(&self) -> Listeners {
        self.listeners
    }

    /// The configuration it was started with (start it again with this to restart).
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last [`STDERR_TAIL_LINES`] lines the server wrote to stderr, joined by newlines.
    pub fn stderr_tail(&self) -> String {
        let tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
        tail.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Whether the server logged a line at level ERROR (a JSON `"level":"ERROR"`).
    pub fn logged_errors(&self) -> Vec<String> {
        let tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
        tail.iter()
            .filter(|line| line.contains("\"level\":\"ERROR\""))
            .cloned()
            .collect()
    }

    /// Sends SIGTERM and waits (at most [`STOP_TIMEOUT`]) for a graceful exit.
    ///
    /// # Errors
    ///
    /// [`Error::Command`] if `kill` fails; [`Error::StopTimeout`] (after a SIGKILL) if the
    /// server does not exit in time.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        let output = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .output()
            .map_err(|source| Error::io("running kill -TERM", source))?;
        if !output.status.success() {
            return Err(Error::Command {
                program: "kill",
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        match wait_with_deadline(&mut self.child, STOP_TIMEOUT) {
            Some(status) => {
                self.join_reader();
                Ok(status)
            }
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.join_reader();
                Err(Error::StopTimeout {
                    waited: STOP_TIMEOUT,
                    stderr: self.stderr_tail(),
                })
            }
        }
    }

    /// Sends SIGKILL (no chance to flush or publish) and reaps the process.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the process cannot be signalled or waited for.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        self.child
            .kill()
            .map_err(|source| Error::io("sending SIGKILL", source))?;
        let status = self
            .child
            .wait()
            .map_err(|source| Error::io("waiting for the killed server", source))?;
        self.join_reader();
        Ok(status)
    }

    fn join_reader(&mut self) {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.join_reader();
    }
}

fn unspecified() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

/// Polls `child` until it exits or `limit` passes.
fn wait_with_deadline(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) | Err(_) => return None,
        }
    }
}

/// Reads stderr to its end: reports listening addresses, keeps the tail.
fn drain_stderr(
    stderr: std::process::ChildStderr,
    tail: &Tail,
    sender: &mpsc::Sender<(String, SocketAddr)>,
) {
    let echo = std::env::var_os("REKOR_TESTKIT_ECHO_SERVER_LOG").is_some();
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if echo {
            #[expect(
                clippy::print_stderr,
                reason = "opt-in echo of the server log for debugging a test"
            )]
            {
                eprintln!("[server] {line}");
            }
        }
        if let Some(found) = listening_line(&line) {
            // The receiver is gone once startup finished; later lines need no report.
            let _ = sender.send(found);
        }
        let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

/// Parses a tracing-subscriber JSON line `{"fields":{"message":"listening","listener":..,"address":..}}`.
fn listening_line(line: &str) -> Option<(String, SocketAddr)> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = value.get("fields")?;
    if fields.get("message")?.as_str()? != "listening" {
        return None;
    }
    let listener = fields.get("listener")?.as_str()?.to_string();
    let address = fields.get("address")?.as_str()?.parse().ok()?;
    Some((listener, address))
}

/// Reads the Ed25519 key the server generated in `storage_dir` (`.rekor/signer.pem`).
///
/// # Errors
///
/// [`Error::Io`] if the file cannot be read.
pub fn generated_key_pem(storage_dir: &Path) -> Result<Vec<u8>> {
    let path = storage_dir.join(".rekor").join("signer.pem");
    std::fs::read(&path).map_err(|source| Error::io(format!("reading {}", path.display()), source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listening_lines() {
        let line = r#"{"timestamp":"2026-01-01T00:00:00Z","level":"INFO","fields":{"message":"listening","listener":"grpc","address":"127.0.0.1:40123"},"target":"rekor_server::run"}"#;
        assert_eq!(
            listening_line(line),
            Some(("grpc".to_string(), "127.0.0.1:40123".parse().unwrap()))
        );
        assert_eq!(listening_line(r#"{"fields":{"message":"log open"}}"#), None);
        assert_eq!(listening_line("not json"), None);
        assert_eq!(
            listening_line(
                r#"{"fields":{"message":"listening","listener":"http","address":"nope"}}"#
            ),
            None
        );
    }
}
