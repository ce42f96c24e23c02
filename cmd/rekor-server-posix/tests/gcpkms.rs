//! `--signer-kmskey gcpkms://...`: checkpoints signed by a Google Cloud KMS key.
//!
//! There is no Cloud KMS emulator, so this test serves the API's own protobuf definitions on
//! loopback: a tonic server built from `proto/google/cloud/kms/v1/asymmetric_sign.proto` (the
//! `google.cloud.kms.v1.KeyManagementService` messages, field numbers and enum values of the
//! published API, the subset the log uses), answering `GetPublicKey` and `AsymmetricSign` with a
//! P-256 key made here. The server reaches it through `REKOR_GCPKMS_ENDPOINT=http://127.0.0.1:PORT`
//! (plaintext, no credentials). The stand-in checks each request as Cloud KMS would (key name,
//! digest length, `digest_crc32c`), and can be told to corrupt a CRC32C or to not know the key.
//!
//! Checkpoints are verified with the workspace's verifier and again by hand: p256 directly over
//! the note text, with the key ID (SHA-256 of the DER SPKI, first four bytes) recomputed here.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context as _, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::signature::hazmat::PrehashSigner as _;
use p256::pkcs8::{EncodePublicKey as _, LineEnding};
use rekor_api::google::cloud::kms::v1::{
    AsymmetricSignRequest, AsymmetricSignResponse, GetPublicKeyRequest, PublicKey,
    crypto_key_version::CryptoKeyVersionAlgorithm,
    digest,
    key_management_service_server::{KeyManagementService, KeyManagementServiceServer},
};
use rekor_testkit::fixtures::{artifact, random_bytes};
use rekor_testkit::{
    ClientKey, Error as KitError, HttpClient, KeyKind, ServerConfig, ServerProcess, TrustedLog,
    verify_entry,
};
use sha2::{Digest as _, Sha256};
use tonic::{Request, Response, Status};

const ORIGIN: &str = "gcpkms.rekor.test";
const KEY_NAME: &str = "projects/p/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1";

/// How the stand-in misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    /// `pem_crc32c` off by one.
    PemCrc,
    /// `signature_crc32c` off by one.
    SignatureCrc,
}

/// A Cloud KMS key version, on loopback.
struct FakeKms {
    key: p256::ecdsa::SigningKey,
    pem: String,
    fault: Fault,
    signs: Arc<AtomicUsize>,
}

/// CRC32C (Castagnoli), bit by bit; independent of the server's table-driven one.
fn crc32c(data: &[u8]) -> i64 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    i64::from(!crc)
}

fn known(name: &str) -> Result<(), Status> {
    if name == KEY_NAME {
        Ok(())
    } else {
        Err(Status::not_found(format!(
            "CryptoKeyVersion {name} not found."
        )))
    }
}

#[tonic::async_trait]
impl KeyManagementService for FakeKms {
    async fn get_public_key(
        &self,
        request: Request<GetPublicKeyRequest>,
    ) -> Result<Response<PublicKey>, Status> {
        let name = request.into_inner().name;
        known(&name)?;
        let mut crc = crc32c(self.pem.as_bytes());
        if self.fault == Fault::PemCrc {
            crc ^= 1;
        }
        Ok(Response::new(PublicKey {
            pem: self.pem.clone(),
            algorithm: CryptoKeyVersionAlgorithm::EcSignP256Sha256.into(),
            pem_crc32c: Some(crc),
            name,
        }))
    }

    async fn asymmetric_sign(
        &self,
        request: Request<AsymmetricSignRequest>,
    ) -> Result<Response<AsymmetricSignResponse>, Status> {
        let request = request.into_inner();
        known(&request.name)?;
        if !request.data.is_empty() || request.data_crc32c.is_some() {
            return Err(Status::invalid_argument(
                "EC_SIGN_P256_SHA256 signs a digest, not data",
            ));
        }
        let Some(digest::Digest::Sha256(digest)) = request.digest.and_then(|d| d.digest) else {
            return Err(Status::invalid_argument(
                "EC_SIGN_P256_SHA256 needs digest.sha256",
            ));
        };
        if digest.len() != 32 {
            return Err(Status::invalid_argument("digest.sha256 is not 32 bytes"));
        }
        if request.digest_crc32c != Some(crc32c(&digest)) {
            return Err(Status::invalid_argument(
                "digest_crc32c does not match the digest",
            ));
        }
        let signature: p256::ecdsa::Signature = self
            .key
            .sign_prehash(&digest)
            .map_err(|e| Status::internal(e.to_string()))?;
        let signature = signature.to_der().as_bytes().to_vec();
        let mut crc = crc32c(&signature);
        if self.fault == Fault::SignatureCrc {
            crc ^= 1;
        }
        self.signs.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(AsymmetricSignResponse {
            signature,
            signature_crc32c: Some(crc),
            verified_digest_crc32c: true,
            name: request.name,
            verified_data_crc32c: false,
        }))
    }
}

/// A running stand-in: its endpoint, the key's DER SPKI and a count of signatures made.
struct Running {
    endpoint: String,
    spki_der: Vec<u8>,
    verifying_key: p256::ecdsa::VerifyingKey,
    signs: Arc<AtomicUsize>,
}

async fn start_fake(fault: Fault) -> anyhow::Result<Running> {
    let key = p256::ecdsa::SigningKey::from_slice(&random_bytes::<32>()?)?;
    let verifying_key = *key.verifying_key();
    let pem = verifying_key.to_public_key_pem(LineEnding::LF)?;
    let spki_der = verifying_key.to_public_key_der()?.as_bytes().to_vec();
    let signs = Arc::new(AtomicUsize::new(0));
    let incoming = tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse()?)
        .map_err(|e| anyhow::anyhow!("binding the stand-in: {e}"))?;
    let address = incoming.local_addr()?;
    let service = KeyManagementServiceServer::new(FakeKms {
        key,
        pem,
        fault,
        signs: Arc::clone(&signs),
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming),
    );
    Ok(Running {
        endpoint: format!("http://{address}"),
        spki_der,
        verifying_key,
        signs,
    })
}

fn config(storage: &std::path::Path, endpoint: &str, key_uri: &str) -> ServerConfig {
    let mut config = ServerConfig::new(env!("CARGO_BIN_EXE_rekor-server-posix"), storage)
        .with_env("REKOR_GCPKMS_ENDPOINT", endpoint)
        .with_args(["--signer-kmskey", key_uri]);
    config.hostname = ORIGIN.to_owned();
    config
}

async fn start(config: ServerConfig) -> Result<ServerProcess, KitError> {
    tokio::task::spawn_blocking(move || ServerProcess::start(&config))
        .await
        .map_err(|e| KitError::io("starting the server", std::io::Error::other(e)))?
}

/// Starts the server against a misbehaving stand-in and returns what it wrote to stderr.
async fn start_fails(fault: Fault, key_uri: &str) -> anyhow::Result<String> {
    let fake = start_fake(fault).await?;
    let dir = tempfile::tempdir()?;
    match start(config(dir.path(), &fake.endpoint, key_uri)).await {
        Ok(mut server) => {
            server.stop()?;
            bail!("the server started with {fault:?} / {key_uri}")
        }
        Err(KitError::ExitedEarly { stderr, .. }) => Ok(stderr),
        Err(other) => bail!("unexpected start failure: {other}"),
    }
}

/// Checks `note` by hand: body `origin\nsize\nroot\n`, one signature line from the log whose
/// blob is key ID ‖ DER ECDSA signature, verified with p256 over the body.
fn verify_by_hand(note: &[u8], fake: &Running) -> anyhow::Result<u64> {
    let text = std::str::from_utf8(note)?;
    let (body, signatures) = text.split_once("\n\n").context("no blank line")?;
    let lines: Vec<&str> = body.split('\n').collect();
    let [origin, size, root] = lines[..] else {
        bail!("body is not three lines: {body:?}");
    };
    ensure!(origin == ORIGIN);
    ensure!(STANDARD.decode(root)?.len() == 32);
    let key_id = &Sha256::digest(&fake.spki_der)[..4];
    let prefix = format!("\u{2014} {ORIGIN} ");
    let mut verified = 0;
    for line in signatures.lines() {
        let blob = STANDARD.decode(line.strip_prefix(&prefix).context("foreign line")?)?;
        let (id, der) = blob.split_at_checked(4).context("short signature")?;
        ensure!(id == key_id, "key ID {id:02x?}, expected {key_id:02x?}");
        let signature = p256::ecdsa::Signature::from_der(der)?;
        fake.verifying_key
            .verify(format!("{body}\n").as_bytes(), &signature)
            .context("the checkpoint signature does not verify")?;
        verified += 1;
    }
    ensure!(verified == 1, "{verified} signature lines");
    Ok(size.parse()?)
}

#[tokio::test]
async fn checkpoints_are_signed_by_the_cloud_kms_key() -> anyhow::Result<()> {
    let fake = start_fake(Fault::None).await?;
    let dir = tempfile::tempdir()?;
    let mut server = start(config(
        dir.path(),
        &fake.endpoint,
        &format!("gcpkms://{KEY_NAME}"),
    ))
    .await?;
    let http = HttpClient::new(server.listeners().http)?;
    let trust = TrustedLog::from_public_key_der(&fake.spki_der, ORIGIN)?;
    ensure!(trust.log_id[..] == Sha256::digest(&fake.spki_der)[..]);
    let opened_signs = fake.signs.load(Ordering::SeqCst);
    ensure!(opened_signs >= 1, "the key was not test-signed at open");

    let client = ClientKey::generate(KeyKind::EcdsaP256)?;
    for i in 0..3 {
        let submission = client.hashed_rekord(&artifact("gcpkms", i)?)?;
        let entry = http.create_entry(&submission).await?;
        let verified = verify_entry(&trust, &submission, &entry)?;
        let proof = entry.proof.as_ref().context("no inclusion proof")?;
        let size = verify_by_hand(proof.checkpoint.as_bytes(), &fake)?;
        ensure!(size > verified.index);
    }
    let note = http.checkpoint().await?;
    ensure!(verify_by_hand(&note, &fake)? == 3);
    ensure!(fake.signs.load(Ordering::SeqCst) > opened_signs);
    server.stop()?;
    Ok(())
}

#[tokio::test]
async fn a_public_key_with_a_wrong_crc32c_is_refused() -> anyhow::Result<()> {
    let stderr = start_fails(Fault::PemCrc, &format!("gcpkms://{KEY_NAME}")).await?;
    ensure!(
        stderr.contains("--signer-kmskey") && stderr.contains("failed its CRC32C check"),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn a_signature_with_a_wrong_crc32c_is_refused() -> anyhow::Result<()> {
    let stderr = start_fails(Fault::SignatureCrc, &format!("gcpkms://{KEY_NAME}")).await?;
    ensure!(
        stderr.contains("--signer-kmskey")
            && stderr.contains("the signature failed its CRC32C check"),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn an_unknown_key_is_refused() -> anyhow::Result<()> {
    let other = KEY_NAME.replace("cryptoKeyVersions/1", "cryptoKeyVersions/2");
    let stderr = start_fails(Fault::None, &format!("gcpkms://{other}")).await?;
    ensure!(
        stderr.contains("--signer-kmskey")
            && stderr.contains("NotFound")
            && stderr.contains(&other),
        "{stderr}"
    );
    Ok(())
}
