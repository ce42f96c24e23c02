//! Google Cloud KMS keys (`--signer-kmskey gcpkms://...`), through the Cloud KMS v1 gRPC API
//! (`google.cloud.kms.v1.KeyManagementService`: `GetPublicKey` once at open, `AsymmetricSign`
//! per checkpoint), with the message types of [`rekor_api::google::cloud::kms::v1`].
//!
//! The URI is the one rekor-tiles and sigstore take:
//! `gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/V`. The version
//! is required, because a log's key must not change when the CryptoKey rotates.
//!
//! Endpoint, from the environment variable [`ENDPOINT_ENV`] (`REKOR_GCPKMS_ENDPOINT`):
//! - unset: `cloudkms.googleapis.com:443` over TLS (webpki roots), with an OAuth token from
//!   Application Default Credentials (`gcloud-auth`, as the GCS and Spanner backends use);
//! - `https://HOST[:PORT]`: the same, at another host (a regional or private endpoint);
//! - `http://HOST:PORT`: plaintext and no credentials, for a local stand-in such as the
//!   end-to-end test's.
//!
//! Integrity, as Google recommends for these calls: the public key's PEM must match
//! `pem_crc32c`; every sign request carries the CRC32C of its digest (or data), the response must
//! say the service verified it (`verified_digest_crc32c` / `verified_data_crc32c`), name the key
//! version we asked for, and carry a signature that matches `signature_crc32c`.
//!
//! Algorithms: `EC_SIGN_P256_SHA256` and `EC_SIGN_P384_SHA384` sign a SHA-256 / SHA-384
//! digest computed here (`digest`); `EC_SIGN_ED25519` signs the message itself (`data`).
//!
//! The gRPC calls run on one thread this key owns, with its own current-thread tokio runtime,
//! so that [`ExternalSigner::sign`] (blocking) never blocks on the caller's runtime and the
//! connection and token cache are kept between checkpoints.

use std::sync::mpsc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use gcloud_gax::conn::{Channel, ConnectionManager, ConnectionOptions, Environment};
use rekor_api::google::cloud::kms::v1::{
    AsymmetricSignRequest, Digest, GetPublicKeyRequest,
    crypto_key_version::CryptoKeyVersionAlgorithm, digest,
    key_management_service_client::KeyManagementServiceClient,
};
use rekor_note::ExternalSigner;
use sha2::Digest as _;

use super::KmsError;

/// The scheme, as [`KmsError`] names it.
const SCHEME: &str = "gcpkms";

/// The environment variable that overrides the Cloud KMS endpoint (see the module docs).
pub const ENDPOINT_ENV: &str = "REKOR_GCPKMS_ENDPOINT";

/// The public Cloud KMS host.
const DEFAULT_HOST: &str = "cloudkms.googleapis.com";

/// The OAuth scope Cloud KMS accepts.
const SCOPES: [&str; 1] = ["https://www.googleapis.com/auth/cloud-platform"];

/// The time limit of one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The time limit for connecting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest key URI accepted.
const MAX_URI_BYTES: usize = 1024;

/// The largest public key PEM accepted (a P-384 SPKI is about 215 bytes of PEM).
const MAX_PEM_BYTES: usize = 8 * 1024;

/// The most data Cloud KMS signs in one `AsymmetricSign` (`data`, Ed25519).
const MAX_DATA_BYTES: usize = 64 * 1024;

/// The segments of a CryptoKeyVersion name, in order; each is followed by one ID.
const NAME_SEGMENTS: [&str; 5] = [
    "projects",
    "locations",
    "keyRings",
    "cryptoKeys",
    "cryptoKeyVersions",
];

/// A Cloud KMS asymmetric signing key version.
#[derive(Debug)]
pub struct GcpKmsKey {
    /// `projects/.../cryptoKeyVersions/V`.
    name: String,
    /// The DER SubjectPublicKeyInfo from `GetPublicKey`.
    public_key_der: Vec<u8>,
    /// Sign requests to the thread that owns the client.
    jobs: mpsc::Sender<Job>,
}

impl GcpKmsKey {
    /// Opens the key version `uri` names: connects (see the module docs for the endpoint and
    /// credentials), reads its public key and algorithm, and checks the public key's CRC32C.
    ///
    /// # Errors
    ///
    /// [`KmsError::InvalidUri`] for a malformed URI or [`ENDPOINT_ENV`];
    /// [`KmsError::Backend`] if credentials, the connection or `GetPublicKey` fail, or the
    /// response fails its integrity checks; [`KmsError::UnsupportedKey`] for an algorithm other
    /// than ECDSA P-256, P-384 or Ed25519.
    pub fn open(uri: &str) -> Result<Self, KmsError> {
        let name = parse_uri(uri)?;
        let endpoint = Endpoint::from_env()?;
        let (jobs, queue) = mpsc::channel();
        let (opened_tx, opened_rx) = mpsc::sync_channel(1);
        let worker_name = name.clone();
        std::thread::Builder::new()
            .name("gcpkms".to_owned())
            .spawn(move || worker(&endpoint, &worker_name, &queue, &opened_tx))
            .map_err(|e| backend(format!("starting the Cloud KMS client thread: {e}")))?;
        let public_key_der = opened_rx
            .recv()
            .map_err(|_| backend("the Cloud KMS client thread stopped".to_owned()))??;
        Ok(Self {
            name,
            public_key_der,
            jobs,
        })
    }
}

impl ExternalSigner for GcpKmsKey {
    fn public_key_der(&self) -> &[u8] {
        &self.public_key_der
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let (reply, answer) = mpsc::sync_channel(1);
        let stopped = || format!("{SCHEME}: the Cloud KMS client thread has stopped");
        self.jobs
            .send(Job {
                message: message.to_vec(),
                reply,
            })
            .map_err(|_| stopped())?;
        let result = answer.recv().map_err(|_| stopped())?;
        if let Err(reason) = &result {
            tracing::error!(key = %self.name, %reason, "Cloud KMS signing failed");
        }
        result
    }
}

/// One signature to make, and where to send it.
#[derive(Debug)]
struct Job {
    message: Vec<u8>,
    reply: mpsc::SyncSender<Result<Vec<u8>, String>>,
}

/// The signing algorithms a log can use.
#[derive(Clone, Copy, Debug)]
enum Algorithm {
    P256,
    P384,
    Ed25519,
}

/// Where Cloud KMS is.
#[derive(Debug)]
enum Endpoint {
    /// TLS and Application Default Credentials.
    Google {
        /// The TLS server name.
        host: String,
        /// `https://HOST[:PORT]/`: the channel URL and the token audience.
        url: String,
    },
    /// `HOST:PORT`, plaintext, no credentials.
    Plaintext(String),
}

impl Endpoint {
    fn from_env() -> Result<Self, KmsError> {
        let Some(value) = std::env::var_os(ENDPOINT_ENV) else {
            return Ok(Self::google(DEFAULT_HOST));
        };
        let invalid = || KmsError::InvalidUri {
            scheme: SCHEME,
            reason: format!(
                "{ENDPOINT_ENV} must be http://HOST:PORT (plaintext, no credentials) or \
                 https://HOST[:PORT], not {value:?}"
            ),
        };
        let value = value.to_str().ok_or_else(invalid)?;
        let authority = |rest: &str| {
            let rest = rest.strip_suffix('/').unwrap_or(rest);
            (!rest.is_empty() && !rest.contains(['/', '?', '#', '@', ' '])).then(|| rest.to_owned())
        };
        if let Some(rest) = value.strip_prefix("http://") {
            authority(rest)
                .filter(|a| a.contains(':'))
                .map(Self::Plaintext)
                .ok_or_else(invalid)
        } else if let Some(rest) = value.strip_prefix("https://") {
            authority(rest)
                .map(|a| Self::google(&a))
                .ok_or_else(invalid)
        } else {
            Err(invalid())
        }
    }

    fn google(authority: &str) -> Self {
        let host = match authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => authority,
        };
        Self::Google {
            host: host.to_owned(),
            url: format!("https://{authority}/"),
        }
    }
}

/// Checks `uri` and returns the key version's resource name.
fn parse_uri(uri: &str) -> Result<String, KmsError> {
    let invalid = |reason: &str| KmsError::InvalidUri {
        scheme: SCHEME,
        reason: format!(
            "{reason}; expected gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K/\
             cryptoKeyVersions/V"
        ),
    };
    if uri.len() > MAX_URI_BYTES {
        return Err(invalid("the URI is too long"));
    }
    let name = uri
        .strip_prefix("gcpkms://")
        .ok_or_else(|| invalid("the URI does not start with gcpkms://"))?;
    let parts: Vec<&str> = name.split('/').collect();
    if parts.len() == 8 && parts.get(6).is_some_and(|s| *s == "cryptoKeys") {
        return Err(invalid(
            "the URI names a CryptoKey without a version; a log key must name its version",
        ));
    }
    if parts.len() != NAME_SEGMENTS.len() * 2 {
        return Err(invalid("wrong number of path segments"));
    }
    for (pair, expected) in parts.chunks_exact(2).zip(NAME_SEGMENTS) {
        let [segment, id] = pair else {
            return Err(invalid("wrong number of path segments"));
        };
        if *segment != expected {
            return Err(invalid(&format!(
                "found {segment:?} where {expected:?} belongs"
            )));
        }
        let id_ok = !id.is_empty()
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~:".contains(&b));
        if !id_ok {
            return Err(invalid(&format!(
                "{expected} ID {id:?} is empty or has characters a resource ID cannot"
            )));
        }
    }
    Ok(name.to_owned())
}

/// The thread that owns the runtime and the client: opens the key, reports the public key on
/// `opened`, then signs what arrives on `queue` until the key is dropped.
fn worker(
    endpoint: &Endpoint,
    name: &str,
    queue: &mpsc::Receiver<Job>,
    opened: &mpsc::SyncSender<Result<Vec<u8>, KmsError>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = opened.send(Err(backend(format!("starting a tokio runtime: {e}"))));
            return;
        }
    };
    let (mut client, algorithm) = match runtime.block_on(connect(endpoint, name)) {
        Ok((client, algorithm, public_key_der)) => {
            if opened.send(Ok(public_key_der)).is_err() {
                return;
            }
            (client, algorithm)
        }
        Err(e) => {
            let _ = opened.send(Err(e));
            return;
        }
    };
    while let Ok(job) = queue.recv() {
        let result = runtime.block_on(sign(&mut client, name, algorithm, &job.message));
        let _ = job.reply.send(result);
    }
}

type Client = KeyManagementServiceClient<Channel>;

/// Connects and calls `GetPublicKey`; returns the client, the algorithm and the DER SPKI.
async fn connect(
    endpoint: &Endpoint,
    name: &str,
) -> Result<(Client, Algorithm, Vec<u8>), KmsError> {
    let options = ConnectionOptions {
        timeout: Some(CALL_TIMEOUT),
        connect_timeout: Some(CONNECT_TIMEOUT),
        ..ConnectionOptions::default()
    };
    let (environment, host, url) = match endpoint {
        Endpoint::Plaintext(authority) => (
            Environment::Emulator(authority.clone()),
            authority.clone(),
            format!("http://{authority}/"),
        ),
        Endpoint::Google { host, url } => {
            let config = gcloud_auth::project::Config::default()
                .with_audience(url)
                .with_scopes(&SCOPES);
            let provider = gcloud_auth::token::DefaultTokenSourceProvider::new(config)
                .await
                .map_err(|e| {
                    backend(format!(
                        "no Google credentials (Application Default Credentials): {e}"
                    ))
                })?;
            (
                Environment::GoogleCloud(Box::new(provider)),
                host.clone(),
                url.clone(),
            )
        }
    };
    let manager = ConnectionManager::new(1, host, &url, &environment, &options)
        .await
        .map_err(|e| backend(format!("connecting to {url}: {}", with_sources(&e))))?;
    let mut client = KeyManagementServiceClient::new(manager.conn());
    let key = client
        .get_public_key(GetPublicKeyRequest {
            name: name.to_owned(),
        })
        .await
        .map_err(|status| backend(format!("GetPublicKey {name}: {}", describe(&status))))?
        .into_inner();
    if key.name != name {
        return Err(backend(format!(
            "GetPublicKey {name} answered for {:?}",
            key.name
        )));
    }
    let computed = crc32c(key.pem.as_bytes());
    if key.pem_crc32c != Some(i64::from(computed)) {
        return Err(backend(format!(
            "GetPublicKey {name}: the public key failed its CRC32C check (pem_crc32c {:?}, \
             computed {computed}); it was corrupted in transit",
            key.pem_crc32c
        )));
    }
    let algorithm = match CryptoKeyVersionAlgorithm::try_from(key.algorithm) {
        Ok(CryptoKeyVersionAlgorithm::EcSignP256Sha256) => Algorithm::P256,
        Ok(CryptoKeyVersionAlgorithm::EcSignP384Sha384) => Algorithm::P384,
        Ok(CryptoKeyVersionAlgorithm::EcSignEd25519) => Algorithm::Ed25519,
        Ok(other) => return Err(unsupported(other.as_str_name().to_owned())),
        Err(_) => return Err(unsupported(format!("algorithm {}", key.algorithm))),
    };
    let der = pem_to_der(&key.pem).ok_or_else(|| {
        backend(format!(
            "GetPublicKey {name}: the key is not a PUBLIC KEY PEM"
        ))
    })?;
    tracing::info!(key = %name, endpoint = %url, ?algorithm, "opened the Cloud KMS signing key");
    Ok((client, algorithm, der))
}

/// One `AsymmetricSign` call over `message`, with its integrity checks.
async fn sign(
    client: &mut Client,
    name: &str,
    algorithm: Algorithm,
    message: &[u8],
) -> Result<Vec<u8>, String> {
    let mut request = AsymmetricSignRequest {
        name: name.to_owned(),
        ..AsymmetricSignRequest::default()
    };
    let digest = match algorithm {
        Algorithm::P256 => Some(digest::Digest::Sha256(
            sha2::Sha256::digest(message).to_vec(),
        )),
        Algorithm::P384 => Some(digest::Digest::Sha384(
            sha2::Sha384::digest(message).to_vec(),
        )),
        Algorithm::Ed25519 => None,
    };
    let uses_digest = digest.is_some();
    match digest {
        Some(digest) => {
            let bytes = match &digest {
                digest::Digest::Sha256(b)
                | digest::Digest::Sha384(b)
                | digest::Digest::Sha512(b) => b,
            };
            request.digest_crc32c = Some(i64::from(crc32c(bytes)));
            request.digest = Some(Digest {
                digest: Some(digest),
            });
        }
        None => {
            if message.len() > MAX_DATA_BYTES {
                return Err(format!(
                    "{SCHEME}: {} bytes to sign; Cloud KMS signs at most {MAX_DATA_BYTES}",
                    message.len()
                ));
            }
            request.data_crc32c = Some(i64::from(crc32c(message)));
            request.data = message.to_vec();
        }
    }
    let response = client
        .asymmetric_sign(request)
        .await
        .map_err(|status| format!("{SCHEME}: AsymmetricSign {name}: {}", describe(&status)))?
        .into_inner();
    let verified = if uses_digest {
        response.verified_digest_crc32c
    } else {
        response.verified_data_crc32c
    };
    if !verified {
        return Err(format!(
            "{SCHEME}: AsymmetricSign {name}: the service did not confirm the request's CRC32C"
        ));
    }
    if response.name != name {
        return Err(format!(
            "{SCHEME}: AsymmetricSign {name} answered for {:?}",
            response.name
        ));
    }
    let computed = crc32c(&response.signature);
    if response.signature_crc32c != Some(i64::from(computed)) {
        return Err(format!(
            "{SCHEME}: AsymmetricSign {name}: the signature failed its CRC32C check \
             (signature_crc32c {:?}, computed {computed}); it was corrupted in transit",
            response.signature_crc32c
        ));
    }
    Ok(response.signature)
}

/// A gRPC status as operators need it: the code and the service's message.
fn describe(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// `error` and its sources, `: `-separated (tonic's transport error says little on its own).
fn with_sources(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn backend(reason: String) -> KmsError {
    KmsError::Backend {
        scheme: SCHEME,
        reason,
    }
}

fn unsupported(key_type: String) -> KmsError {
    KmsError::UnsupportedKey {
        scheme: SCHEME,
        key_type,
    }
}

/// The DER of the one `PUBLIC KEY` block in `pem`.
fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    if pem.len() > MAX_PEM_BYTES {
        return None;
    }
    let (_, rest) = pem.split_once("-----BEGIN PUBLIC KEY-----")?;
    let (body, _) = rest.split_once("-----END PUBLIC KEY-----")?;
    let body: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD.decode(body).ok()
}

/// The CRC32C (Castagnoli, reflected polynomial 0x82F63B78) lookup table.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut n: u32 = 0;
    let mut i = 0;
    while i < 256 {
        let mut crc = n;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        n += 1;
        i += 1;
    }
    table
};

/// CRC32C of `data`, the checksum Cloud KMS uses for its integrity fields.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        let [low, ..] = crc.to_le_bytes();
        crc = CRC32C_TABLE[usize::from(low ^ byte)] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_check_value() {
        // The standard check value of CRC-32C (RFC 3720 uses the same polynomial).
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn uris_are_checked() {
        let good =
            "gcpkms://projects/p-1/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1";
        assert_eq!(
            parse_uri(good).unwrap(),
            "projects/p-1/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1"
        );
        for bad in [
            "gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/k",
            "gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/",
            "gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/k/versions/1",
            "gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1/x/y",
            "gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1?x",
            "gcpkms://",
            "awskms://projects/p",
        ] {
            assert!(
                matches!(parse_uri(bad), Err(KmsError::InvalidUri { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn endpoints_are_parsed() {
        assert!(matches!(
            Endpoint::google("cloudkms.googleapis.com"),
            Endpoint::Google { host, url } if host == "cloudkms.googleapis.com"
                && url == "https://cloudkms.googleapis.com/"
        ));
        assert!(matches!(
            Endpoint::google("kms.example:8443"),
            Endpoint::Google { host, url } if host == "kms.example" && url == "https://kms.example:8443/"
        ));
    }

    #[test]
    fn pem_is_decoded() {
        let pem = "-----BEGIN PUBLIC KEY-----\nAAEC\nAw==\n-----END PUBLIC KEY-----\n";
        assert_eq!(pem_to_der(pem), Some(vec![0, 1, 2, 3]));
        assert_eq!(
            pem_to_der("-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----"),
            None
        );
    }
}
