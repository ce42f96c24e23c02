//! `awskms://` keys: an asymmetric AWS KMS key (`KeyUsage` `SIGN_VERIFY`) signs checkpoints.
//!
//! # URI
//!
//! The form sigstore and rekor-tiles use:
//!
//! - `awskms:///KEY`: the regional endpoint `https://kms.REGION.amazonaws.com`
//!   (`.amazonaws.com.cn` for `cn-*` regions);
//! - `awskms://HOST[:PORT]/KEY`: an explicit endpoint (a VPC endpoint, LocalStack, moto). HTTPS,
//!   except plain HTTP for a loopback host (`127.0.0.0/8`, `[::1]`, `localhost`), where
//!   emulators listen.
//!
//! `KEY` is a key ID (`1234abcd-12ab-34cd-56ef-1234567890ab`, `mrk-...`), a key ARN, an alias
//! (`alias/NAME`) or an alias ARN.
//!
//! # Environment
//!
//! Credentials come from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and, for temporary
//! credentials, `AWS_SESSION_TOKEN`. The region is the ARN's when the key is named by ARN, else
//! `AWS_REGION`, else `AWS_DEFAULT_REGION`. Both are read once, when the key is opened. Profiles,
//! instance metadata, SSO and web identity are not consulted.
//!
//! # Protocol
//!
//! KMS's JSON protocol (`POST /`, `X-Amz-Target: TrentService.GetPublicKey` and
//! `TrentService.Sign`, `application/x-amz-json-1.1`), signed with AWS Signature Version 4 by
//! the `sigv4` module here: the whole AWS SDK would add a second HTTP stack and a long build for
//! two calls. Each request has a 10 s bound ([`REQUEST_TIMEOUT`]) and an error names the
//! operation, the endpoint, the HTTP status and KMS's `__type` and message.
//!
//! Messages of up to [`MAX_RAW_MESSAGE`] bytes (every checkpoint: origin, size and root hash)
//! are sent whole (`MessageType` `RAW`) and KMS hashes them, as it requires for Ed25519. A longer
//! message is hashed here and sent as `DIGEST` for ECDSA, and refused for Ed25519.
//!
//! [`ExternalSigner::sign`] blocks, and may be called on a Tokio worker, so every request runs
//! on a short-lived thread of its own with reqwest's blocking client; no runtime is entered.

use std::fmt;
use std::io::Read as _;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Datelike as _, Timelike as _, Utc};
use rekor_note::ExternalSigner;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256, Sha384};

use super::KmsError;

/// The scheme, as [`KmsError`] names it.
const SCHEME: &str = "awskms";
/// The longest message KMS signs whole (`MessageType` `RAW`).
pub const MAX_RAW_MESSAGE: usize = 4096;
/// Bound on one KMS request, connecting and reading the answer included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on opening the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest KMS answer read (a public key or a signature is well under 1 KiB).
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;
/// The longest key ID, ARN or alias KMS accepts.
const MAX_KEY_ID_LEN: usize = 2048;
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// An AWS KMS signing key, opened by [`AwsKmsKey::open`].
#[derive(Debug)]
pub struct AwsKmsKey {
    kms: Kms,
    kind: KeyKind,
    public_key_der: Vec<u8>,
}

/// One key's KMS endpoint, region and credentials.
struct Kms {
    key_id: String,
    region: String,
    endpoint: Endpoint,
    credentials: Credentials,
    client: reqwest::blocking::Client,
}

impl fmt::Debug for Kms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kms")
            .field("key_id", &self.key_id)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint.url)
            .finish_non_exhaustive()
    }
}

impl AwsKmsKey {
    /// Opens the key `uri` names (see the [module docs](self)) and reads its public key.
    ///
    /// # Errors
    ///
    /// [`KmsError::InvalidUri`] for a malformed URI; [`KmsError::Backend`] when credentials or
    /// the region are missing, KMS cannot be reached or refuses (the reason carries the HTTP
    /// status and KMS's error type and message), or the key is not a signing key;
    /// [`KmsError::UnsupportedKey`] for a key spec other than `ECC_NIST_P256`, `ECC_NIST_P384`
    /// or `ECC_NIST_EDWARDS25519`.
    pub fn open(uri: &str) -> Result<Self, KmsError> {
        let parsed = KeyUri::parse(uri)?;
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let credentials = Credentials::from_env(env)?;
        let region = region(&parsed.key_id, env)?;
        let endpoint = Endpoint::new(parsed.host.as_deref(), &region)?;
        let client = on_own_thread(|| {
            reqwest::blocking::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .connect_timeout(CONNECT_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
        })
        .map_err(backend)?
        .map_err(|e| backend(format!("building the HTTP client: {}", error_chain(&e))))?;
        let kms = Kms {
            key_id: parsed.key_id,
            region,
            endpoint,
            credentials,
            client,
        };
        let answer = kms
            .call("GetPublicKey", &json!({ "KeyId": kms.key_id }))
            .map_err(backend)?;
        let (kind, public_key_der) = parse_public_key(&answer)?;
        Ok(AwsKmsKey {
            kms,
            kind,
            public_key_der,
        })
    }
}

impl Kms {
    /// Sends one signed KMS request and returns the JSON answer.
    fn call(&self, operation: &str, body: &Value) -> Result<Value, String> {
        let body = serde_json::to_vec(body).map_err(|e| format!("encoding {operation}: {e}"))?;
        let target = format!("TrentService.{operation}");
        let amz_date = amz_date(SystemTime::now())?;
        let headers = sigv4::sign(&sigv4::Request {
            credentials: &self.credentials,
            region: &self.region,
            host: &self.endpoint.host,
            amz_date: &amz_date,
            target: &target,
            body: &body,
        });
        let what = || {
            format!(
                "KMS {operation} of {} at {}",
                self.key_id, self.endpoint.url
            )
        };
        let (status, answer) = on_own_thread(|| {
            let mut request = self
                .client
                .post(self.endpoint.url.as_str())
                .header("content-type", CONTENT_TYPE)
                .header("host", self.endpoint.host.as_str())
                .header("x-amz-target", target.as_str())
                .body(body);
            for (name, value) in &headers {
                request = request.header(*name, value.as_str());
            }
            let response = request.send().map_err(|e| error_chain(&e))?;
            let status = response.status();
            let mut answer = Vec::new();
            response
                .take(MAX_RESPONSE_BYTES)
                .read_to_end(&mut answer)
                .map_err(|e| format!("reading the answer: {e}"))?;
            Ok::<_, String>((status, answer))
        })
        .and_then(|result| result)
        .map_err(|e| format!("{}: {e}", what()))?;
        if !status.is_success() {
            return Err(format!(
                "{}: HTTP {status}: {}",
                what(),
                describe_error(&answer)
            ));
        }
        serde_json::from_slice(&answer).map_err(|e| {
            format!(
                "{}: the answer is not JSON ({e}): {}",
                what(),
                String::from_utf8_lossy(&answer)
            )
        })
    }
}

impl ExternalSigner for AwsKmsKey {
    fn public_key_der(&self) -> &[u8] {
        &self.public_key_der
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let (message_type, payload) = self.kind.payload(message)?;
        let algorithm = self.kind.signing_algorithm();
        let key_id = &self.kms.key_id;
        let answer = self.kms.call(
            "Sign",
            &json!({
                "KeyId": key_id,
                "Message": STANDARD.encode(payload),
                "MessageType": message_type,
                "SigningAlgorithm": algorithm,
            }),
        )?;
        let signature = answer
            .get("Signature")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("KMS Sign of {key_id}: no Signature in the answer"))
            .and_then(|b64| {
                STANDARD
                    .decode(b64)
                    .map_err(|e| format!("KMS Sign of {key_id}: Signature is not base64: {e}"))
            })?;
        if self.kind == KeyKind::Ed25519 && signature.len() != 64 {
            return Err(format!(
                "KMS Sign of {key_id}: an Ed25519 signature of {} bytes",
                signature.len()
            ));
        }
        Ok(signature)
    }
}

/// The key types a log signs with, by their KMS `KeySpec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    /// `ECC_NIST_P256`, signed with `ECDSA_SHA_256`.
    P256,
    /// `ECC_NIST_P384`, signed with `ECDSA_SHA_384`.
    P384,
    /// `ECC_NIST_EDWARDS25519`, signed with `ED25519_SHA_512` (pure Ed25519).
    Ed25519,
}

impl KeyKind {
    fn from_key_spec(spec: &str) -> Option<Self> {
        match spec {
            "ECC_NIST_P256" => Some(Self::P256),
            "ECC_NIST_P384" => Some(Self::P384),
            "ECC_NIST_EDWARDS25519" => Some(Self::Ed25519),
            _ => None,
        }
    }

    fn signing_algorithm(self) -> &'static str {
        match self {
            Self::P256 => "ECDSA_SHA_256",
            Self::P384 => "ECDSA_SHA_384",
            Self::Ed25519 => "ED25519_SHA_512",
        }
    }

    /// `MessageType` and `Message` for signing `message`: the message itself up to
    /// [`MAX_RAW_MESSAGE`] bytes, else its digest (ECDSA only).
    fn payload(self, message: &[u8]) -> Result<(&'static str, Vec<u8>), String> {
        if message.len() <= MAX_RAW_MESSAGE {
            return Ok(("RAW", message.to_vec()));
        }
        match self {
            Self::P256 => Ok(("DIGEST", Sha256::digest(message).to_vec())),
            Self::P384 => Ok(("DIGEST", Sha384::digest(message).to_vec())),
            Self::Ed25519 => Err(format!(
                "a message of {} bytes: KMS signs at most {MAX_RAW_MESSAGE} bytes with Ed25519",
                message.len()
            )),
        }
    }
}

/// Reads `KeySpec`, `KeyUsage` and `PublicKey` from a `GetPublicKey` answer.
fn parse_public_key(answer: &Value) -> Result<(KeyKind, Vec<u8>), KmsError> {
    let field = |name: &str| answer.get(name).and_then(Value::as_str);
    if let Some(usage) = field("KeyUsage").filter(|u| *u != "SIGN_VERIFY") {
        return Err(backend(format!(
            "the key's KeyUsage is {usage}, not SIGN_VERIFY"
        )));
    }
    // `CustomerMasterKeySpec` is the deprecated name of the same field (moto sends only it).
    let spec = field("KeySpec")
        .or_else(|| field("CustomerMasterKeySpec"))
        .ok_or_else(|| backend("GetPublicKey answered no KeySpec".to_owned()))?;
    let kind = KeyKind::from_key_spec(spec).ok_or_else(|| KmsError::UnsupportedKey {
        scheme: SCHEME,
        key_type: spec.to_owned(),
    })?;
    let der = field("PublicKey")
        .ok_or_else(|| backend("GetPublicKey answered no PublicKey".to_owned()))
        .and_then(|b64| {
            STANDARD
                .decode(b64)
                .map_err(|e| backend(format!("GetPublicKey's PublicKey is not base64: {e}")))
        })?;
    Ok((kind, der))
}

/// `awskms://[HOST]/KEY`, split.
#[derive(Debug, PartialEq, Eq)]
struct KeyUri {
    /// `HOST[:PORT]`, when given.
    host: Option<String>,
    key_id: String,
}

impl KeyUri {
    fn parse(uri: &str) -> Result<Self, KmsError> {
        let rest = uri
            .strip_prefix("awskms://")
            .ok_or_else(|| invalid("it does not start with awskms://".to_owned()))?;
        let (host, key_id) = rest.split_once('/').ok_or_else(|| {
            invalid("no key: use awskms:///KEY or awskms://HOST:PORT/KEY".to_owned())
        })?;
        if host.contains(['@', '?', '#']) || !host.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(format!("malformed endpoint {host:?}")));
        }
        check_key_id(key_id)?;
        Ok(KeyUri {
            host: (!host.is_empty()).then(|| host.to_owned()),
            key_id: key_id.to_owned(),
        })
    }
}

fn check_key_id(key_id: &str) -> Result<(), KmsError> {
    if key_id.is_empty() {
        return Err(invalid(
            "no key: name a key ID, key ARN, alias/NAME or alias ARN".to_owned(),
        ));
    }
    if key_id.len() > MAX_KEY_ID_LEN {
        return Err(invalid(format!(
            "the key is {} bytes long, more than {MAX_KEY_ID_LEN}",
            key_id.len()
        )));
    }
    if key_id.contains(['?', '#']) || !key_id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(format!("malformed key {key_id:?}")));
    }
    if key_id.starts_with("arn:") && arn_region(key_id).is_none() {
        return Err(invalid(format!(
            "malformed ARN {key_id:?}: expected arn:PARTITION:kms:REGION:ACCOUNT:key/ID or .../alias/NAME"
        )));
    }
    if key_id == "alias/" {
        return Err(invalid("an alias needs a name: alias/NAME".to_owned()));
    }
    Ok(())
}

/// The region of a KMS key or alias ARN.
fn arn_region(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("kms"), Some(region), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let named = resource
        .strip_prefix("key/")
        .or_else(|| resource.strip_prefix("alias/"))
        .is_some_and(|name| !name.is_empty());
    (!partition.is_empty() && is_region(region) && !account.is_empty() && named).then_some(region)
}

fn is_region(region: &str) -> bool {
    !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The region to sign for: the ARN's, else `AWS_REGION`, else `AWS_DEFAULT_REGION`.
fn region(key_id: &str, env: impl Fn(&str) -> Option<String>) -> Result<String, KmsError> {
    let region = arn_region(key_id)
        .map(str::to_owned)
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .ok_or_else(|| {
            backend(
                "no region: set AWS_REGION or AWS_DEFAULT_REGION, or name the key by its ARN"
                    .to_owned(),
            )
        })?;
    if !is_region(&region) {
        return Err(backend(format!("malformed region {region:?}")));
    }
    Ok(region)
}

/// Where requests go: the URL and the `Host` header the signature covers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    url: String,
    host: String,
}

impl Endpoint {
    fn new(host: Option<&str>, region: &str) -> Result<Self, KmsError> {
        let url = match host {
            None if region.starts_with("cn-") => format!("https://kms.{region}.amazonaws.com.cn/"),
            None => format!("https://kms.{region}.amazonaws.com/"),
            Some(host) if is_loopback(host) => format!("http://{host}/"),
            Some(host) => format!("https://{host}/"),
        };
        let parsed = reqwest::Url::parse(&url)
            .map_err(|e| invalid(format!("malformed endpoint {url}: {e}")))?;
        let name = parsed
            .host_str()
            .ok_or_else(|| invalid(format!("no host in endpoint {url}")))?;
        // The `Host` header as HTTP sends it: the port only when it is not the scheme's default.
        let host = match parsed.port() {
            Some(port) => format!("{name}:{port}"),
            None => name.to_owned(),
        };
        Ok(Endpoint {
            url: parsed.to_string(),
            host,
        })
    }
}

/// Whether `host` (`NAME`, `NAME:PORT`, `[V6]:PORT`) is a loopback address.
fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or(v6, |(address, _)| address),
        None => host.split_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Static credentials from the environment.
struct Credentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl Credentials {
    fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, KmsError> {
        match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            (Some(access_key_id), Some(secret_access_key)) => Ok(Credentials {
                access_key_id,
                secret_access_key,
                session_token: env("AWS_SESSION_TOKEN"),
            }),
            _ => Err(backend(
                "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and \
                 AWS_SESSION_TOKEN for temporary credentials)"
                    .to_owned(),
            )),
        }
    }
}

/// AWS Signature Version 4 for KMS's `POST /` JSON requests
/// (<https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html>).
mod sigv4 {
    use aws_lc_rs::hmac;
    use sha2::{Digest as _, Sha256};

    use super::{CONTENT_TYPE, Credentials};

    const SERVICE: &str = "kms";

    /// What one request signature covers.
    pub(super) struct Request<'a> {
        pub(super) credentials: &'a Credentials,
        pub(super) region: &'a str,
        /// The `Host` header.
        pub(super) host: &'a str,
        /// `YYYYMMDDTHHMMSSZ`, sent as `X-Amz-Date`.
        pub(super) amz_date: &'a str,
        /// The `X-Amz-Target` header.
        pub(super) target: &'a str,
        pub(super) body: &'a [u8],
    }

    /// The headers to add beside `Content-Type`, `Host` and `X-Amz-Target`: `X-Amz-Date`,
    /// `X-Amz-Security-Token` (temporary credentials) and `Authorization`.
    pub(super) fn sign(request: &Request<'_>) -> Vec<(&'static str, String)> {
        let token = request.credentials.session_token.as_deref();
        // Sorted by name, as the canonical request lists them.
        let mut signed: Vec<(&str, &str)> = vec![
            ("content-type", CONTENT_TYPE),
            ("host", request.host),
            ("x-amz-date", request.amz_date),
        ];
        if let Some(token) = token {
            signed.push(("x-amz-security-token", token));
        }
        signed.push(("x-amz-target", request.target));
        let names = signed
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(";");
        let mut canonical = String::from("POST\n/\n\n");
        for (name, value) in &signed {
            canonical.push_str(name);
            canonical.push(':');
            canonical.push_str(value.trim());
            canonical.push('\n');
        }
        canonical.push('\n');
        canonical.push_str(&names);
        canonical.push('\n');
        canonical.push_str(&hex::encode(Sha256::digest(request.body)));

        let date = request.amz_date.get(..8).unwrap_or(request.amz_date);
        let scope = format!("{date}/{}/{SERVICE}/aws4_request", request.region);
        let signature = signature(
            &request.credentials.secret_access_key,
            request.amz_date,
            &scope,
            &canonical,
        );
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={names}, Signature={signature}",
            request.credentials.access_key_id
        );
        let mut headers = vec![("x-amz-date", request.amz_date.to_owned())];
        if let Some(token) = token {
            headers.push(("x-amz-security-token", token.to_owned()));
        }
        headers.push(("authorization", authorization));
        headers
    }

    /// The hex signature of `canonical_request` for the credential scope
    /// `DATE/REGION/SERVICE/aws4_request`.
    pub(super) fn signature(
        secret: &str,
        amz_date: &str,
        scope: &str,
        canonical_request: &str,
    ) -> String {
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical_request.as_bytes()))
        );
        let mut key = format!("AWS4{secret}").into_bytes();
        for part in scope.split('/') {
            key = mac(&key, part.as_bytes());
        }
        hex::encode(mac(&key, string_to_sign.as_bytes()))
    }

    fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
            .as_ref()
            .to_vec()
    }
}

/// `YYYYMMDDTHHMMSSZ` (UTC) for `X-Amz-Date`.
fn amz_date(now: SystemTime) -> Result<String, String> {
    let seconds = now
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
        .ok_or_else(|| "the system clock is before 1970 or out of range".to_owned())?;
    Ok(format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        seconds.year(),
        seconds.month(),
        seconds.day(),
        seconds.hour(),
        seconds.minute(),
        seconds.second()
    ))
}

/// KMS's error answer as `TYPE: message` (`{"__type": "...#NotFoundException", "message": ..}`).
fn describe_error(body: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return format!("{:?}", String::from_utf8_lossy(body));
    };
    let field = |name: &str| value.get(name).and_then(Value::as_str);
    let kind = field("__type").map(|t| t.rsplit_once('#').map_or(t, |(_, name)| name));
    let message = field("message").or_else(|| field("Message"));
    match (kind, message) {
        (Some(kind), Some(message)) => format!("{kind}: {message}"),
        (Some(kind), None) => kind.to_owned(),
        (None, Some(message)) => message.to_owned(),
        (None, None) => value.to_string(),
    }
}

/// Runs `f` on a thread of its own and waits for it: reqwest's blocking client must not run
/// inside a Tokio runtime, and the caller may be on one.
fn on_own_thread<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T, String> {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("awskms".to_owned())
            .spawn_scoped(scope, f)
            .map_err(|e| format!("starting the KMS request thread: {e}"))?;
        handle
            .join()
            .map_err(|_| "the KMS request thread panicked".to_owned())
    })
}

/// An error with its sources, `outer: inner: ...` (reqwest's own text omits the cause).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn invalid(reason: String) -> KmsError {
    KmsError::InvalidUri {
        scheme: SCHEME,
        reason,
    }
}

fn backend(reason: String) -> KmsError {
    KmsError::Backend {
        scheme: SCHEME,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn uris_name_an_endpoint_and_a_key() {
        let cases = [
            (
                "awskms:///1234abcd-12ab-34cd-56ef-1234567890ab",
                None,
                "1234abcd-12ab-34cd-56ef-1234567890ab",
            ),
            ("awskms:///alias/rekor-log", None, "alias/rekor-log"),
            (
                "awskms:///arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                None,
                "arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            ),
            (
                "awskms:///arn:aws:kms:us-east-2:111122223333:alias/ExampleAlias",
                None,
                "arn:aws:kms:us-east-2:111122223333:alias/ExampleAlias",
            ),
            (
                "awskms://127.0.0.1:5000/mrk-1234abcd",
                Some("127.0.0.1:5000"),
                "mrk-1234abcd",
            ),
            (
                "awskms://vpce-1.kms.eu-west-1.vpce.amazonaws.com/alias/a/b",
                Some("vpce-1.kms.eu-west-1.vpce.amazonaws.com"),
                "alias/a/b",
            ),
        ];
        for (uri, host, key_id) in cases {
            assert_eq!(
                KeyUri::parse(uri).unwrap(),
                KeyUri {
                    host: host.map(str::to_owned),
                    key_id: key_id.to_owned()
                },
                "{uri}"
            );
        }
    }

    #[test]
    fn malformed_uris_are_refused() {
        for uri in [
            "awskms://",
            "awskms:///",
            "awskms://localhost:4566",
            "awskms://localhost:4566/",
            "awskms:///alias/",
            "awskms:///key id",
            "awskms:///key?x=1",
            "awskms://user@host/key",
            "awskms:///arn:aws:kms:us-east-2:111122223333",
            "awskms:///arn:aws:s3:::bucket/key",
            "awskms:///arn:aws:kms:US_EAST:111122223333:key/k",
            "gcpkms://x",
        ] {
            assert!(
                matches!(
                    KeyUri::parse(uri),
                    Err(KmsError::InvalidUri {
                        scheme: "awskms",
                        ..
                    })
                ),
                "{uri}"
            );
        }
        let long = format!("awskms:///{}", "k".repeat(MAX_KEY_ID_LEN + 1));
        assert!(KeyUri::parse(&long).is_err());
    }

    #[test]
    fn the_region_comes_from_the_arn_then_the_environment() {
        let arn = "arn:aws:kms:eu-central-1:111122223333:key/k";
        let both = env(&[
            ("AWS_REGION", "us-west-2"),
            ("AWS_DEFAULT_REGION", "ap-south-1"),
        ]);
        assert_eq!(region(arn, &both).unwrap(), "eu-central-1");
        assert_eq!(region("alias/x", &both).unwrap(), "us-west-2");
        let default = env(&[("AWS_DEFAULT_REGION", "ap-south-1")]);
        assert_eq!(region("alias/x", default).unwrap(), "ap-south-1");
        let error = region("alias/x", env(&[])).unwrap_err().to_string();
        assert!(error.contains("AWS_REGION"), "{error}");
        assert!(region("alias/x", env(&[("AWS_REGION", "us east")])).is_err());
    }

    #[test]
    fn endpoints_follow_the_region_or_the_uri() {
        let regional = Endpoint::new(None, "eu-west-1").unwrap();
        assert_eq!(regional.url, "https://kms.eu-west-1.amazonaws.com/");
        assert_eq!(regional.host, "kms.eu-west-1.amazonaws.com");
        let china = Endpoint::new(None, "cn-north-1").unwrap();
        assert_eq!(china.url, "https://kms.cn-north-1.amazonaws.com.cn/");
        let moto = Endpoint::new(Some("127.0.0.1:5000"), "us-east-1").unwrap();
        assert_eq!(moto.url, "http://127.0.0.1:5000/");
        assert_eq!(moto.host, "127.0.0.1:5000");
        let v6 = Endpoint::new(Some("[::1]:4566"), "us-east-1").unwrap();
        assert_eq!(
            (v6.url.as_str(), v6.host.as_str()),
            ("http://[::1]:4566/", "[::1]:4566")
        );
        assert!(
            Endpoint::new(Some("localhost:4566"), "us-east-1")
                .unwrap()
                .url
                .starts_with("http://")
        );
        let remote = Endpoint::new(Some("kms.example.com:443"), "us-east-1").unwrap();
        assert_eq!(
            (remote.url.as_str(), remote.host.as_str()),
            ("https://kms.example.com/", "kms.example.com")
        );
        let other_port = Endpoint::new(Some("kms.example.com:8443"), "us-east-1").unwrap();
        assert_eq!(other_port.host, "kms.example.com:8443");
        assert!(!is_loopback("127.0.0.1.example.com"));
        assert!(is_loopback("127.1.2.3"));
    }

    #[test]
    fn credentials_are_required() {
        let error = Credentials::from_env(env(&[("AWS_ACCESS_KEY_ID", "a")]))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("AWS_SECRET_ACCESS_KEY"), "{error}");
        let credentials = Credentials::from_env(env(&[
            ("AWS_ACCESS_KEY_ID", "a"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("AWS_SESSION_TOKEN", "t"),
        ]))
        .unwrap();
        assert_eq!(credentials.session_token.as_deref(), Some("t"));
    }

    /// The worked example of the AWS SigV4 documentation (IAM `ListUsers`).
    #[test]
    fn sigv4_matches_the_aws_documentation_example() {
        let canonical = "GET\n/\nAction=ListUsers&Version=2010-05-08\n\
            content-type:application/x-www-form-urlencoded; charset=utf-8\n\
            host:iam.amazonaws.com\nx-amz-date:20150830T123600Z\n\n\
            content-type;host;x-amz-date\n\
            e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            sigv4::signature(
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                "20150830T123600Z",
                "20150830/us-east-1/iam/aws4_request",
                canonical
            ),
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    /// KMS requests signed as botocore 1.x (`SigV4Auth`) signs them, with and without a
    /// session token.
    #[test]
    fn sigv4_matches_botocore() {
        let with_token = Credentials {
            access_key_id: "AKIDEXAMPLE".to_owned(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned(),
            session_token: Some("SESSIONTOKEN".to_owned()),
        };
        let headers = sigv4::sign(&sigv4::Request {
            credentials: &with_token,
            region: "eu-west-1",
            host: "kms.eu-west-1.amazonaws.com",
            amz_date: "20240301T123456Z",
            target: "TrentService.Sign",
            body: br#"{"KeyId":"alias/log","Message":"aGVsbG8=","MessageType":"RAW","SigningAlgorithm":"ECDSA_SHA_256"}"#,
        });
        assert_eq!(
            headers,
            vec![
                ("x-amz-date", "20240301T123456Z".to_owned()),
                ("x-amz-security-token", "SESSIONTOKEN".to_owned()),
                (
                    "authorization",
                    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240301/eu-west-1/kms/aws4_request, \
                     SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, \
                     Signature=94ae75c8e97ac72ca73fb9271593c6153b0d88206768ff7ba5dbcdeeabb1e2ad"
                        .to_owned()
                ),
            ]
        );
        let without_token = Credentials {
            session_token: None,
            ..with_token
        };
        let headers = sigv4::sign(&sigv4::Request {
            credentials: &without_token,
            region: "us-east-1",
            host: "127.0.0.1:4566",
            amz_date: "20240301T123456Z",
            target: "TrentService.GetPublicKey",
            body: br#"{"KeyId":"k"}"#,
        });
        assert_eq!(
            headers.last().map(|(_, v)| v.as_str()),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240301/us-east-1/kms/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date;x-amz-target, \
                 Signature=adb253b391c4fe0be201ca8fb91cf76b7301faa8519c2ad71740203470a7129a"
            )
        );
    }

    #[test]
    fn amz_dates_are_utc() {
        let at = UNIX_EPOCH + Duration::from_secs(1_709_296_496);
        assert_eq!(amz_date(at).unwrap(), "20240301T123456Z");
    }

    #[test]
    fn long_messages_are_digested_or_refused() {
        let short = [b'a'; MAX_RAW_MESSAGE];
        assert_eq!(
            KeyKind::Ed25519.payload(&short).unwrap(),
            ("RAW", short.to_vec())
        );
        let long = [b'a'; MAX_RAW_MESSAGE + 1];
        assert_eq!(
            KeyKind::P256.payload(&long).unwrap(),
            ("DIGEST", Sha256::digest(long).to_vec())
        );
        assert_eq!(KeyKind::P384.payload(&long).unwrap().1.len(), 48);
        assert!(KeyKind::Ed25519.payload(&long).is_err());
    }

    #[test]
    fn kms_errors_name_their_type() {
        let body = br#"{"__type":"com.amazonaws.kms#NotFoundException","message":"Key 'x' does not exist"}"#;
        assert_eq!(
            describe_error(body),
            "NotFoundException: Key 'x' does not exist"
        );
        assert_eq!(
            describe_error(br#"{"__type":"AccessDeniedException","Message":"no"}"#),
            "AccessDeniedException: no"
        );
        assert_eq!(describe_error(b"<html>"), "\"<html>\"");
    }

    #[test]
    fn public_keys_need_a_signing_key_spec() {
        let der = STANDARD.encode([1, 2, 3]);
        let moto = json!({"CustomerMasterKeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY", "PublicKey": der});
        assert_eq!(
            parse_public_key(&moto).unwrap(),
            (KeyKind::P256, vec![1, 2, 3])
        );
        let ed = json!({"KeySpec": "ECC_NIST_EDWARDS25519", "PublicKey": der});
        assert_eq!(parse_public_key(&ed).unwrap().0, KeyKind::Ed25519);
        let rsa = json!({"KeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY", "PublicKey": der});
        assert!(matches!(
            parse_public_key(&rsa),
            Err(KmsError::UnsupportedKey { key_type, .. }) if key_type == "RSA_2048"
        ));
        let encrypt =
            json!({"KeySpec": "RSA_2048", "KeyUsage": "ENCRYPT_DECRYPT", "PublicKey": der});
        assert!(matches!(
            parse_public_key(&encrypt),
            Err(KmsError::Backend { .. })
        ));
    }

    #[test]
    fn requests_run_inside_a_runtime_without_panicking() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Port 1 on loopback refuses at once: the call must fail cleanly, not panic.
        let error = runtime.block_on(async {
            let key = AwsKmsKey {
                kms: Kms {
                    key_id: "k".to_owned(),
                    region: "us-east-1".to_owned(),
                    endpoint: Endpoint::new(Some("127.0.0.1:1"), "us-east-1").unwrap(),
                    credentials: Credentials {
                        access_key_id: "a".to_owned(),
                        secret_access_key: "s".to_owned(),
                        session_token: None,
                    },
                    client: on_own_thread(reqwest::blocking::Client::new).unwrap(),
                },
                kind: KeyKind::P256,
                public_key_der: Vec::new(),
            };
            key.sign(b"hello").unwrap_err()
        });
        assert!(
            error.contains("KMS Sign of k at http://127.0.0.1:1/"),
            "{error}"
        );
        assert!(error.to_lowercase().contains("connect"), "{error}");
    }
}
