//! The HTTP transport: the Rekor v2 write endpoint and the C2SP tlog-tiles read endpoints, with
//! timeouts, bounded response sizes and retries with exponential backoff.

use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use rekor_api::JsonLimits;
use rekor_api::rekor::v1::TransparencyLogEntry;
use rekor_api::rekor::v2::CreateEntryRequest;
use rekor_note::{LogVerifier, MAX_NOTE_SIZE};
use rekor_tlog::{
    BundleId, HASH_SIZE, MAX_ENTRY_SIZE, Tile, TileId, TileMap, TileWidth, decode_bundle_exact,
};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap};

use crate::checkpoint::SignedCheckpoint;
use crate::error::{Error, Result};

/// The header that carries the existing index of a duplicate entry.
pub const LOG_INDEX_HEADER: &str = "x-log-index";

/// Largest `TransparencyLogEntry` response accepted: the largest request a log accepts.
const MAX_ENTRY_RESPONSE: usize = rekor_api::MAX_MESSAGE_BYTES;
/// Largest hash tile: 256 hashes.
const MAX_TILE_BYTES: usize = ENTRIES_PER_TILE * HASH_SIZE;
/// Largest entry bundle: 256 entries of the largest size, each behind a 2-byte length.
const MAX_BUNDLE_BYTES: usize = ENTRIES_PER_TILE * (2 + MAX_ENTRY_SIZE);
/// Hashes in a full tile, entries in a full bundle.
const ENTRIES_PER_TILE: usize = 256;
/// Longest error message kept from a response body.
const MAX_ERROR_MESSAGE: usize = 300;

/// How a [`Client`] talks to the log.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Timeout of one HTTP request (connect, send and read).
    pub timeout: Duration,
    /// How many times a failed request is retried: transport errors, HTTP 429 and 5xx.
    pub retries: u32,
    /// The wait before the first retry; it doubles with every further retry.
    pub initial_backoff: Duration,
    /// The longest wait between two retries.
    pub max_backoff: Duration,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// How many tiles and bundles are fetched at once.
    pub concurrency: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(30),
            retries: 3,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
            user_agent: concat!("rekor-client/", env!("CARGO_PKG_VERSION")).to_string(),
            concurrency: 8,
        }
    }
}

/// A client for one Rekor v2 log, reached at its base URL (the TrustedRoot / SigningConfig
/// `baseUrl`, such as `https://log2026-1.example.dev`). Cheap to clone.
///
/// Everything it returns that a log could lie about is checked before it is returned, or comes
/// back as raw material for the checks in this crate ([`crate::verify_entry`],
/// [`Client::prove_consistency`], [`Client::audit`]).
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    options: ClientOptions,
}

/// What a request gave back before status handling.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

enum Failure {
    Transport(reqwest::Error),
    TooLarge,
}

impl Client {
    /// A client for the log at `base_url` (`http://` or `https://`; a trailing `/` is ignored).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`] for a URL that does not parse, is not HTTP(S), or has a query or
    /// fragment; [`Error::HttpClient`] if the HTTP client cannot be built.
    pub fn new(base_url: &str, options: ClientOptions) -> Result<Client> {
        let invalid = |reason| Error::InvalidUrl {
            url: base_url.to_string(),
            reason,
        };
        let parsed = reqwest::Url::parse(base_url).map_err(|_| invalid("not a URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(invalid("no host"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(invalid("a query or fragment is not allowed"));
        }
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .user_agent(options.user_agent.clone())
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(|source| Error::HttpClient { source })?;
        Ok(Client {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            options: ClientOptions {
                concurrency: options.concurrency.max(1),
                ..options
            },
        })
    }

    /// The base URL, without a trailing `/`.
    #[must_use]
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The options in use.
    #[must_use]
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v2/{path}", self.base)
    }

    /// Submits an entry: `POST /api/v2/log/entries` with the protojson request.
    ///
    /// The response is parsed but not verified; use [`Client::submit_verified`] or
    /// [`crate::verify_entry`].
    ///
    /// # Errors
    ///
    /// [`Error::Duplicate`] (HTTP 409) with the index of the entry already logged;
    /// [`Error::Status`] for any other refusal (400 names the broken rule; 405 a frozen log);
    /// [`Error::Transport`] when the log cannot be reached; [`Error::InvalidJson`] for a
    /// malformed response.
    pub async fn submit(&self, request: &CreateEntryRequest) -> Result<TransparencyLogEntry> {
        let body = rekor_api::to_json(request).map_err(|source| Error::Encode {
            message: "CreateEntryRequest",
            source,
        })?;
        let url = self.url("log/entries");
        let answer = self
            .send("POST", &url, Some(Bytes::from(body)), MAX_ENTRY_RESPONSE)
            .await?;
        match answer.status {
            StatusCode::CREATED | StatusCode::OK => rekor_api::from_json(
                &answer.body,
                JsonLimits {
                    max_bytes: MAX_ENTRY_RESPONSE,
                    ..JsonLimits::default()
                },
            )
            .map_err(|source| Error::InvalidJson {
                what: url,
                message: "TransparencyLogEntry",
                source,
            }),
            StatusCode::CONFLICT => {
                let index = answer
                    .headers
                    .get(LOG_INDEX_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or(Error::DuplicateWithoutIndex)?;
                Err(Error::Duplicate { index })
            }
            status => Err(status_error("POST", url, status, &answer.body)),
        }
    }

    /// The log's current checkpoint note, unverified: `GET /api/v2/checkpoint`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] before the log's first checkpoint, and the transport errors.
    pub async fn checkpoint_note(&self) -> Result<Bytes> {
        self.get("checkpoint", MAX_NOTE_SIZE).await
    }

    /// The log's current checkpoint, verified with `verifier` (signature and origin).
    ///
    /// # Errors
    ///
    /// As [`Client::checkpoint_note`], and [`Error::Checkpoint`] if it does not verify.
    pub async fn checkpoint(&self, verifier: &LogVerifier) -> Result<SignedCheckpoint> {
        let note = self.checkpoint_note().await?;
        SignedCheckpoint::verify(&note, verifier)
    }

    /// One hash tile: `GET /api/v2/tile/<L>/<N>[.p/<W>]`.
    ///
    /// A partial tile the log no longer serves (logs may delete partial tiles once the full tile
    /// exists) is read from the full tile instead: its first `W` hashes are the partial tile.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] naming the tile, [`Error::TileLength`] for a body of the wrong length,
    /// and the transport errors.
    pub async fn tile(&self, id: TileId) -> Result<Tile> {
        let path = id.path();
        match self.get(&path, MAX_TILE_BYTES).await {
            Ok(bytes) => {
                Tile::from_bytes(id, &bytes).map_err(|source| Error::TileLength { path, source })
            }
            Err(Error::NotFound { .. }) if !id.is_full() => {
                let full = TileId::new(id.level, id.index, TileWidth::FULL);
                let full_path = full.path();
                let bytes = match self.get(&full_path, MAX_TILE_BYTES).await {
                    Err(Error::NotFound { .. }) => return Err(Error::NotFound { path }),
                    other => other?,
                };
                let mut tile =
                    Tile::from_bytes(full, &bytes).map_err(|source| Error::TileLength {
                        path: full_path,
                        source,
                    })?;
                tile.hashes.truncate(id.width.to_usize());
                tile.id = id;
                Ok(tile)
            }
            Err(e) => Err(e),
        }
    }

    /// One entry bundle, decoded: `GET /api/v2/tile/entries/<N>[.p/<W>]`. It must hold exactly
    /// `W` entries. A missing partial bundle is read from the full bundle, as for
    /// [`Client::tile`].
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] naming the bundle, [`Error::Bundle`] if it does not decode to `W`
    /// entries, and the transport errors.
    pub async fn bundle(&self, id: BundleId) -> Result<Vec<Bytes>> {
        let path = id.path();
        match self.get(&path, MAX_BUNDLE_BYTES).await {
            Ok(bytes) => decode_entries(&bytes, id.width, path),
            Err(Error::NotFound { .. }) if !id.is_full() => {
                let full = BundleId::new(id.index, TileWidth::FULL);
                let full_path = full.path();
                let bytes = match self.get(&full_path, MAX_BUNDLE_BYTES).await {
                    Err(Error::NotFound { .. }) => return Err(Error::NotFound { path }),
                    other => other?,
                };
                let mut entries = decode_entries(&bytes, TileWidth::FULL, full_path)?;
                entries.truncate(id.width.to_usize());
                Ok(entries)
            }
            Err(e) => Err(e),
        }
    }

    /// Fetches several tiles concurrently (at most [`ClientOptions::concurrency`] at once).
    ///
    /// # Errors
    ///
    /// The first error of [`Client::tile`].
    pub async fn tiles(&self, ids: impl IntoIterator<Item = TileId>) -> Result<TileMap> {
        futures::stream::iter(ids)
            .map(|id| self.tile(id))
            .buffer_unordered(self.options.concurrency)
            .try_collect()
            .await
    }

    /// `GET /api/v2/<path>`: the body of a 200 answer.
    pub(crate) async fn get(&self, path: &str, limit: usize) -> Result<Bytes> {
        let url = self.url(path);
        let answer = self.send("GET", &url, None, limit).await?;
        match answer.status {
            StatusCode::OK => Ok(answer.body),
            StatusCode::NOT_FOUND => Err(Error::NotFound {
                path: path.to_string(),
            }),
            status => Err(status_error("GET", url, status, &answer.body)),
        }
    }

    /// Sends a request, retrying transport failures, 429 and 5xx with exponential backoff.
    async fn send(
        &self,
        method: &'static str,
        url: &str,
        body: Option<Bytes>,
        limit: usize,
    ) -> Result<Answer> {
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let request = match &body {
                None => self.http.get(url),
                Some(body) => self
                    .http
                    .post(url)
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone()),
            };
            let retries_left = attempt <= self.options.retries;
            match fetch(request, limit).await {
                Ok(answer) if retries_left && retryable_status(answer.status) => {}
                Ok(answer) => return Ok(answer),
                Err(Failure::TooLarge) => {
                    return Err(Error::ResponseTooLarge {
                        url: url.to_string(),
                        limit,
                    });
                }
                Err(Failure::Transport(source)) if retries_left && !source.is_builder() => {}
                Err(Failure::Transport(source)) => {
                    return Err(Error::Transport {
                        method,
                        url: url.to_string(),
                        reason: describe(&source),
                        attempts: attempt,
                        source,
                    });
                }
            }
            tokio::time::sleep(self.backoff(attempt)).await;
        }
    }

    /// The wait after failed attempt `attempt` (1-based).
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2_u32.saturating_pow(attempt.saturating_sub(1));
        self.options
            .initial_backoff
            .saturating_mul(factor)
            .min(self.options.max_backoff)
    }
}

fn decode_entries(bytes: &[u8], width: TileWidth, path: String) -> Result<Vec<Bytes>> {
    match decode_bundle_exact(bytes, width) {
        Ok(entries) => Ok(entries.into_iter().map(Bytes::copy_from_slice).collect()),
        Err(source) => Err(Error::Bundle { path, source }),
    }
}

fn retryable_status(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// Sends one request and reads at most `limit` bytes of its body.
async fn fetch(request: reqwest::RequestBuilder, limit: usize) -> Result<Answer, Failure> {
    let mut response = request.send().await.map_err(Failure::Transport)?;
    if response
        .content_length()
        .is_some_and(|len| usize::try_from(len).map_or(true, |len| len > limit))
    {
        return Err(Failure::TooLarge);
    }
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(Failure::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(Failure::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer {
        status,
        headers,
        body: Bytes::from(body),
    })
}

/// The innermost cause of a transport error, in words.
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".to_string();
    }
    let mut cause: &dyn std::error::Error = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let text = cause.to_string();
    if error.is_connect() && !text.contains("connect") {
        format!("cannot connect: {text}")
    } else {
        text
    }
}

/// An unexpected status, with the log's message (grpc-gateway JSON `message`, or the first line
/// of a text body).
fn status_error(method: &'static str, url: String, status: StatusCode, body: &[u8]) -> Error {
    let from_json = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(String::from));
    let text = from_json.unwrap_or_else(|| {
        String::from_utf8_lossy(body)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    });
    let mut message: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ERROR_MESSAGE)
        .collect();
    if message.trim().is_empty() {
        message = status
            .canonical_reason()
            .unwrap_or("no message")
            .to_string();
    }
    Error::Status {
        method,
        url,
        status: status.as_u16(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_normalised() {
        let ok = Client::new("http://127.0.0.1:3000/", ClientOptions::default()).unwrap();
        assert_eq!(ok.base_url(), "http://127.0.0.1:3000");
        assert_eq!(
            ok.url("tile/0/000.p/5"),
            "http://127.0.0.1:3000/api/v2/tile/0/000.p/5"
        );
        let prefixed = Client::new("https://log.example.dev/prefix", ClientOptions::default())
            .unwrap()
            .url("checkpoint");
        assert_eq!(prefixed, "https://log.example.dev/prefix/api/v2/checkpoint");
        for (bad, reason) in [
            ("127.0.0.1:3000", "not a URL"),
            ("localhost:3000", "the scheme must be http or https"),
            ("ftp://x", "the scheme must be http or https"),
            ("http://x/?a=b", "a query or fragment is not allowed"),
            ("no url", "not a URL"),
        ] {
            match Client::new(bad, ClientOptions::default()) {
                Err(Error::InvalidUrl { reason: got, .. }) => assert_eq!(got, reason, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let client = Client::new(
            "http://127.0.0.1:1",
            ClientOptions {
                initial_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_millis(350),
                ..ClientOptions::default()
            },
        )
        .unwrap();
        let waits: Vec<u128> = (1..=5).map(|a| client.backoff(a).as_millis()).collect();
        assert_eq!(waits, [100, 200, 350, 350, 350]);
        assert_eq!(client.backoff(u32::MAX), Duration::from_millis(350));
    }

    #[test]
    fn status_errors_keep_one_line_of_the_message() {
        let json = br#"{"code":3,"message":"invalid signature\nsecond line","details":[]}"#;
        let e = status_error("POST", "u".into(), StatusCode::BAD_REQUEST, json);
        assert_eq!(
            e.to_string(),
            "POST u: HTTP 400: invalid signaturesecond line"
        );
        let e = status_error(
            "POST",
            "u".into(),
            StatusCode::METHOD_NOT_ALLOWED,
            b"This log has been frozen.\nmore\n",
        );
        assert_eq!(e.to_string(), "POST u: HTTP 405: This log has been frozen.");
        let e = status_error("GET", "u".into(), StatusCode::BAD_GATEWAY, b"");
        assert_eq!(e.to_string(), "GET u: HTTP 502: Bad Gateway");
    }

    #[tokio::test]
    async fn unreachable_log_is_retried_then_reported() {
        // Bind and drop a listener, so the port is (almost certainly) closed.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let client = Client::new(
            &format!("http://127.0.0.1:{port}"),
            ClientOptions {
                retries: 2,
                initial_backoff: Duration::from_millis(1),
                timeout: Duration::from_secs(5),
                ..ClientOptions::default()
            },
        )
        .unwrap();
        match client.checkpoint_note().await {
            Err(
                e @ Error::Transport {
                    attempts: 3,
                    method: "GET",
                    ..
                },
            ) => {
                let text = e.to_string();
                assert!(text.contains("/api/v2/checkpoint"), "{text}");
                assert!(!text.contains('\n'), "{text}");
            }
            other => panic!("{other:?}"),
        }
    }
}
