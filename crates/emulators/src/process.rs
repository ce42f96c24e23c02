//! Process plumbing shared by the launchers: free ports, readiness polling, kill on drop.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// A port on 127.0.0.1 that was free a moment ago (the OS picked it; another process could
/// still take it before the emulator binds it, which the readiness check then reports).
pub fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(Error::io("binding a free port"))?;
    let port = listener
        .local_addr()
        .map_err(Error::io("reading a bound port"))?
        .port();
    Ok(port)
}

/// Finds a program: the path in `env_var` if set, else the first existing candidate.
pub fn find_program(
    program: &str,
    env_var: &str,
    candidates: &[PathBuf],
    hint: &'static str,
) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(env_var) {
        let path = PathBuf::from(path);
        if path.exists() {
            return Ok(path);
        }
        return Err(Error::Missing {
            program: format!("{program} at {} (from {env_var})", path.display()),
            hint,
        });
    }
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .ok_or_else(|| Error::Missing {
            program: program.to_owned(),
            hint,
        })
}

/// Looks a program up on `PATH`.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A child process killed (and its scratch directory removed) on drop. Output goes to a log file
/// inside the scratch directory, shown when the process fails to start.
#[derive(Debug)]
pub struct Emulator {
    name: String,
    child: Child,
    scratch: tempfile::TempDir,
}

impl Emulator {
    /// Spawns `command` with stdout and stderr sent to `<scratch>/<name>.log`.
    pub fn spawn(name: &str, mut command: Command, scratch: tempfile::TempDir) -> Result<Self> {
        let log_path = scratch.path().join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).map_err(Error::io("creating the log file"))?;
        let log_err = log.try_clone().map_err(Error::io("cloning the log file"))?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        let child = command
            .spawn()
            .map_err(Error::io(format!("starting {name}")))?;
        Ok(Emulator {
            name: name.to_owned(),
            child,
            scratch,
        })
    }

    /// The scratch directory (data files, logs).
    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// The last lines of the process's output, for error messages.
    pub fn output_tail(&self) -> String {
        let log_path = self.scratch.path().join(format!("{}.log", self.name));
        let text = std::fs::read_to_string(log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Waits until `ready` returns true, failing early if the process exits, or after `timeout`.
    pub fn wait_until(&mut self, timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if ready() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::NotReady {
                    program: self.name.clone(),
                    reason: format!("exited with {status}:\n{}", self.output_tail()),
                });
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    program: self.name.clone(),
                    reason: format!("not ready after {timeout:?}:\n{}", self.output_tail()),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until a TCP connection to `127.0.0.1:port` succeeds.
    pub fn wait_for_port(&mut self, port: u16, timeout: Duration) -> Result<()> {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        self.wait_until(timeout, || {
            TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
        })
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
