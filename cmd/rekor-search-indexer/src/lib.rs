//! `rekor-search-indexer`: a search index for any C2SP [tlog-tiles](https://c2sp.org/tlog-tiles)
//! log, kept by following the log over HTTP, and the same `GET /api/v2/search` the log's
//! server answers with `--search-index` (docs/SEARCH.md, "A standalone indexer").
//!
//! - [`RemoteLog`] reads the log as a read-only [`rekor_storage::Storage`]: tiles and entry
//!   bundles by their paths, and the checkpoint, accepted only when signed by the log key
//!   (C2SP tlog-checkpoint), no smaller than the last accepted one and proven from the tiles
//!   to extend it (RFC 9162 §2.1.4).
//! - [`follow`] polls the checkpoint and runs a [`rekor_search::Indexer`] up to each accepted
//!   one, into a POSIX index directory ([`rekor_storage::posix::PosixSearchIndex`]).
//! - [`start`] serves `rekor_server`'s read-only router over the same storage: search (each
//!   entry proven into the log's checkpoint before it is sent), the checkpoint and the tiles
//!   (from the log), and `/api/v2/search/completeness` as 501, since only the log can sign
//!   commitments to its index.
//!
//! ```no_run
//! # async fn example() -> Result<(), rekor_search_indexer::IndexerError> {
//! use clap::Parser as _;
//! let args = rekor_search_indexer::IndexerArgs::parse_from([
//!     "rekor-search-indexer",
//!     "--log-url", "http://127.0.0.1:3000/api/v2",
//!     "--log-vkey", "log.example.dev+1234abcd+AU...",
//!     "--index-dir", "./search-index",
//! ]);
//! let running = rekor_search_indexer::start(args).await?;
//! assert_ne!(running.address.port(), 0);
//! running.stop().await;
//! # Ok(()) }
//! ```

mod error;
mod follow;
mod remote;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rekor_note::LogVerifier;
use rekor_server::config::parse_duration;
use rekor_storage::posix::PosixSearchIndex;
use tokio_util::sync::CancellationToken;

pub use error::{IndexerError, Refusal, RemoteError};
pub use follow::{MAX_BACKOFF, follow};
pub use remote::RemoteLog;

/// The file in `--index-dir` that keeps the last checkpoint accepted from the log.
pub const HEAD_FILE: &str = "checkpoint";

/// How long a stop waits for requests in flight.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The indexer's flags.
#[derive(clap::Parser, Debug, Clone)]
#[command(version, about, long_about = None)]
pub struct IndexerArgs {
    /// The log's tlog-tiles base URL: tiles at `<URL>/tile/...`, the checkpoint at
    /// `<URL>/checkpoint` (for a Rekor v2 log, `https://<host>/api/v2`).
    #[arg(long, value_name = "URL")]
    pub log_url: String,
    /// The log's C2SP signed-note verifier key (`origin+keyid+base64`); names the origin.
    #[arg(long, value_name = "VKEY")]
    pub log_vkey: Option<String>,
    /// The log's public key, a PEM (or DER) SubjectPublicKeyInfo file (Ed25519, ECDSA P-256 or
    /// P-384); needs --log-origin.
    #[arg(long, value_name = "FILE", requires = "log_origin")]
    pub log_public_key: Option<PathBuf>,
    /// The log's checkpoint origin (its key name), for --log-public-key; with --log-vkey it
    /// must be the vkey's name.
    #[arg(long, value_name = "ORIGIN")]
    pub log_origin: Option<String>,
    /// The directory of the search index (created if needed; locked while in use). It also
    /// keeps the last checkpoint accepted from the log.
    #[arg(long, value_name = "DIR")]
    pub index_dir: PathBuf,
    /// The address to serve search, the checkpoint and the tiles on.
    #[arg(long, default_value = "127.0.0.1:3100")]
    pub listen: SocketAddr,
    /// How often the log's checkpoint is polled. After failures the wait doubles, up to 60s.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// Timeout of one request to the log.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub log_timeout: Duration,
    /// Timeout of one request to this server.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub server_timeout: Duration,
    /// Memory (bytes) for caching full tiles and entry bundles read from the log; zero turns
    /// the cache off.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub tile_cache_size: usize,
    /// Log level: trace, debug, info, warn or error (`RUST_LOG` overrides it).
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Emit logs as JSON lines instead of text.
    #[arg(long)]
    pub log_json: bool,
}

impl IndexerArgs {
    /// The log key from --log-vkey and/or --log-public-key with --log-origin.
    ///
    /// # Errors
    ///
    /// [`IndexerError::Flag`] if neither is given, or the two name different keys or
    /// origins; [`IndexerError::Trust`] for a key that does not load.
    pub fn verifier(&self) -> Result<LogVerifier, IndexerError> {
        let from_vkey = self
            .log_vkey
            .as_deref()
            .map(rekor_client::verifier_from_vkey)
            .transpose()?;
        let from_key = match (&self.log_public_key, &self.log_origin) {
            (Some(path), Some(origin)) => {
                let pem = std::fs::read(path).map_err(|source| IndexerError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                let what = format!("--log-public-key {}", path.display());
                Some(rekor_client::verifier_from_public_key(&pem, origin, &what)?)
            }
            _ => None,
        };
        let flag = |reason: &str| IndexerError::Flag {
            flag: "--log-vkey",
            reason: reason.to_string(),
        };
        match (from_vkey, from_key) {
            (Some(vkey), Some(key)) => {
                if vkey.public_key_der() != key.public_key_der() || vkey.name() != key.name() {
                    return Err(flag(
                        "--log-vkey and --log-public-key with --log-origin name different keys",
                    ));
                }
                Ok(vkey)
            }
            (Some(vkey), None) => {
                if let Some(origin) = &self.log_origin
                    && vkey.name().as_str() != origin
                {
                    return Err(flag(&format!(
                        "its name {:?} differs from --log-origin {origin:?}",
                        vkey.name().as_str()
                    )));
                }
                Ok(vkey)
            }
            (None, Some(key)) => Ok(key),
            (None, None) => Err(flag(
                "no log key: pass --log-vkey, or --log-public-key with --log-origin",
            )),
        }
    }
}

/// A running indexer: its bound address, and [`Running::stop`].
#[derive(Debug)]
pub struct Running {
    /// The bound HTTP address.
    pub address: SocketAddr,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    follower: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops following and serving; waits (bounded) for requests in flight.
    pub async fn stop(self) {
        self.stop.cancel();
        let drain = async {
            match self.server.await {
                Ok(Err(e)) => tracing::error!(error = %e, "HTTP server failed"),
                Err(e) => tracing::error!(error = %e, "HTTP server task failed"),
                Ok(Ok(())) => {}
            }
            let _ = self.follower.await;
        };
        if tokio::time::timeout(STOP_TIMEOUT, drain).await.is_err() {
            tracing::warn!(timeout = ?STOP_TIMEOUT, "stop timed out");
        }
    }
}

/// Opens the index directory, starts following the log and serving; returns once the listener
/// is bound (its address is logged as `listening`, with the fields `listener` and `address`).
///
/// # Errors
///
/// [`IndexerError`] for a bad flag or key, an index directory that cannot be opened (or holds
/// another log's checkpoint), or a listener that cannot be bound.
pub async fn start(args: IndexerArgs) -> Result<Running, IndexerError> {
    if args.poll_interval.is_zero() {
        return Err(IndexerError::Flag {
            flag: "--poll-interval",
            reason: "must be more than zero".to_string(),
        });
    }
    let verifier = args.verifier()?;
    let index_dir = |source| IndexerError::IndexDir {
        dir: args.index_dir.display().to_string(),
        source,
    };
    let index = Arc::new(PosixSearchIndex::open_standalone(&args.index_dir).map_err(index_dir)?);
    let log = Arc::new(
        RemoteLog::new(&args.log_url, verifier.clone(), args.log_timeout)?
            .with_head_file(args.index_dir.join(HEAD_FILE))
            .await?,
    );
    let indexed = rekor_storage::SearchIndex::indexed_size(index.as_ref())
        .await
        .map_err(index_dir)?;
    tracing::info!(
        log = %log.base_url(),
        origin = %verifier.name().as_str(),
        index_dir = %args.index_dir.display(),
        indexed,
        verified = log.verified_size().await,
        "following the log"
    );

    let state = rekor_server::AppState::new(
        None,
        Arc::clone(&log) as Arc<dyn rekor_storage::Storage>,
        rekor_entries::AlgorithmRegistry::default(),
        verifier.log_id(),
        rekor_server::metrics::Metrics::new(),
        // No write route: no request body is ever read.
        0,
    )
    .with_tile_cache(args.tile_cache_size)
    .with_search_index(Arc::clone(&index) as Arc<dyn rekor_storage::SearchIndex>)
    .not_the_log();
    let api = rekor_server::http::read_api(state, args.server_timeout);

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| IndexerError::Bind {
            address: args.listen,
            source,
        })?;
    let address = listener.local_addr().map_err(|source| IndexerError::Bind {
        address: args.listen,
        source,
    })?;
    tracing::info!(listener = "http", address = %address, "listening");

    let stop = CancellationToken::new();
    let indexer =
        rekor_search::Indexer::new(Arc::clone(&log) as Arc<dyn rekor_storage::Storage>, index);
    let follower = tokio::spawn(follow(log, indexer, args.poll_interval, stop.clone()));
    let server = {
        let stop = stop.clone();
        tokio::spawn(async move {
            rekor_server::http::serve(listener, api, args.server_timeout, stop).await
        })
    };
    Ok(Running {
        address,
        stop,
        server,
        follower,
    })
}

/// Sets up logging to stderr as `--log-level` and `--log-json` say (`RUST_LOG` overrides the
/// level).
pub fn init_tracing(args: &IndexerArgs) {
    rekor_server::init_tracing_as(&args.log_level, args.log_json);
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;
    use rekor_note::{KeyName, LogSigner};

    use super::*;

    fn args(extra: &[&str]) -> Result<IndexerArgs, clap::Error> {
        let mut argv = vec![
            "rekor-search-indexer",
            "--log-url",
            "http://127.0.0.1:3000/api/v2",
            "--index-dir",
            "idx",
        ];
        argv.extend_from_slice(extra);
        IndexerArgs::try_parse_from(argv)
    }

    #[test]
    fn the_log_key_comes_from_a_vkey_or_a_public_key_and_origin() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogSigner::from_ed25519_seed([1; 32], KeyName::new("log.test").unwrap());
        let other = LogSigner::from_ed25519_seed([2; 32], KeyName::new("log.test").unwrap());
        let vkey = log.verifier().to_vkey().unwrap();
        let der = dir.path().join("log.der");
        std::fs::write(&der, log.verifier().public_key_der()).unwrap();
        let other_der = dir.path().join("other.der");
        std::fs::write(&other_der, other.verifier().public_key_der()).unwrap();
        let (der, other_der) = (der.to_str().unwrap(), other_der.to_str().unwrap());

        let want = log.verifier();
        for flags in [
            vec!["--log-vkey", &vkey],
            vec!["--log-vkey", &vkey, "--log-origin", "log.test"],
            vec!["--log-public-key", der, "--log-origin", "log.test"],
            vec![
                "--log-vkey",
                &vkey,
                "--log-public-key",
                der,
                "--log-origin",
                "log.test",
            ],
        ] {
            let verifier = args(&flags).unwrap().verifier().unwrap();
            assert_eq!(verifier, want, "{flags:?}");
        }

        // A public key needs its origin.
        assert!(args(&["--log-public-key", der]).is_err());
        for flags in [
            vec![],
            vec!["--log-vkey", "not a vkey"],
            vec!["--log-vkey", &vkey, "--log-origin", "elsewhere.test"],
            vec![
                "--log-vkey",
                &vkey,
                "--log-public-key",
                other_der,
                "--log-origin",
                "log.test",
            ],
        ] {
            assert!(args(&flags).unwrap().verifier().is_err(), "{flags:?}");
        }
        // The defaults of the brief.
        let parsed = args(&["--log-vkey", &vkey]).unwrap();
        assert_eq!(parsed.listen, "127.0.0.1:3100".parse().unwrap());
        assert_eq!(parsed.poll_interval, Duration::from_secs(5));
    }
}
