//! The transport-independent core of every API call; `http` and `grpc` only decode and encode.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use rekor_api::JsonLimits;
use rekor_api::common::v1::LogId;
use rekor_api::rekor::v1::{Checkpoint, InclusionProof, KindVersion, TransparencyLogEntry};
use rekor_api::rekor::v2::CreateEntryRequest;
use rekor_api::rekor::v2::create_entry_request::Spec;
use rekor_entries::{AlgorithmRegistry, EntryKind};
use rekor_log::Log;
use rekor_storage::{ObjectKind, SearchIndex, Storage};
use rekor_tlog::TilePath;

use crate::error::{ApiError, ErrorLog};
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::tile_cache::TileCache;
use rekor_api::entries_input;

/// Everything a request handler needs; cloned into each handler.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<AppInner>,
}

#[derive(Debug)]
struct AppInner {
    log: Option<Log>,
    storage: Arc<dyn Storage>,
    registry: AlgorithmRegistry,
    log_id: [u8; 32],
    metrics: Metrics,
    /// Limits on a request body: `--max-request-body-size`, the one size limit both transports
    /// and the JSON decoder apply.
    request_limits: JsonLimits,
    errors: ErrorLog,
    tiles: Option<TileCache>,
    rate_limiter: Option<RateLimiter>,
    search: Option<Arc<dyn SearchIndex>>,
    /// The latest search-index commitment, from the committer the caller runs; `None` when
    /// the server signs none.
    commitments: Option<SearchCommitments>,
    /// The server does not hold the log's key (a standalone search indexer): it cannot sign
    /// commitments, and says so.
    not_the_log: bool,
    /// With `--duplicate-returns-entry`: how long a resubmission may wait for the checkpoint
    /// that covers its existing entry. `None`: resubmissions get [`ApiError::Duplicate`].
    duplicate_wait: Option<Duration>,
}

/// What `CreateEntry` answers.
#[derive(Clone, Debug)]
pub struct Created {
    /// The entry, with its inclusion proof and the checkpoint it leads to.
    pub entry: TransparencyLogEntry,
    /// The entry was in the log already (a resubmission, answered so under
    /// `--duplicate-returns-entry`); the transports then add `x-log-index` to the answer.
    pub duplicate: bool,
}

/// Where the latest search-index commitment is published.
pub type SearchCommitments = tokio::sync::watch::Receiver<Option<Arc<rekor_search::Commitment>>>;

impl AppState {
    /// Builds the state. `log` is `None` for a read-only (frozen) log.
    pub fn new(
        log: Option<Log>,
        storage: Arc<dyn Storage>,
        registry: AlgorithmRegistry,
        log_id: [u8; 32],
        metrics: Metrics,
        max_request_body_size: usize,
    ) -> Self {
        AppState {
            inner: Arc::new(AppInner {
                log,
                storage,
                registry,
                log_id,
                metrics,
                request_limits: JsonLimits {
                    max_bytes: max_request_body_size,
                    ..JsonLimits::default()
                },
                errors: ErrorLog::default(),
                tiles: None,
                rate_limiter: None,
                search: None,
                commitments: None,
                not_the_log: false,
                duplicate_wait: None,
            }),
        }
    }

    /// The same state with a cache of up to `bytes` of full tiles in front of the storage
    /// (zero: none). Call before cloning the state into handlers.
    #[must_use]
    pub fn with_tile_cache(mut self, bytes: usize) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.tiles = TileCache::new(bytes);
        }
        self
    }

    /// The same state with per-client write limits (none if `limiter` is off). Call before
    /// cloning the state into handlers.
    #[must_use]
    pub fn with_rate_limiter(mut self, limiter: RateLimiter) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.rate_limiter = limiter.is_enabled().then_some(limiter);
        }
        self
    }

    /// The same state answering `GET /api/v2/search` from `index` (kept up to date by an
    /// indexer the caller runs). Call before cloning the state into handlers.
    #[must_use]
    pub fn with_search_index(mut self, index: Arc<dyn SearchIndex>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.search = Some(index);
        }
        self
    }

    /// The same state answering `GET /api/v2/search/completeness` from the commitments a
    /// [`rekor_search::Committer`] publishes. Call before cloning the state into handlers.
    #[must_use]
    pub fn with_search_commitments(mut self, commitments: SearchCommitments) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.commitments = Some(commitments);
        }
        self
    }

    /// The same state for a server that follows a log without holding its key (a standalone
    /// search indexer): `GET /api/v2/search/completeness` answers
    /// [`ApiError::CommitmentsOnlyFromLog`], since only the log signs commitments. Call before
    /// cloning the state into handlers.
    #[must_use]
    pub fn not_the_log(mut self) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.not_the_log = true;
        }
        self
    }

    /// The same state answering a resubmitted entry with the existing entry, as a fresh one is
    /// answered (`--duplicate-returns-entry`), after waiting up to `wait` for a checkpoint that
    /// covers it. Call before cloning the state into handlers.
    #[must_use]
    pub fn with_duplicates_returning_entry(mut self, wait: Duration) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.duplicate_wait = Some(wait);
        }
        self
    }

    /// The latest search-index commitment, if there is one yet.
    ///
    /// # Errors
    ///
    /// [`ApiError::SearchCommitmentsOff`] if the server signs none,
    /// [`ApiError::CommitmentsOnlyFromLog`] if it is not the log (see [`AppState::not_the_log`]),
    /// [`ApiError::SearchCommitmentPending`] before the first.
    pub fn search_commitment(&self) -> Result<Arc<rekor_search::Commitment>, ApiError> {
        if self.inner.not_the_log {
            return Err(ApiError::CommitmentsOnlyFromLog);
        }
        let commitments = self
            .inner
            .commitments
            .as_ref()
            .ok_or(ApiError::SearchCommitmentsOff)?;
        commitments
            .borrow()
            .clone()
            .ok_or(ApiError::SearchCommitmentPending)
    }

    /// The search index, if the server keeps one.
    pub fn search_index(&self) -> Option<&Arc<dyn SearchIndex>> {
        self.inner.search.as_ref()
    }

    /// The log's storage.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.inner.storage
    }

    /// The log ID (SHA-256 of the log's public key, as in TransparencyLogEntry.logId).
    pub fn log_id(&self) -> [u8; 32] {
        self.inner.log_id
    }

    /// Whether writes are rate-limited per client.
    pub fn limits_writes(&self) -> bool {
        self.inner.rate_limiter.is_some()
    }

    /// Charges one write to the client behind `peer` (the connection's address; `headers` may
    /// carry `X-Forwarded-For` from a trusted proxy).
    ///
    /// # Errors
    ///
    /// [`ApiError::RateLimited`] once the client is over its rate.
    pub fn admit_write(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(limiter) = &self.inner.rate_limiter else {
            return Ok(());
        };
        // Without a peer address (not a TCP connection) all such clients share one bucket.
        let peer = peer.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        let client = limiter.client_ip_from_headers(peer, headers);
        limiter.check(client, Instant::now()).map_err(|retry| {
            self.inner.metrics.rate_limited.inc();
            ApiError::RateLimited(retry)
        })
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The largest accepted request body.
    pub fn max_request_body_size(&self) -> usize {
        self.inner.request_limits.max_bytes
    }

    /// The limits a request body is decoded under.
    pub fn request_limits(&self) -> JsonLimits {
        self.inner.request_limits
    }

    /// Where failed requests are logged.
    pub fn errors(&self) -> &ErrorLog {
        &self.inner.errors
    }

    /// The log, unless read-only.
    pub fn log(&self) -> Option<&Log> {
        self.inner.log.as_ref()
    }

    /// Validates, logs and answers one `CreateEntry` request.
    ///
    /// # Errors
    ///
    /// [`ApiError::ReadOnly`] for a frozen log, [`ApiError::MissingEntry`] or
    /// [`ApiError::InvalidEntry`] naming the broken rule, [`ApiError::Duplicate`] (unless
    /// duplicates return the entry, see [`AppState::with_duplicates_returning_entry`]),
    /// [`ApiError::Pushback`], [`ApiError::StorageUnavailable`] or [`ApiError::Timeout`] when it
    /// should be retried.
    pub async fn create_entry(&self, request: CreateEntryRequest) -> Result<Created, ApiError> {
        let log = self.inner.log.as_ref().ok_or(ApiError::ReadOnly)?;
        let started = Instant::now();
        let registry = &self.inner.registry;
        let validated = match request.spec {
            Some(Spec::HashedRekordRequestV002(hashed)) => rekor_entries::validate_hashed_rekord(
                &entries_input::hashed_rekord(&hashed),
                registry,
            ),
            Some(Spec::DsseRequestV002(dsse)) => {
                rekor_entries::validate_dsse(&entries_input::dsse(&dsse), registry)
            }
            None => return Err(ApiError::MissingEntry),
        }
        .map_err(ApiError::InvalidEntry)?;

        let kind = validated.kind;
        let body = Bytes::from(validated.canonical);
        let appended = match (log.add(body.clone()).await, self.inner.duplicate_wait) {
            (Ok(appended), _) => appended,
            (Err(rekor_log::LogError::Duplicate { index }), Some(wait)) => {
                let entry = self.existing_entry(log, index, kind, &body, wait).await?;
                return Ok(Created {
                    entry,
                    duplicate: true,
                });
            }
            (Err(e), _) => {
                if matches!(e, rekor_log::LogError::Internal { .. }) {
                    self.inner.metrics.inclusion_proof_failures.inc();
                }
                return Err(ApiError::from(e));
            }
        };
        tracing::Span::current().record("log_index", appended.index);

        let entry = self.transparency_log_entry(
            appended.index,
            kind.kind(),
            &body,
            ProvenInto {
                size: appended.checkpoint.size,
                root: &appended.checkpoint.root,
                proof: &appended.proof,
                note: &appended.checkpoint.note,
            },
        )?;
        let metrics = &self.inner.metrics;
        match kind {
            EntryKind::HashedRekord => metrics.new_hashedrekord_entries.inc(),
            EntryKind::Dsse => metrics.new_dsse_entries.inc(),
        };
        metrics
            .write_latency
            .observe(started.elapsed().as_secs_f64());
        metrics.tree_size.set(to_i64(appended.checkpoint.size)?);
        Ok(Created {
            entry,
            duplicate: false,
        })
    }

    /// The `TransparencyLogEntry` of the entry at `index` (`kind`, logged as `body`), with its
    /// inclusion proof into a checkpoint's tree: what `CreateEntry` and searches answer.
    pub(crate) fn transparency_log_entry(
        &self,
        index: u64,
        kind: &str,
        body: &[u8],
        tree: ProvenInto<'_>,
    ) -> Result<TransparencyLogEntry, ApiError> {
        Ok(TransparencyLogEntry {
            log_index: to_i64(index)?,
            log_id: Some(LogId {
                key_id: self.inner.log_id.to_vec(),
            }),
            kind_version: Some(KindVersion {
                kind: kind.to_string(),
                version: rekor_entries::ENTRY_API_VERSION.to_string(),
            }),
            integrated_time: 0,
            inclusion_promise: None,
            inclusion_proof: Some(InclusionProof {
                log_index: to_i64(index)?,
                root_hash: tree.root.0.to_vec(),
                tree_size: to_i64(tree.size)?,
                hashes: tree.proof.iter().map(|h| h.0.to_vec()).collect(),
                checkpoint: Some(Checkpoint {
                    envelope: String::from_utf8_lossy(tree.note).into_owned(),
                }),
            }),
            canonicalized_body: body.to_vec(),
        })
    }

    /// Reads the current checkpoint.
    ///
    /// # Errors
    ///
    /// [`ApiError::NoCheckpoint`] before the first checkpoint; a storage failure otherwise.
    pub async fn checkpoint(&self) -> Result<Bytes, ApiError> {
        match self.inner.storage.read_checkpoint().await {
            Ok(Some(checkpoint)) => Ok(checkpoint.data),
            Ok(None) => Err(ApiError::NoCheckpoint),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads a hash tile or entry bundle by its C2SP path (`tile/...`), parsed strictly first.
    ///
    /// # Errors
    ///
    /// [`ApiError::NotATilePath`] for a malformed path, [`ApiError::ObjectNotFound`] for a
    /// missing object.
    pub async fn tile(&self, path: &str) -> Result<(Bytes, ObjectKind), ApiError> {
        let parsed = TilePath::parse(path).map_err(ApiError::NotATilePath)?;
        let canonical = parsed.path();
        let cache = self
            .inner
            .tiles
            .as_ref()
            .filter(|_| TileCache::is_cacheable(&canonical));
        if let Some(data) = cache.and_then(|c| c.get(&canonical)) {
            return Ok((data, ObjectKind::Tile));
        }
        match self.inner.storage.read(&canonical).await {
            Ok(data) => {
                if let Some(cache) = cache {
                    cache.insert(&canonical, data.clone());
                }
                Ok((data, ObjectKind::Tile))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// An inclusion proof and the checkpoint it leads to.
pub(crate) struct ProvenInto<'a> {
    /// The checkpoint's tree size.
    pub(crate) size: u64,
    /// Its root hash.
    pub(crate) root: &'a rekor_tlog::Hash,
    /// The proof, leaf to root.
    pub(crate) proof: &'a [rekor_tlog::Hash],
    /// The signed checkpoint note.
    pub(crate) note: &'a [u8],
}

fn to_i64(value: u64) -> Result<i64, ApiError> {
    i64::try_from(value).map_err(|_| ApiError::Internal(format!("{value} does not fit int64")))
}
