//! Starting and stopping a server: written once for every backend.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rekor_entries::AlgorithmRegistry;
use rekor_log::{Log, LogConfig, LogError};
use rekor_note::{LogSigner, Origin};
use rekor_storage::{Coordinator, Storage};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::ServerArgs;
use crate::keys::{self, LogIdentity};
use crate::metrics::Metrics;
use crate::rate_limit::{RateLimitConfig, RateLimiter};
use crate::service::AppState;

/// A storage backend, as a thin main builds it.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Tiles, bundles and the checkpoint.
    pub storage: Arc<dyn Storage>,
    /// Sequencing and dedup.
    pub coordinator: Arc<dyn Coordinator>,
    /// Where to keep a generated signing key when `--signer-filepath` is not given (POSIX only).
    pub generated_key_dir: Option<PathBuf>,
    /// The least checkpoint interval the storage sustains (GCS: about one write per second to
    /// one object). `--checkpoint-interval 0s` means "as often as allowed"; a smaller non-zero
    /// value is refused.
    pub min_checkpoint_interval: Duration,
    /// The backend's search index, opened by the main when `--search-index` is on.
    pub search_index: Option<Arc<dyn rekor_storage::SearchIndex>>,
}

impl Backend {
    /// A backend with no generated key and no checkpoint rate limit.
    pub fn new(storage: Arc<dyn Storage>, coordinator: Arc<dyn Coordinator>) -> Self {
        Backend {
            storage,
            coordinator,
            generated_key_dir: None,
            min_checkpoint_interval: Duration::ZERO,
            search_index: None,
        }
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The signing key could not be loaded.
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    /// No signing key was given and the backend cannot keep a generated one.
    #[error("--signer-filepath is required for this backend")]
    NoSigner,
    /// A flag value is invalid.
    #[error("invalid {flag}: {reason}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The log could not be opened or recovered.
    #[error("opening the log: {0}")]
    Log(#[from] rekor_log::LogError),
    /// A listener could not be bound or failed.
    #[error("{what} on {address}: {source}")]
    Listen {
        /// Which listener.
        what: &'static str,
        /// Its address.
        address: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// A TLS certificate or key could not be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

fn tls_config(
    flag: &'static str,
    cert: Option<&Path>,
    key: Option<&Path>,
    alpn: &[&[u8]],
) -> Result<Option<Arc<rustls::ServerConfig>>, RunError> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(crate::tls::server_config(cert, key, alpn)?)),
        _ => Err(crate::tls::TlsError::Incomplete { flag }.into()),
    }
}

/// Sets up logging to stderr as `--log-level` and `--log-json` say (`RUST_LOG` overrides the level).
pub fn init_tracing(args: &ServerArgs) {
    init_tracing_as(&args.log_level, args.log_json);
}

/// Sets up logging to stderr at `level` (`RUST_LOG` overrides it), as JSON lines if `json`:
/// what [`init_tracing`] does, for binaries with flags of their own.
pub fn init_tracing_as(level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Loads the signer the flags name, or the backend's generated one.
/// With `--signer-mldsa-filepath` or `--signer-mldsa-generate` it also gets its ML-DSA-44 key.
///
/// # Errors
///
/// [`RunError::Key`] or [`RunError::NoSigner`].
pub fn signer(args: &ServerArgs, generated_key_dir: Option<&Path>) -> Result<LogSigner, RunError> {
    if let Some(uri) = &args.signer_kmskey {
        let name = rekor_note::KeyName::new(&args.hostname).map_err(|e| RunError::Flag {
            flag: "--hostname",
            reason: e.to_string(),
        })?;
        let key = crate::kms::open(uri).map_err(|e| RunError::Flag {
            flag: "--signer-kmskey",
            reason: e.to_string(),
        })?;
        let primary = LogSigner::from_external(key, name).map_err(|e| RunError::Flag {
            flag: "--signer-kmskey",
            reason: format!("the key does not sign as its public key says: {e}"),
        })?;
        return keys::with_mldsa(
            primary,
            args.signer_mldsa_filepath.as_deref(),
            args.signer_mldsa_generate,
            generated_key_dir,
            &args.hostname,
        )
        .map_err(RunError::from);
    }
    match (&args.signer_filepath, generated_key_dir) {
        (Some(path), _) => Ok(keys::load_signer(
            path,
            args.signer_password.as_deref(),
            &args.hostname,
        )?),
        (None, Some(dir)) => Ok(keys::load_or_generate(dir, &args.hostname)?),
        (None, None) => Err(RunError::NoSigner),
    }
    .and_then(|primary| {
        keys::with_mldsa(
            primary,
            args.signer_mldsa_filepath.as_deref(),
            args.signer_mldsa_generate,
            generated_key_dir,
            &args.hostname,
        )
        .map_err(RunError::from)
    })
}

/// Describes the log the flags configure (the `info` subcommand).
///
/// # Errors
///
/// As [`signer`].
pub fn identity(
    args: &ServerArgs,
    generated_key_dir: Option<&Path>,
) -> Result<LogIdentity, RunError> {
    let signer = signer(args, generated_key_dir)?;
    Ok(LogIdentity::of(&signer, &args.hostname, args.http_port))
}

/// Prints [`identity`]'s description on stdout: what the `info` subcommand of every server does.
///
/// # Errors
///
/// As [`signer`].
pub fn print_identity(args: &ServerArgs, generated_key_dir: Option<&Path>) -> Result<(), RunError> {
    let identity = identity(args, generated_key_dir)?;
    #[allow(clippy::print_stdout, reason = "printing is what `info` is for")]
    {
        print!("{}", identity.describe(SystemTime::now()));
    }
    Ok(())
}

pub(crate) fn log_config(args: &ServerArgs, backend: &Backend) -> Result<LogConfig, RunError> {
    if args.batch_max_size == 0 {
        return Err(RunError::Flag {
            flag: "--batch-max-size",
            reason: "must be at least 1".into(),
        });
    }
    let minimum = backend.min_checkpoint_interval;
    let checkpoint_interval = if args.checkpoint_interval.is_zero() {
        minimum
    } else if args.checkpoint_interval < minimum {
        return Err(RunError::Flag {
            flag: "--checkpoint-interval",
            reason: format!(
                "this storage sustains at most one checkpoint write per {minimum:?}; use at least that (or 0s for that minimum)"
            ),
        });
    } else {
        args.checkpoint_interval
    };
    Ok(LogConfig {
        batch_max_size: args.batch_max_size,
        batch_max_age: args.batch_max_age,
        checkpoint_interval,
        pushback_max_outstanding: args.pushback_max_outstanding,
        persistent_dedup: args.persistent_antispam,
        witnesses: crate::witness::from_args(args)?,
        witness_fail_closed: args.witness_fail_closed,
        ..LogConfig::default()
    })
}

fn registry(args: &ServerArgs) -> Result<AlgorithmRegistry, RunError> {
    match &args.client_signing_algorithms {
        None => Ok(AlgorithmRegistry::default()),
        Some(names) => {
            AlgorithmRegistry::from_names(names.iter().map(String::as_str)).map_err(|e| {
                RunError::Flag {
                    flag: "--client-signing-algorithms",
                    reason: e.to_string(),
                }
            })
        }
    }
}

async fn bind(
    what: &'static str,
    address: SocketAddr,
) -> Result<(TcpListener, SocketAddr), RunError> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| RunError::Listen {
            what,
            address,
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| RunError::Listen {
        what,
        address,
        source,
    })?;
    info!(listener = what, address = %bound, "listening");
    Ok((listener, bound))
}

/// The search index to serve, if `--search-index` is on.
fn search_index(
    args: &ServerArgs,
    backend: &Backend,
) -> Result<Option<Arc<dyn rekor_storage::SearchIndex>>, RunError> {
    if !args.search_index {
        return Ok(None);
    }
    match &backend.search_index {
        Some(index) => Ok(Some(Arc::clone(index))),
        None => Err(RunError::Flag {
            flag: "--search-index",
            reason: "this backend was started without a search index".to_string(),
        }),
    }
}

/// Runs an indexer that follows the log's checkpoints (or, read-only, the stored one) until
/// `stop`. Searches answer completely meanwhile: entries it has not reached are scanned.
async fn spawn_indexer(
    backend: &Backend,
    index: Arc<dyn rekor_storage::SearchIndex>,
    log: Option<Log>,
    stop: CancellationToken,
) -> Result<(), RunError> {
    let storage = Arc::clone(&backend.storage);
    let stored = match storage.read_checkpoint().await.map_err(LogError::from)? {
        Some(versioned) => rekor_note::Note::parse(&versioned.data)
            .and_then(|note| rekor_note::Checkpoint::parse(note.text()))
            .map(|checkpoint| checkpoint.size)
            .unwrap_or(0),
        None => 0,
    };
    let (sizes, receiver) = tokio::sync::watch::channel(stored);
    let indexer = rekor_search::Indexer::new(storage, index);
    tokio::spawn(async move {
        let follow = indexer.follow(receiver, Duration::from_secs(1));
        let feed = async move {
            if let Some(log) = log {
                let mut checkpoints = log.watch_checkpoints();
                loop {
                    let size = checkpoints.borrow_and_update().size;
                    sizes.send_replace(size);
                    if checkpoints.changed().await.is_err() {
                        break;
                    }
                }
            }
            // Read-only, or the log closed: hold the size until the server stops.
            std::future::pending::<()>().await;
        };
        tokio::select! {
            () = follow => {}
            () = feed => {}
            () = stop.cancelled() => {}
        }
    });
    Ok(())
}

/// Runs the server until SIGTERM or Ctrl-C, then drains requests and publishes what is in flight.
///
/// # Errors
///
/// [`RunError`] for a bad key or flag, a log that fails recovery, or a listener that cannot bind.
pub async fn run(args: ServerArgs, backend: Backend) -> Result<(), RunError> {
    run_until(args, backend, shutdown_signal()).await
}

/// As [`run`], stopping when `shutdown` completes (tests use this).
///
/// # Errors
///
/// As [`run`].
pub async fn run_until(
    args: ServerArgs,
    backend: Backend,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let server = start(args, backend).await?;
    shutdown.await;
    server.stop().await;
    Ok(())
}

/// A started server: its bound addresses, and [`RunningServer::stop`] for a graceful stop.
#[derive(Debug)]
pub struct RunningServer {
    /// The bound HTTP address.
    pub http_address: SocketAddr,
    /// The bound gRPC address.
    pub grpc_address: SocketAddr,
    /// The bound metrics address.
    pub metrics_address: SocketAddr,
    /// What clients need to trust the log.
    pub identity: LogIdentity,
    log: Option<Log>,
    stop: CancellationToken,
    tasks: ServerTasks,
    tlog_timeout: std::time::Duration,
}

type ServeResult = Result<std::io::Result<()>, tokio::task::JoinError>;

#[derive(Debug)]
struct ServerTasks {
    http: tokio::task::JoinHandle<std::io::Result<()>>,
    metrics: tokio::task::JoinHandle<std::io::Result<()>>,
    grpc: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl RunningServer {
    /// The log, unless read-only.
    pub fn log(&self) -> Option<&Log> {
        self.log.as_ref()
    }

    /// Stops accepting, drains in-flight requests, publishes what the pipeline holds, within
    /// `--tlog-timeout`.
    pub async fn stop(self) {
        info!("shutting down: draining requests");
        self.stop.cancel();
        let tasks = self.tasks;
        let log = self.log;
        let drain = async move {
            let http: ServeResult = tasks.http.await;
            if let Err(e) = http {
                error!(error = %e, "HTTP server task failed");
            }
            match tasks.grpc.await {
                Ok(Err(e)) => error!(error = %e, "gRPC server failed"),
                Err(e) => error!(error = %e, "gRPC server task failed"),
                Ok(Ok(())) => {}
            }
            let _ = tasks.metrics.await;
            if let Some(log) = &log {
                log.shutdown().await;
            }
        };
        if tokio::time::timeout(self.tlog_timeout, drain)
            .await
            .is_err()
        {
            warn!(timeout = ?self.tlog_timeout, "shutdown timed out; unpublished entries are integrated on the next start");
        } else {
            info!("shutdown complete");
        }
    }
}

/// Opens the log, binds the listeners and starts serving; returns once every listener is bound.
///
/// # Errors
///
/// As [`run`].
pub async fn start(args: ServerArgs, backend: Backend) -> Result<RunningServer, RunError> {
    let signer = Arc::new(signer(&args, backend.generated_key_dir.as_deref())?);
    let identity = LogIdentity::of(&signer, &args.hostname, args.http_port);
    info!(
        origin = %identity.origin,
        log_id = %hex::encode(identity.log_id),
        "log identity\n{}",
        identity.describe(SystemTime::now())
    );
    let origin = Origin::new(&args.hostname).map_err(|e| RunError::Flag {
        flag: "--hostname",
        reason: e.to_string(),
    })?;
    let registry = registry(&args)?;
    let log = if args.read_only {
        warn!("read-only: this log accepts no new entries");
        None
    } else {
        let log = Log::open(
            Arc::clone(&backend.storage),
            Arc::clone(&backend.coordinator),
            Arc::clone(&signer),
            origin.clone(),
            log_config(&args, &backend)?,
        )
        .await?;
        info!(tree_size = log.checkpoint().size, "log open");
        // Opening finished integrating what was sequenced before a freeze; a frozen log then
        // serves reads only, as `--read-only` would, whatever the flags say.
        match backend.coordinator.frozen().await.map_err(LogError::from)? {
            Some(size) => {
                warn!(
                    size,
                    "this log is frozen: read-only, it accepts no new entries"
                );
                log.shutdown().await;
                None
            }
            None => Some(log),
        }
    };

    let metrics = Metrics::new();
    let state = AppState::new(
        log.clone(),
        Arc::clone(&backend.storage),
        registry,
        identity.log_id,
        metrics.clone(),
        args.max_request_body_size,
    )
    .with_tile_cache(args.tile_cache_size)
    .with_rate_limiter(rate_limiter(&args)?);
    // A resubmission waits for its entry's checkpoint no longer than a request may take.
    let state = if args.duplicate_returns_entry {
        state.with_duplicates_returning_entry(args.server_timeout)
    } else {
        state
    };
    let stop = CancellationToken::new();
    let state = match search_index(&args, &backend)? {
        Some(index) => {
            spawn_indexer(&backend, Arc::clone(&index), log.clone(), stop.clone()).await?;
            let state = state.with_search_index(Arc::clone(&index));
            if args.search_commitment_interval.is_zero() {
                state
            } else {
                let (committer, commitments) = rekor_search::Committer::new(
                    Arc::clone(&backend.storage),
                    index,
                    signer,
                    origin.as_str().to_string(),
                    args.search_commitment_interval,
                );
                let stop = stop.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = committer.run() => {}
                        () = stop.cancelled() => {}
                    }
                });
                state.with_search_commitments(commitments)
            }
        }
        None => state,
    };

    let (http_listener, http_address) =
        bind("http", SocketAddr::new(args.http_address, args.http_port)).await?;
    let (grpc_listener, grpc_address) =
        bind("grpc", SocketAddr::new(args.grpc_address, args.grpc_port)).await?;
    let (metrics_listener, metrics_address) = bind(
        "metrics",
        SocketAddr::new(args.http_address, args.http_metrics_port),
    )
    .await?;

    let http_tls = tls_config(
        "--http-tls",
        args.http_tls_cert_file.as_deref(),
        args.http_tls_key_file.as_deref(),
        &[b"h2", b"http/1.1"],
    )?;
    let grpc_tls = tls_config(
        "--grpc-tls",
        args.grpc_tls_cert_file.as_deref(),
        args.grpc_tls_key_file.as_deref(),
        &[b"h2"],
    )?;

    let http = {
        let api = crate::http::api(state.clone(), args.server_timeout);
        let stop = stop.clone();
        let connections = match http_tls {
            None => crate::serve::Connections::Tcp(http_listener),
            Some(config) => crate::serve::Connections::Tls(crate::tls::spawn_acceptor(
                http_listener,
                config,
                stop.clone(),
            )),
        };
        tokio::spawn(crate::serve::serve(
            connections,
            api,
            args.server_timeout,
            stop,
        ))
    };

    let metrics_server = {
        let router = crate::metrics_router(metrics.clone(), log.clone());
        let stop = stop.clone();
        tokio::spawn(async move {
            axum::serve(metrics_listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        })
    };
    let grpc = {
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<rekor_api::rekor::v2::rekor_server::RekorServer<crate::grpc::GrpcService>>()
            .await;
        if let Some(log) = log.clone() {
            tokio::spawn(follow_log_health(log, health_reporter, stop.clone()));
        }
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(rekor_api::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| RunError::Flag {
                flag: "gRPC reflection",
                reason: e.to_string(),
            })?;
        // No transport timeout: the Rekor service cuts its own calls off with
        // `ApiError::Timeout`, so the answer is built where every other failure's is.
        let router = tonic::transport::Server::builder()
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(
                crate::grpc::PanicResponder::new(metrics.clone()),
            ))
            .add_service(health_service)
            .add_service(reflection)
            .add_service(crate::grpc::service(state.clone(), args.server_timeout));
        let shutdown = stop.clone().cancelled_owned();
        match grpc_tls {
            None => {
                // Without TCP_NODELAY, Nagle's algorithm holds small gRPC responses back ~40 ms.
                let incoming = tonic::transport::server::TcpIncoming::from(grpc_listener)
                    .with_nodelay(Some(true));
                tokio::spawn(router.serve_with_incoming_shutdown(incoming, shutdown))
            }
            Some(config) => {
                let connections = crate::tls::spawn_acceptor(grpc_listener, config, stop.clone());
                let incoming = futures::stream::unfold(connections, |mut connections| async {
                    let (stream, _) = connections.recv().await?;
                    Some((Ok::<_, std::io::Error>(stream), connections))
                });
                tokio::spawn(router.serve_with_incoming_shutdown(incoming, shutdown))
            }
        }
    };

    Ok(RunningServer {
        http_address,
        grpc_address,
        metrics_address,
        identity,
        log,
        stop,
        tasks: ServerTasks {
            http,
            metrics: metrics_server,
            grpc,
        },
        tlog_timeout: args.tlog_timeout,
    })
}

/// Completes on SIGTERM or Ctrl-C: what [`run`] waits for before a graceful stop.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// The per-client write limits from `--rate-limit-*` and `--trusted-proxies`.
fn rate_limiter(args: &ServerArgs) -> Result<RateLimiter, RunError> {
    RateLimiter::new(RateLimitConfig {
        per_second: args.rate_limit_per_ip,
        burst: args.rate_limit_burst,
        allow: args.rate_limit_allow.clone(),
        trusted_proxies: args.trusted_proxies.clone(),
        ..RateLimitConfig::default()
    })
    .map_err(|e| RunError::Flag {
        flag: "--rate-limit-per-ip",
        reason: e.to_string(),
    })
}

/// How often the gRPC health service looks at the log's health.
const HEALTH_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Keeps the gRPC health service (the server as a whole, `""`, and the Rekor service) in step
/// with [`Log::health`], as `/healthz` is, until `stop`.
async fn follow_log_health(
    log: Log,
    reporter: tonic_health::server::HealthReporter,
    stop: CancellationToken,
) {
    type Rekor = rekor_api::rekor::v2::rekor_server::RekorServer<crate::grpc::GrpcService>;
    let mut serving = true;
    let mut ticks = tokio::time::interval(HEALTH_POLL_INTERVAL);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let healthy = log.health().is_ok();
        if healthy == serving {
            continue;
        }
        serving = healthy;
        let status = if healthy {
            reporter.set_serving::<Rekor>().await;
            tonic_health::ServingStatus::Serving
        } else {
            reporter.set_not_serving::<Rekor>().await;
            tonic_health::ServingStatus::NotServing
        };
        reporter.set_service_status("", status).await;
    }
}
