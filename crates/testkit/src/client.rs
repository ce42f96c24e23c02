//! Clients for a server under test: HTTP (reqwest, plus a raw socket client for paths a URL
//! library would normalise), gRPC (the generated `RekorClient`, plus a raw-bytes codec for
//! malformed messages), and [`LogEntry`], one transport-neutral view of a
//! `TransparencyLogEntry` decoded independently from each wire form.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::{Buf as _, BufMut as _, Bytes};
use rekor_api::rekor::v1::TransparencyLogEntry;
use rekor_api::rekor::v2::CreateEntryRequest;
use rekor_api::rekor::v2::rekor_client::RekorClient;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

use crate::error::{Error, Result};
use crate::fixtures::Submission;

/// The write endpoint.
pub const ENTRIES_PATH: &str = "/api/v2/log/entries";
/// The checkpoint endpoint.
pub const CHECKPOINT_PATH: &str = "/api/v2/checkpoint";
/// The gRPC method path of `CreateEntry`.
pub const CREATE_ENTRY_METHOD: &str = "/dev.sigstore.rekor.v2.Rekor/CreateEntry";

/// Per-request time limit of the test clients.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTP response, fully read.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The request URL (or path, for raw requests).
    pub url: String,
    /// The status code.
    pub status: u16,
    /// The headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

impl Reply {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    ///
    /// # Errors
    ///
    /// [`Error::Json`] if it is not.
    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).map_err(|source| Error::Json {
            what: format!("body of {}", self.url),
            source,
        })
    }

    /// This reply if its status is `expected`.
    ///
    /// # Errors
    ///
    /// [`Error::Status`] with the body otherwise.
    pub fn expect_status(self, expected: u16) -> Result<Self> {
        if self.status == expected {
            Ok(self)
        } else {
            Err(Error::Status {
                url: self.url.clone(),
                expected,
                actual: self.status,
                body: self.text(),
            })
        }
    }

    /// Checks this is an API error answer: HTTP `status`, `Content-Type: application/json`,
    /// and the gateway body `{"code": <gRPC code>, "message": <non-empty>, "details": []}`.
    ///
    /// # Errors
    ///
    /// [`Error::Status`], [`Error::Json`] or [`Error::Mismatch`].
    pub fn expect_api_error(self, status: u16, code: tonic::Code) -> Result<Self> {
        let reply = self.expect_status(status)?;
        reply.expect_header("content-type", "application/json")?;
        let body = reply.json()?;
        let what = format!("error body of {}", reply.url);
        let object = body
            .as_object()
            .ok_or_else(|| Error::malformed(&what, "not an object"))?;
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        if keys != ["code", "details", "message"] {
            return Err(Error::mismatch(
                format!("{what} fields"),
                "code, details, message",
                keys.join(", "),
            ));
        }
        if body["code"].as_i64() != Some(i64::from(i32::from(code))) {
            return Err(Error::mismatch(
                format!("{what} code"),
                i32::from(code),
                &body["code"],
            ));
        }
        if body["message"].as_str().is_none_or(str::is_empty) {
            return Err(Error::malformed(
                format!("{what} message"),
                "missing or empty",
            ));
        }
        if body["details"] != serde_json::json!([]) {
            return Err(Error::mismatch(
                format!("{what} details"),
                "[]",
                &body["details"],
            ));
        }
        Ok(reply)
    }

    /// Checks the header `name` equals `expected`.
    ///
    /// # Errors
    ///
    /// [`Error::Mismatch`] otherwise.
    pub fn expect_header(&self, name: &str, expected: &str) -> Result<()> {
        match self.header(name) {
            Some(value) if value == expected => Ok(()),
            other => Err(Error::mismatch(
                format!("header {name} of {}", self.url),
                expected,
                format!("{other:?}"),
            )),
        }
    }
}

/// An HTTP client bound to one server.
#[derive(Clone, Debug)]
pub struct HttpClient {
    address: SocketAddr,
    base: String,
    client: reqwest::Client,
}

impl HttpClient {
    /// A client for the server at `address` (no proxy, HTTP/1.1).
    ///
    /// # Errors
    ///
    /// [`Error::Http`] if the client cannot be built.
    pub fn new(address: SocketAddr) -> Result<Self> {
        let base = format!("http://{address}");
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|source| Error::Http {
                url: base.clone(),
                source,
            })?;
        Ok(HttpClient {
            address,
            base,
            client,
        })
    }

    /// The server address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The full URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, url: String, request: reqwest::RequestBuilder) -> Result<Reply> {
        let response = request.send().await.map_err(|source| Error::Http {
            url: url.clone(),
            source,
        })?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response.bytes().await.map_err(|source| Error::Http {
            url: url.clone(),
            source,
        })?;
        Ok(Reply {
            url,
            status,
            headers,
            body,
        })
    }

    /// `GET path`.
    ///
    /// # Errors
    ///
    /// [`Error::Http`] on a transport failure (any status is a success here).
    pub async fn get(&self, path: &str) -> Result<Reply> {
        let url = self.url(path);
        self.send(url.clone(), self.client.get(&url)).await
    }

    /// `POST path` with `body` and `Content-Type: content_type`.
    ///
    /// # Errors
    ///
    /// [`Error::Http`] on a transport failure.
    pub async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Result<Reply> {
        let url = self.url(path);
        let request = self
            .client
            .post(&url)
            .header("content-type", content_type)
            .body(body);
        self.send(url.clone(), request).await
    }

    /// `POST /api/v2/log/entries` with a JSON body.
    ///
    /// # Errors
    ///
    /// [`Error::Http`] on a transport failure.
    pub async fn post_entry(&self, body: impl Into<reqwest::Body>) -> Result<Reply> {
        self.post(ENTRIES_PATH, "application/json", body).await
    }

    /// `POST /api/v2/log/entries` with a JSON body and one extra header (e.g. `X-Forwarded-For`).
    ///
    /// # Errors
    ///
    /// [`Error::Http`] on a transport failure.
    pub async fn post_entry_with_header(
        &self,
        body: impl Into<reqwest::Body>,
        name: &str,
        value: &str,
    ) -> Result<Reply> {
        let url = self.url(ENTRIES_PATH);
        let request = self
            .client
            .post(&url)
            .header("content-type", "application/json")
            .header(name, value)
            .body(body);
        self.send(url.clone(), request).await
    }

    /// Submits `submission` as protojson and decodes the 201 answer.
    ///
    /// # Errors
    ///
    /// [`Error::Status`] for any status but 201; [`Error::Mismatch`] for a wrong content type;
    /// decoding errors from [`LogEntry::from_protojson`].
    pub async fn create_entry(&self, submission: &Submission) -> Result<LogEntry> {
        let reply = self
            .post_entry(submission.request_json_text())
            .await?
            .expect_status(201)?;
        reply.expect_header("content-type", "application/json")?;
        LogEntry::from_protojson(&reply.json()?)
    }

    /// `GET /api/v2/checkpoint`, checking the 200 status and the text/no-cache headers.
    ///
    /// # Errors
    ///
    /// [`Error::Status`] or [`Error::Mismatch`].
    pub async fn checkpoint(&self) -> Result<Bytes> {
        let reply = self.get(CHECKPOINT_PATH).await?.expect_status(200)?;
        reply.expect_header("cache-control", "no-cache")?;
        match reply.header("content-type") {
            Some(t) if t.starts_with("text/plain") => Ok(reply.body),
            other => Err(Error::mismatch(
                "checkpoint content-type",
                "text/plain",
                format!("{other:?}"),
            )),
        }
    }

    /// `GET /api/v2/<path>` for a tile or bundle path (`tile/...`), checking the 200 status and
    /// the immutable octet-stream headers.
    ///
    /// # Errors
    ///
    /// [`Error::Status`] or [`Error::Mismatch`].
    pub async fn tile(&self, path: &str) -> Result<Bytes> {
        let reply = self
            .get(&format!("/api/v2/{path}"))
            .await?
            .expect_status(200)?;
        reply.expect_header("content-type", "application/octet-stream")?;
        reply.expect_header("cache-control", "max-age=604800,immutable")?;
        Ok(reply.body)
    }

    /// Sends `GET <raw_path>` over a plain socket, byte for byte, so dot segments and odd
    /// encodings reach the server unnormalised.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] on a socket failure, [`Error::Malformed`] for an unreadable response.
    pub async fn raw_get(&self, raw_path: &str) -> Result<Reply> {
        raw_request(self.address, "GET", raw_path, &[]).await
    }
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`), read to the end.
///
/// # Errors
///
/// [`Error::Io`] on a socket failure or timeout, [`Error::Malformed`] for an unreadable response.
pub async fn raw_request(
    address: SocketAddr,
    method: &str,
    raw_path: &str,
    body: &[u8],
) -> Result<Reply> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        let head = format!(
            "{method} {raw_path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            Error::io(
                format!("raw {method} {raw_path}"),
                std::io::Error::from(std::io::ErrorKind::TimedOut),
            )
        })?
        .map_err(|source| Error::io(format!("raw {method} {raw_path}"), source))?;
    parse_http_response(raw_path, &response)
}

/// Parses a complete HTTP/1.1 response read from a raw socket (for tests that write requests
/// by hand, e.g. slowly or with oversized headers). `url` names it in errors.
///
/// # Errors
///
/// [`Error::Malformed`] for an unreadable response.
pub fn parse_raw_response(url: &str, response: &[u8]) -> Result<Reply> {
    parse_http_response(url, response)
}

fn parse_http_response(url: &str, response: &[u8]) -> Result<Reply> {
    let malformed = |reason: &str| Error::malformed(format!("response to {url}"), reason);
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| malformed("no end of headers"))?;
    let head = std::str::from_utf8(&response[..split]).map_err(|_| malformed("non-UTF-8 head"))?;
    let raw_body = &response[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| malformed("empty"))?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| malformed("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(raw_body).ok_or_else(|| malformed("bad chunked body"))?
    } else {
        raw_body.to_vec()
    };
    Ok(Reply {
        url: url.to_string(),
        status,
        headers,
        body: Bytes::from(body),
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// A gRPC client bound to one server.
#[derive(Clone, Debug)]
pub struct GrpcClient {
    channel: Channel,
}

impl GrpcClient {
    /// Connects to `http://<address>`.
    ///
    /// # Errors
    ///
    /// [`Error::GrpcTransport`] if the connection fails.
    pub async fn connect(address: SocketAddr) -> Result<Self> {
        let channel = Channel::from_shared(format!("http://{address}"))
            .map_err(|e| Error::malformed("gRPC endpoint", e.to_string()))?
            .connect_timeout(REQUEST_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .connect()
            .await?;
        Ok(GrpcClient { channel })
    }

    /// The generated client over this connection (cheap; one per call).
    pub fn rekor(&self) -> RekorClient<Channel> {
        RekorClient::new(self.channel.clone()).max_decoding_message_size(64 * 1024 * 1024)
    }

    /// `CreateEntry`, returning the raw status on failure so tests can check codes.
    ///
    /// # Errors
    ///
    /// The call's [`tonic::Status`].
    pub async fn create_entry(
        &self,
        request: CreateEntryRequest,
    ) -> std::result::Result<tonic::Response<TransparencyLogEntry>, tonic::Status> {
        self.rekor().create_entry(request).await
    }

    /// Submits `submission` and decodes the answer.
    ///
    /// # Errors
    ///
    /// [`Error::Grpc`] for a failed call; decoding errors from [`LogEntry::from_proto`].
    pub async fn create_entry_for(&self, submission: &Submission) -> Result<LogEntry> {
        let response = self.create_entry(submission.request_proto()?).await?;
        LogEntry::from_proto(response.into_inner())
    }

    /// `CreateEntry` with `message` as the raw request bytes (any bytes, valid or not).
    ///
    /// # Errors
    ///
    /// The call's [`tonic::Status`].
    pub async fn create_entry_raw(
        &self,
        message: Vec<u8>,
    ) -> std::result::Result<Vec<u8>, tonic::Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(CREATE_ENTRY_METHOD);
        let response = grpc
            .unary(tonic::Request::new(message), path, RawCodec)
            .await?;
        Ok(response.into_inner())
    }
}

/// A codec that sends and receives message bytes as they are.
#[derive(Clone, Copy, Debug, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Self::Item,
        dst: &mut EncodeBuf<'_>,
    ) -> std::result::Result<(), Self::Error> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut DecodeBuf<'_>,
    ) -> std::result::Result<Option<Self::Item>, Self::Error> {
        let len = src.remaining();
        Ok(Some(src.copy_to_bytes(len).to_vec()))
    }
}

/// The inclusion proof of a [`LogEntry`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proof {
    /// `inclusionProof.logIndex`.
    pub log_index: u64,
    /// `inclusionProof.rootHash`.
    pub root_hash: Vec<u8>,
    /// `inclusionProof.treeSize`.
    pub tree_size: u64,
    /// `inclusionProof.hashes`, leaf to root.
    pub hashes: Vec<Vec<u8>>,
    /// `inclusionProof.checkpoint.envelope`: the signed checkpoint note.
    pub checkpoint: String,
}

/// A `TransparencyLogEntry`, the same whichever transport it came over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// `logIndex`.
    pub log_index: u64,
    /// `logId.keyId`.
    pub log_id: Vec<u8>,
    /// `kindVersion.kind`.
    pub kind: String,
    /// `kindVersion.version`.
    pub version: String,
    /// `integratedTime`.
    pub integrated_time: i64,
    /// Whether `inclusionPromise` was present.
    pub has_inclusion_promise: bool,
    /// `inclusionProof`.
    pub proof: Option<Proof>,
    /// `canonicalizedBody`.
    pub canonicalized_body: Vec<u8>,
}

fn object<'a>(
    value: &'a Value,
    what: &str,
    allowed: &[&str],
) -> Result<&'a serde_json::Map<String, Value>> {
    let map = value
        .as_object()
        .ok_or_else(|| Error::malformed(what, "not a JSON object"))?;
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(Error::malformed(
            what,
            format!("unexpected field {unknown:?}"),
        ));
    }
    Ok(map)
}

/// A protojson int64: a decimal string; absent means 0 (protojson omits defaults).
fn int64(map: &serde_json::Map<String, Value>, key: &str, what: &str) -> Result<i64> {
    match map.get(key) {
        None => Ok(0),
        Some(Value::String(text)) => text.parse().map_err(|_| {
            Error::malformed(format!("{what}.{key}"), format!("{text:?} is not an int64"))
        }),
        Some(other) => Err(Error::malformed(
            format!("{what}.{key}"),
            format!("protojson int64 must be a string, got {other}"),
        )),
    }
}

fn uint(map: &serde_json::Map<String, Value>, key: &str, what: &str) -> Result<u64> {
    let value = int64(map, key, what)?;
    u64::try_from(value).map_err(|_| Error::malformed(format!("{what}.{key}"), "negative"))
}

/// Protojson bytes: standard padded base64 (what protojson writes); absent means empty.
fn bytes(map: &serde_json::Map<String, Value>, key: &str, what: &str) -> Result<Vec<u8>> {
    match map.get(key) {
        None => Ok(Vec::new()),
        Some(Value::String(text)) => STANDARD
            .decode(text)
            .map_err(|e| Error::malformed(format!("{what}.{key}"), e.to_string())),
        Some(other) => Err(Error::malformed(
            format!("{what}.{key}"),
            format!("protojson bytes must be a base64 string, got {other}"),
        )),
    }
}

fn string(map: &serde_json::Map<String, Value>, key: &str, what: &str) -> Result<String> {
    match map.get(key) {
        None => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(other) => Err(Error::malformed(
            format!("{what}.{key}"),
            format!("expected a string, got {other}"),
        )),
    }
}

impl LogEntry {
    /// Decodes the protojson the HTTP API returns, strictly: camelCase names only, int64 as
    /// strings, bytes as standard base64, no unknown fields.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] naming the offending field.
    pub fn from_protojson(value: &Value) -> Result<Self> {
        let top = object(
            value,
            "TransparencyLogEntry",
            &[
                "logIndex",
                "logId",
                "kindVersion",
                "integratedTime",
                "inclusionPromise",
                "inclusionProof",
                "canonicalizedBody",
            ],
        )?;
        let log_id = match top.get("logId") {
            Some(v) => bytes(object(v, "logId", &["keyId"])?, "keyId", "logId")?,
            None => Vec::new(),
        };
        let (kind, version) = match top.get("kindVersion") {
            Some(v) => {
                let kv = object(v, "kindVersion", &["kind", "version"])?;
                (
                    string(kv, "kind", "kindVersion")?,
                    string(kv, "version", "kindVersion")?,
                )
            }
            None => (String::new(), String::new()),
        };
        let proof = match top.get("inclusionProof") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let what = "inclusionProof";
                let p = object(
                    v,
                    what,
                    &["logIndex", "rootHash", "treeSize", "hashes", "checkpoint"],
                )?;
                let hashes = match p.get("hashes") {
                    None => Vec::new(),
                    Some(Value::Array(items)) => items
                        .iter()
                        .map(|item| match item {
                            Value::String(text) => STANDARD.decode(text).map_err(|e| {
                                Error::malformed("inclusionProof.hashes[]", e.to_string())
                            }),
                            other => Err(Error::malformed(
                                "inclusionProof.hashes[]",
                                format!("expected base64, got {other}"),
                            )),
                        })
                        .collect::<Result<Vec<_>>>()?,
                    Some(other) => {
                        return Err(Error::malformed(
                            "inclusionProof.hashes",
                            format!("expected an array, got {other}"),
                        ));
                    }
                };
                let checkpoint = match p.get("checkpoint") {
                    Some(c) => string(
                        object(c, "inclusionProof.checkpoint", &["envelope"])?,
                        "envelope",
                        "inclusionProof.checkpoint",
                    )?,
                    None => String::new(),
                };
                Some(Proof {
                    log_index: uint(p, "logIndex", what)?,
                    root_hash: bytes(p, "rootHash", what)?,
                    tree_size: uint(p, "treeSize", what)?,
                    hashes,
                    checkpoint,
                })
            }
        };
        Ok(LogEntry {
            log_index: uint(top, "logIndex", "TransparencyLogEntry")?,
            log_id,
            kind,
            version,
            integrated_time: int64(top, "integratedTime", "TransparencyLogEntry")?,
            has_inclusion_promise: !matches!(top.get("inclusionPromise"), None | Some(Value::Null)),
            proof,
            canonicalized_body: bytes(top, "canonicalizedBody", "TransparencyLogEntry")?,
        })
    }

    /// Converts the prost message the gRPC API returns.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] for a negative index or size.
    pub fn from_proto(entry: TransparencyLogEntry) -> Result<Self> {
        let unsigned = |value: i64, what: &str| {
            u64::try_from(value).map_err(|_| Error::malformed(what, format!("negative: {value}")))
        };
        let proof = match entry.inclusion_proof {
            Some(p) => Some(Proof {
                log_index: unsigned(p.log_index, "inclusionProof.logIndex")?,
                root_hash: p.root_hash,
                tree_size: unsigned(p.tree_size, "inclusionProof.treeSize")?,
                hashes: p.hashes,
                checkpoint: p.checkpoint.map(|c| c.envelope).unwrap_or_default(),
            }),
            None => None,
        };
        let (kind, version) = entry
            .kind_version
            .map(|kv| (kv.kind, kv.version))
            .unwrap_or_default();
        Ok(LogEntry {
            log_index: unsigned(entry.log_index, "logIndex")?,
            log_id: entry.log_id.map(|id| id.key_id).unwrap_or_default(),
            kind,
            version,
            integrated_time: entry.integrated_time,
            has_inclusion_promise: entry.inclusion_promise.is_some(),
            proof,
            canonicalized_body: entry.canonicalized_body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protojson_entries_decode_strictly() {
        let value = serde_json::json!({
            "logIndex": "3",
            "logId": {"keyId": "AAEC"},
            "kindVersion": {"kind": "hashedrekord", "version": "0.0.2"},
            "inclusionProof": {
                "logIndex": "3", "rootHash": "AAEC", "treeSize": "4",
                "hashes": ["AQ==", "Ag=="], "checkpoint": {"envelope": "note"}
            },
            "canonicalizedBody": "e30="
        });
        let entry = LogEntry::from_protojson(&value).unwrap();
        assert_eq!(entry.log_index, 3);
        assert_eq!(entry.log_id, [0, 1, 2]);
        let proof = entry.proof.unwrap();
        assert_eq!(proof.tree_size, 4);
        assert_eq!(proof.hashes, [vec![1], vec![2]]);
        assert_eq!(entry.canonicalized_body, b"{}");

        let mut number = value.clone();
        number["logIndex"] = serde_json::json!(3);
        assert!(LogEntry::from_protojson(&number).is_err());
        let mut unknown = value.clone();
        unknown["bogus"] = serde_json::json!(1);
        assert!(LogEntry::from_protojson(&unknown).is_err());
        let mut snake = value;
        snake["log_index"] = snake["logIndex"].take();
        assert!(LogEntry::from_protojson(&snake).is_err());
    }

    #[test]
    fn raw_responses_parse_with_and_without_chunking() {
        let plain = b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\n\r\nnope";
        let reply = parse_http_response("/x", plain).unwrap();
        assert_eq!(reply.status, 404);
        assert_eq!(reply.header("Content-Type"), Some("text/plain"));
        assert_eq!(reply.body, "nope");
        let chunked =
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_http_response("/y", chunked).unwrap().body, "abcde");
        assert!(parse_http_response("/z", b"garbage").is_err());
    }
}
