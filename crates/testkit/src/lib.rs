//! End-to-end test kit for the Rekor v2 servers: start a real server
//! binary on loopback, talk to it over HTTP and gRPC, and verify everything it answers.
//!
//! - [`process`]: [`ServerProcess`] runs `rekor-server-posix` on a storage directory with
//!   ports chosen by the system, reads the bound addresses from its JSON log, and stops it with
//!   SIGTERM or SIGKILL.
//! - [`fixtures`]: client keys (ECDSA P-256/P-384, Ed25519ph, pure Ed25519, a P-256 key with a
//!   self-signed certificate) and hashedrekord v0.0.2 submissions as protojson and protobuf.
//! - [`client`]: [`HttpClient`], [`GrpcClient`], and [`LogEntry`], a transport-neutral
//!   `TransparencyLogEntry`.
//! - [`assertions`]: [`verify_entry`] (checkpoint signature, log ID, kind, inclusion proof,
//!   RFC 8785 body) and [`audit`] (every tile and bundle against the checkpoint, with roots
//!   recomputed by [`merkle`] and by the third-party `tlog_tiles` crate).
//! - [`stats`]: latency percentiles.
//! - [`tiles`]: inclusion and consistency proofs computed by the client from tiles fetched
//!   over HTTP ([`TileCache`], [`FetchedTree`], [`CheckpointHistory`]), and a seeded RNG.
//!
//! Specifications checked: Rekor v2 (`dev.sigstore.rekor.v2` protos, protojson), C2SP
//! tlog-tiles, tlog-checkpoint and signed-note, RFC 6962 §2.1 and RFC 9162 §2.1.3, RFC 8785.
//!
//! # Example
//!
//! ```
//! use rekor_testkit::fixtures::{ClientKey, KeyKind};
//!
//! let key = ClientKey::generate(KeyKind::EcdsaP256)?;
//! let submission = key.hashed_rekord(b"hello, rekor")?;
//! let body = submission.request_json();
//! assert_eq!(
//!     body["hashedRekordRequestV002"]["signature"]["verifier"]["keyDetails"],
//!     "PKIX_ECDSA_P256_SHA_256"
//! );
//! // What the log must record for it:
//! assert_eq!(submission.expected_body()["kind"], "hashedrekord");
//! # Ok::<(), rekor_testkit::Error>(())
//! ```

pub mod assertions;
pub mod client;
mod error;
pub mod fixtures;
pub mod merkle;
pub mod process;
pub mod scenarios;
pub mod stats;
pub mod tiles;

pub use assertions::{
    AuditReport, TrustedLog, VerifiedEntry, audit, verify_checkpoint, verify_entry,
};
pub use client::{GrpcClient, HttpClient, LogEntry, Reply};
pub use error::{Error, Result, ensure_eq};
pub use fixtures::{ClientKey, KeyKind, Submission, VerifierMaterial};
pub use process::{Listeners, ServerConfig, ServerProcess};
pub use stats::LatencySummary;
pub use tiles::{CheckpointHistory, FetchedTree, SeededRng, TileCache};

/// A running server with its clients and trust material: what most tests need.
#[derive(Debug)]
pub struct TestLog {
    /// The process.
    pub server: ServerProcess,
    /// An HTTP client for it.
    pub http: HttpClient,
    /// A gRPC client for it.
    pub grpc: GrpcClient,
    /// Its identity, loaded from the key it keeps in its storage directory.
    pub trust: TrustedLog,
}

impl TestLog {
    /// Starts a server as `config` says and connects to it.
    ///
    /// # Errors
    ///
    /// Any failure to start the server, load its key, or connect.
    pub async fn start(config: &ServerConfig) -> Result<Self> {
        let owned = config.clone();
        let server = tokio::task::spawn_blocking(move || ServerProcess::start(&owned))
            .await
            .map_err(|e| Error::io("starting the server", std::io::Error::other(e)))??;
        let listeners = server.listeners();
        let trust = match &config.signer_file {
            Some(signer) => TrustedLog::from_signer_file(signer, &config.hostname)?,
            None => TrustedLog::from_storage_dir(&config.storage_dir, &config.hostname)?,
        };
        let http = HttpClient::new(listeners.http)?;
        let grpc = GrpcClient::connect(listeners.grpc).await?;
        Ok(TestLog {
            server,
            http,
            grpc,
            trust,
        })
    }

    /// The server's Prometheus metrics, as text.
    ///
    /// # Errors
    ///
    /// [`Error::Http`] or [`Error::Status`] if `/metrics` does not answer 200.
    pub async fn metrics_text(&self) -> Result<String> {
        let metrics = HttpClient::new(self.server.listeners().metrics)?;
        Ok(metrics.get("/metrics").await?.expect_status(200)?.text())
    }

    /// Resubmits `submission` over HTTP and checks it is refused as a duplicate of `index`
    /// (409, the JSON error body, and `x-log-index: <index>`).
    ///
    /// # Errors
    ///
    /// [`Error::Mismatch`] naming what differed.
    pub async fn expect_duplicate_http(&self, submission: &Submission, index: u64) -> Result<()> {
        let reply = self
            .http
            .post_entry(submission.request_json_text())
            .await?
            .expect_api_error(409, tonic::Code::AlreadyExists)?;
        let header = reply.header("x-log-index").map(str::to_string);
        if header.as_deref() != Some(index.to_string().as_str()) {
            return Err(Error::mismatch(
                "HTTP x-log-index",
                index.to_string(),
                format!("{header:?}"),
            ));
        }
        Ok(())
    }

    /// Resubmits `submission` over gRPC and checks it is refused with `AlreadyExists` and
    /// `x-log-index: <index>` metadata.
    ///
    /// # Errors
    ///
    /// [`Error::Mismatch`] naming what differed.
    pub async fn expect_duplicate_grpc(&self, submission: &Submission, index: u64) -> Result<()> {
        let status = match self.grpc.create_entry(submission.request_proto()?).await {
            Ok(_) => {
                return Err(Error::mismatch(
                    "gRPC resubmission",
                    "AlreadyExists",
                    "accepted",
                ));
            }
            Err(status) => status,
        };
        if status.code() != tonic::Code::AlreadyExists {
            return Err(Error::mismatch(
                "gRPC resubmission",
                "AlreadyExists",
                format!("{status:?}"),
            ));
        }
        let metadata = status
            .metadata()
            .get("x-log-index")
            .and_then(|v| v.to_str().ok());
        if metadata != Some(index.to_string().as_str()) {
            return Err(Error::mismatch(
                "gRPC x-log-index",
                index.to_string(),
                format!("{metadata:?}"),
            ));
        }
        Ok(())
    }

    /// Stops the server gracefully (SIGTERM) and checks it exited with status 0.
    ///
    /// # Errors
    ///
    /// As [`ServerProcess::stop`]; [`Error::Mismatch`] for a non-zero exit.
    pub async fn stop(self) -> Result<()> {
        let mut server = self.server;
        let (server, status) = tokio::task::spawn_blocking(move || {
            let status = server.stop();
            (server, status)
        })
        .await
        .map_err(|e| Error::io("stopping the server", std::io::Error::other(e)))?;
        let status = status?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::mismatch(
                "server exit status after SIGTERM",
                "0",
                format!("{status}; stderr tail:\n{}", server.stderr_tail()),
            ))
        }
    }

    /// Kills the server (SIGKILL).
    ///
    /// # Errors
    ///
    /// As [`ServerProcess::kill`].
    pub async fn kill(self) -> Result<()> {
        let mut server = self.server;
        tokio::task::spawn_blocking(move || server.kill())
            .await
            .map_err(|e| Error::io("killing the server", std::io::Error::other(e)))??;
        Ok(())
    }
}
