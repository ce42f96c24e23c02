//! [`MysqlConfig`]: connection settings, parsed from rekor-tiles' Go-style DSN or a `mysql://` URL.

use std::time::Duration;

use super::{AwsError, MYSQL_BACKEND};
use crate::Result;

/// Longest DSN accepted.
const MAX_DSN_LEN: usize = 4096;
/// The MySQL port when the DSN names none.
const DEFAULT_PORT: u16 = 3306;

/// Whether and how the connection uses TLS (the DSN parameter `tls`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MysqlTls {
    /// Plain TCP (`tls=false`, or no `tls` parameter).
    #[default]
    Disabled,
    /// TLS with the server certificate verified against the built-in web roots (`tls=true`).
    Verified,
    /// TLS without certificate verification (`tls=skip-verify`): encrypted, not authenticated.
    SkipVerify,
}

/// Where the database is and how to connect. Build it with [`MysqlConfig::from_dsn`].
#[derive(Clone, PartialEq, Eq)]
pub struct MysqlConfig {
    /// Host name or IP address (TCP).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// A Unix socket path (`unix(/path)` in a Go DSN); used instead of `host:port` when set.
    pub socket: Option<String>,
    /// User name; `None` lets the server decide (rarely useful).
    pub user: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// The database holding the coordination tables.
    pub database: String,
    /// TLS mode.
    pub tls: MysqlTls,
    /// Most connections the pool opens. Default 8.
    pub pool_max: usize,
    /// Bound on each coordinator call, including waiting for a pooled connection. Default 10 s.
    pub timeout: Duration,
}

impl std::fmt::Debug for MysqlConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("socket", &self.socket)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .field("tls", &self.tls)
            .field("pool_max", &self.pool_max)
            .field("timeout", &self.timeout)
            .finish()
    }
}

fn dsn_error(reason: impl Into<String>) -> AwsError {
    AwsError::Dsn {
        reason: reason.into(),
    }
}

impl MysqlConfig {
    /// Parses a DSN in either form:
    ///
    /// - Go (go-sql-driver/mysql, what rekor-tiles' `--aws-mysql-dsn` takes):
    ///   `[user[:password]@][tcp[(host[:port])]|unix(/socket)]/dbname[?param=value&…]`;
    /// - URL: `mysql://[user[:password]@]host[:port]/dbname[?param=value&…]`, percent-encoded.
    ///
    /// The parameter `tls` (`true`, `skip-verify`, `preferred` (taken as `skip-verify`), `false`) is
    /// honoured; others, such as `parseTime`, are ignored. The port defaults to 3306, the host to
    /// 127.0.0.1. The database name is required.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Other`] whose source names what is wrong (the password is never quoted).
    pub fn from_dsn(dsn: &str) -> Result<MysqlConfig> {
        Ok(MysqlConfig::parse(dsn)?)
    }

    fn parse(dsn: &str) -> Result<MysqlConfig, AwsError> {
        if dsn.len() > MAX_DSN_LEN {
            return Err(dsn_error(format!("longer than {MAX_DSN_LEN} bytes")));
        }
        if dsn.trim() != dsn || dsn.is_empty() {
            return Err(dsn_error("empty or surrounded by whitespace"));
        }
        match dsn.strip_prefix("mysql://") {
            Some(rest) => parse_url(rest),
            None if dsn.contains("://") => {
                Err(dsn_error("only the mysql:// URL scheme is accepted"))
            }
            None => parse_go(dsn),
        }
    }

    fn base(database: String) -> MysqlConfig {
        MysqlConfig {
            host: "127.0.0.1".to_owned(),
            port: DEFAULT_PORT,
            socket: None,
            user: None,
            password: None,
            database,
            tls: MysqlTls::Disabled,
            pool_max: 8,
            timeout: Duration::from_secs(10),
        }
    }

    /// The options for mysql_async.
    pub(super) fn opts(&self) -> Result<mysql_async::Opts> {
        let constraints = mysql_async::PoolConstraints::new(0, self.pool_max)
            .filter(|_| self.pool_max > 0)
            .ok_or_else(|| AwsError::Config {
                backend: MYSQL_BACKEND,
                what: "MySQL pool_max must be at least 1".to_owned(),
            })?;
        let ssl = match self.tls {
            MysqlTls::Disabled => None,
            MysqlTls::Verified => Some(mysql_async::SslOpts::default()),
            MysqlTls::SkipVerify => Some(
                mysql_async::SslOpts::default()
                    .with_danger_accept_invalid_certs(true)
                    .with_danger_skip_domain_validation(true),
            ),
        };
        let builder = mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .socket(self.socket.clone())
            .prefer_socket(false)
            .user(self.user.clone())
            .pass(self.password.clone())
            .db_name(Some(self.database.clone()))
            .tcp_nodelay(true)
            .ssl_opts(ssl)
            .pool_opts(mysql_async::PoolOpts::default().with_constraints(constraints));
        Ok(builder.into())
    }
}

fn apply_params(config: &mut MysqlConfig, params: &str) -> Result<(), AwsError> {
    for pair in params.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| dsn_error(format!("parameter {name:?} has no value", name = pair)))?;
        let value = percent_decode(value)?;
        if name == "tls" {
            config.tls = match value.as_str() {
                "false" | "0" => MysqlTls::Disabled,
                "true" | "1" => MysqlTls::Verified,
                "skip-verify" | "preferred" => MysqlTls::SkipVerify,
                other => {
                    return Err(dsn_error(format!(
                        "tls={other:?} is not supported (use true, skip-verify or false)"
                    )));
                }
            };
        }
    }
    Ok(())
}

fn parse_port(port: &str) -> Result<u16, AwsError> {
    match port.parse::<u16>() {
        Ok(number) if number != 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(number),
        _ => Err(dsn_error(format!("bad port {port:?}"))),
    }
}

/// Splits `host[:port]` or `[v6]:port`.
fn parse_host_port(address: &str) -> Result<(String, u16), AwsError> {
    if address.is_empty() {
        return Ok(("127.0.0.1".to_owned(), DEFAULT_PORT));
    }
    if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| dsn_error("unclosed [ in the address"))?;
        let port = match after.strip_prefix(':') {
            Some(port) => parse_port(port)?,
            None if after.is_empty() => DEFAULT_PORT,
            None => return Err(dsn_error("unexpected text after ] in the address")),
        };
        return Ok((host.to_owned(), port));
    }
    let (host, port) = match address.rsplit_once(':') {
        Some((host, port)) => (host, parse_port(port)?),
        None => (address, DEFAULT_PORT),
    };
    if host.is_empty() || host.contains([':', '/', '@', '(', ')', ' ']) {
        return Err(dsn_error(format!("bad host {host:?}")));
    }
    Ok((host.to_owned(), port))
}

fn check_database(database: &str) -> Result<(), AwsError> {
    if database.is_empty() {
        return Err(dsn_error("no database name (…/dbname)"));
    }
    if database.contains(['/', '\0', '`']) || database.len() > 64 {
        return Err(dsn_error(format!("bad database name {database:?}")));
    }
    Ok(())
}

/// `[user[:password]@][net[(address)]]/dbname[?params]`, parsed as go-sql-driver/mysql does: the
/// database starts after the last `/`, the credentials end at the last `@` before it, and the password
/// starts after the first `:` of the credentials (so it may contain `:` and `@`).
fn parse_go(dsn: &str) -> Result<MysqlConfig, AwsError> {
    let slash = dsn.rfind('/').ok_or_else(|| {
        dsn_error("missing /dbname (expected user:password@tcp(host:port)/dbname)")
    })?;
    let (head, tail) = dsn.split_at(slash);
    let tail = tail.get(1..).unwrap_or_default();
    let (database, params) = tail.split_once('?').unwrap_or((tail, ""));
    check_database(database)?;
    let mut config = MysqlConfig::base(database.to_owned());

    let (credentials, network) = match head.rfind('@') {
        Some(at) => (head.get(..at), head.get(at + 1..).unwrap_or_default()),
        None => (None, head),
    };
    if let Some(credentials) = credentials {
        let (user, password) = match credentials.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (credentials, None),
        };
        if user.is_empty() {
            return Err(dsn_error("empty user name before '@'"));
        }
        config.user = Some(user.to_owned());
        config.password = password.map(str::to_owned);
    }

    let (protocol, address) = match network.split_once('(') {
        Some((protocol, rest)) => {
            let address = rest
                .strip_suffix(')')
                .ok_or_else(|| dsn_error("unclosed ( in the address; expected tcp(host:port)"))?;
            (protocol, address)
        }
        None => (network, ""),
    };
    match protocol {
        "" | "tcp" => {
            let (host, port) = parse_host_port(address)?;
            config.host = host;
            config.port = port;
        }
        "unix" if !address.is_empty() => config.socket = Some(address.to_owned()),
        "unix" => return Err(dsn_error("unix() needs a socket path")),
        other => {
            return Err(dsn_error(format!(
                "unknown network {other:?} (expected tcp or unix)"
            )));
        }
    }
    apply_params(&mut config, params)?;
    Ok(config)
}

/// `[user[:password]@]host[:port]/dbname[?params]` after `mysql://`, percent-encoded.
fn parse_url(rest: &str) -> Result<MysqlConfig, AwsError> {
    let (authority_path, params) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, database) = authority_path
        .split_once('/')
        .ok_or_else(|| dsn_error("missing /dbname in the mysql:// URL"))?;
    let database = percent_decode(database)?;
    check_database(&database)?;
    let mut config = MysqlConfig::base(database);
    let (credentials, address) = match authority.rsplit_once('@') {
        Some((credentials, address)) => (Some(credentials), address),
        None => (None, authority),
    };
    if let Some(credentials) = credentials {
        let (user, password) = match credentials.split_once(':') {
            Some((user, password)) => (user, Some(percent_decode(password)?)),
            None => (credentials, None),
        };
        let user = percent_decode(user)?;
        if user.is_empty() {
            return Err(dsn_error("empty user name before '@'"));
        }
        config.user = Some(user);
        config.password = password;
    }
    if address.is_empty() {
        return Err(dsn_error("no host in the mysql:// URL"));
    }
    let (host, port) = parse_host_port(address)?;
    config.host = host;
    config.port = port;
    apply_params(&mut config, params)?;
    Ok(config)
}

fn percent_decode(text: &str) -> Result<String, AwsError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| dsn_error("bad percent-encoding"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| dsn_error("percent-encoding is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%40c").unwrap(), "a/b@c");
        assert!(percent_decode("a%2").is_err());
        assert!(percent_decode("a%zz").is_err());
    }

    #[test]
    fn passwords_may_hold_separators() {
        let config = MysqlConfig::from_dsn("u:p@ss:w@rd@tcp(db:3307)/x").unwrap();
        assert_eq!(config.user.as_deref(), Some("u"));
        assert_eq!(config.password.as_deref(), Some("p@ss:w@rd"));
        assert_eq!((config.host.as_str(), config.port), ("db", 3307));
        assert!(!format!("{config:?}").contains("p@ss"));
    }
}
