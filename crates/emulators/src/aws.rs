//! AWS peers: moto's S3 server and a private MariaDB instance, both on 127.0.0.1.
//!
//! - [`MotoS3`] runs `moto_server -H 127.0.0.1 -p <port>` from the emulators venv
//!   (`REKOR_MOTO_SERVER` overrides the program). Buckets are created with a plain HTTP `PUT`.
//! - [`MariaDb`] initialises a throw-away data directory with `mariadb-install-db`, runs `mariadbd`
//!   on a free loopback port and a socket in its scratch directory (`REKOR_MARIADBD` overrides the
//!   server, `REKOR_MARIADB_INSTALL_DB` and `REKOR_MARIADB_CLIENT` the helpers), then creates a user
//!   with a password so clients connect over TCP with real authentication.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{Emulator, find_program, free_port, on_path};
use crate::{Error, Result};

const MOTO_HINT: &str = "run tests/emulators/setup.sh to create the emulators venv with moto";
const MARIADB_HINT: &str =
    "install Debian's mariadb-server (tests/emulators/setup.sh does it as root)";
const START_TIMEOUT: Duration = Duration::from_secs(60);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The access key moto accepts (it accepts any; tests pass these explicitly).
pub const MOTO_ACCESS_KEY_ID: &str = "testing";
/// The secret key paired with [`MOTO_ACCESS_KEY_ID`].
pub const MOTO_SECRET_ACCESS_KEY: &str = "testing";
/// The region buckets are created in.
pub const MOTO_REGION: &str = "us-east-1";

/// A plain HTTP/1.1 response, as read from the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header names (lower-cased) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one HTTP/1.1 request with `Connection: close` and reads the whole response.
/// Bodies sent with chunked transfer encoding are not decoded (moto sends `Content-Length`).
fn http_request(port: u16, method: &str, path: &str, extra_headers: &str) -> Result<HttpResponse> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let what = format!("{method} {path} on 127.0.0.1:{port}");
    let mut stream =
        TcpStream::connect_timeout(&address, HTTP_TIMEOUT).map_err(Error::io(what.clone()))?;
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .map_err(Error::io(what.clone()))?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra_headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(Error::io(what.clone()))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(Error::io(what.clone()))?;
    parse_response(&raw).ok_or_else(|| Error::NotReady {
        program: "moto_server".to_owned(),
        reason: format!("malformed HTTP response to {what}"),
    })
}

fn parse_response(raw: &[u8]) -> Option<HttpResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(raw.get(..split)?).ok()?;
    let body = raw.get(split + 4..)?.to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(HttpResponse {
        status,
        headers,
        body,
    })
}

/// moto's S3 server on 127.0.0.1, killed on drop.
#[derive(Debug)]
pub struct MotoS3 {
    process: Emulator,
    port: u16,
}

impl MotoS3 {
    /// Starts `moto_server` on a free loopback port and waits until it answers HTTP.
    ///
    /// # Errors
    ///
    /// [`Error::Missing`] when moto is not installed; [`Error::NotReady`] when it does not start.
    pub fn start() -> Result<MotoS3> {
        let program = find_program(
            "moto_server",
            "REKOR_MOTO_SERVER",
            &[crate::default_venv().join("bin/moto_server")],
            MOTO_HINT,
        )?;
        let scratch = tempfile::tempdir().map_err(Error::io("creating a scratch directory"))?;
        let port = free_port()?;
        let mut command = Command::new(program);
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(scratch.path());
        let mut process = Emulator::spawn("moto_server", command, scratch)?;
        process.wait_until(START_TIMEOUT, || {
            http_request(port, "GET", "/", "").is_ok_and(|r| r.status == 200)
        })?;
        Ok(MotoS3 { process, port })
    }

    /// The S3 endpoint, `http://127.0.0.1:<port>` (path-style addressing).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port moto listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a bucket (in [`MOTO_REGION`]) that anyone may read, as a log's read API bucket is.
    ///
    /// # Errors
    ///
    /// [`Error::NotReady`] when moto refuses (the reason carries its answer).
    pub fn create_bucket(&self, name: &str) -> Result<()> {
        let response = http_request(
            self.port,
            "PUT",
            &format!("/{name}"),
            "x-amz-acl: public-read\r\n",
        )?;
        if response.status != 200 {
            return Err(Error::NotReady {
                program: "moto_server".to_owned(),
                reason: format!(
                    "creating bucket {name}: HTTP {}: {}\n{}",
                    response.status,
                    String::from_utf8_lossy(&response.body),
                    self.process.output_tail()
                ),
            });
        }
        Ok(())
    }

    /// Sends an anonymous `GET <path>` (e.g. `/bucket/key`) and returns moto's answer as read
    /// from the socket, for checking headers independently of any S3 client.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when moto cannot be reached.
    pub fn http_get(&self, path: &str) -> Result<HttpResponse> {
        http_request(self.port, "GET", path, "")
    }
}

/// A private MariaDB server on 127.0.0.1 with its own data directory, killed on drop.
#[derive(Debug)]
pub struct MariaDb {
    process: Emulator,
    port: u16,
    client: PathBuf,
    password: String,
}

/// The user [`MariaDb`] creates for clients.
pub const MARIADB_USER: &str = "rekor";

fn running_as_root() -> bool {
    // The real UID is the first number on the `Uid:` line; no libc needed.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().next().map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

fn find_mariadb(program: &str, env_var: &str, dirs: &[&str], alt: &str) -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = dirs.iter().map(|d| Path::new(d).join(program)).collect();
    candidates.extend(on_path(program));
    candidates.extend(on_path(alt));
    find_program(program, env_var, &candidates, MARIADB_HINT)
}

impl MariaDb {
    /// Initialises a data directory, starts `mariadbd` on a free loopback port, and creates the user
    /// [`MARIADB_USER`] with a random password and all privileges.
    ///
    /// # Errors
    ///
    /// [`Error::Missing`] when MariaDB is not installed; [`Error::NotReady`] when it does not start.
    pub fn start() -> Result<MariaDb> {
        let server = find_mariadb(
            "mariadbd",
            "REKOR_MARIADBD",
            &["/usr/sbin", "/usr/libexec"],
            "mysqld",
        )?;
        let install = find_mariadb(
            "mariadb-install-db",
            "REKOR_MARIADB_INSTALL_DB",
            &["/usr/bin"],
            "mysql_install_db",
        )?;
        let client = find_mariadb("mariadb", "REKOR_MARIADB_CLIENT", &["/usr/bin"], "mysql")?;

        let scratch = tempfile::tempdir().map_err(Error::io("creating a scratch directory"))?;
        let data = scratch.path().join("data");
        let tmp = scratch.path().join("tmp");
        std::fs::create_dir(&tmp).map_err(Error::io("creating the tmp directory"))?;
        // mariadbd refuses to run as root unless told to; tests run as root in containers.
        let user_arg = running_as_root().then_some("--user=root");
        let small = [
            "--innodb-buffer-pool-size=32M",
            "--innodb-log-file-size=16M",
        ];

        let mut init = Command::new(&install);
        // The bootstrap's temporary tables go to its own tmpdir: two bootstraps sharing /tmp
        // (two tests starting MariaDB at once) name their temporary table files alike and delete
        // each other's, failing one in about three with "Unknown table 'mysql.tmp_user_sys'".
        init.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .args(user_arg)
            .args(small);
        if let Some(basedir) = server.parent().and_then(Path::parent) {
            init.arg(format!("--basedir={}", basedir.display()));
        }
        let output = init
            .output()
            .map_err(Error::io(format!("running {}", install.display())))?;
        if !output.status.success() {
            return Err(Error::NotReady {
                program: install.display().to_string(),
                reason: format!(
                    "exited with {}:\n{}{}",
                    output.status,
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            });
        }

        let port = free_port()?;
        let socket = scratch.path().join("mysqld.sock");
        let mut command = Command::new(&server);
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!(
                "--pid-file={}",
                scratch.path().join("mysqld.pid").display()
            ))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--skip-name-resolve")
            .arg("--skip-log-bin")
            .args(user_arg)
            .args(small);
        let mut process = Emulator::spawn("mariadbd", command, scratch)?;
        process.wait_for_port(port, START_TIMEOUT)?;

        let password = random_password();
        let maria = MariaDb {
            process,
            port,
            client,
            password,
        };
        let create_user = format!(
            "CREATE USER '{MARIADB_USER}'@'127.0.0.1' IDENTIFIED BY '{pw}'; \
             GRANT ALL PRIVILEGES ON *.* TO '{MARIADB_USER}'@'127.0.0.1'; FLUSH PRIVILEGES;",
            pw = maria.password
        );
        maria.run_sql(&create_user)?;
        Ok(maria)
    }

    /// Runs SQL as root over the private socket with the `mariadb` client.
    ///
    /// # Errors
    ///
    /// [`Error::NotReady`] with the client's output when the statement fails.
    pub fn run_sql(&self, sql: &str) -> Result<()> {
        let socket = self.process.scratch().join("mysqld.sock");
        let output = Command::new(&self.client)
            .arg("--no-defaults")
            .arg(format!("--socket={}", socket.display()))
            .args(["-uroot", "-e", sql])
            .output()
            .map_err(Error::io(format!("running {}", self.client.display())))?;
        if !output.status.success() {
            return Err(Error::NotReady {
                program: "mariadb client".to_owned(),
                reason: format!(
                    "{sql}: exited with {}: {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                ),
            });
        }
        Ok(())
    }

    /// Creates an empty database `name` (letters, digits and `_` only) and returns it.
    ///
    /// # Errors
    ///
    /// [`Error::NotReady`] when the name is refused or the statement fails.
    pub fn create_database(&self, name: &str) -> Result<String> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(Error::NotReady {
                program: "mariadb client".to_owned(),
                reason: format!("refusing database name {name:?}"),
            });
        }
        self.run_sql(&format!("CREATE DATABASE `{name}`"))?;
        Ok(name.to_owned())
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The password of [`MARIADB_USER`].
    pub fn password(&self) -> &str {
        &self.password
    }

    /// A Go-style DSN (`user:pass@tcp(127.0.0.1:port)/database`), the form rekor-tiles' `--aws-mysql-dsn` takes.
    pub fn dsn(&self, database: &str) -> String {
        format!(
            "{MARIADB_USER}:{}@tcp(127.0.0.1:{})/{database}",
            self.password, self.port
        )
    }
}

/// A password that differs between runs; strength is irrelevant (the server is private to a test).
fn random_password() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("pw{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_parsed() {
        let raw =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: no-cache\r\n\r\nhi";
        let response = parse_response(raw).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.header("content-type"), Some("text/plain"));
        assert_eq!(response.header("Cache-Control"), Some("no-cache"));
        assert_eq!(response.body, b"hi");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_none());
    }
}
