//! `rekor-cli upload`: build a hashedrekord request, submit it, verify the answer, save it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use rekor_api::common::v1::X509Certificate;
use rekor_api::rekor::v1::TransparencyLogEntry;
use rekor_api::rekor::v2::{
    CreateEntryRequest, HashedRekordRequestV002, PublicKey, Signature, Verifier,
    create_entry_request, verifier,
};
use rekor_client::{Client, Error, LogEntry};
use rekor_entries::input::VerifierKey;
use rekor_note::LogVerifier;

use crate::sign::{self, PrivateKey};
use crate::util::{self, read};

/// `upload` flags.
#[derive(Args, Debug)]
pub(crate) struct UploadArgs {
    /// The artifact to sign or whose signature is logged.
    #[arg(long, value_name = "FILE", required_unless_present = "digest")]
    artifact: Option<PathBuf>,
    /// Your private key (PEM or DER, PKCS#8 or SEC1; ECDSA P-256/P-384/P-521 or Ed25519, which
    /// signs as Ed25519ph): the artifact is signed with it.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["signature", "public_key", "certificate", "digest"])]
    key: Option<PathBuf>,
    /// The artifact's digest in hex, instead of --artifact (its hash must be the algorithm's).
    #[arg(long, value_name = "HEX", requires = "signature")]
    digest: Option<String>,
    /// A signature made elsewhere: raw bytes or base64 text.
    #[arg(long, value_name = "FILE", required_unless_present = "key")]
    signature: Option<PathBuf>,
    /// The public key that verifies --signature (PEM or DER).
    #[arg(long, value_name = "FILE", conflicts_with = "certificate")]
    public_key: Option<PathBuf>,
    /// The X.509 certificate whose key verifies --signature (PEM or DER).
    #[arg(long, value_name = "FILE")]
    certificate: Option<PathBuf>,
    /// The signing algorithm, as a PublicKeyDetails name (PKIX_ECDSA_P256_SHA_256, ...) or a
    /// Sigstore name (ecdsa-sha2-256-nistp256, ...); by default the one for the key's type.
    #[arg(long, value_name = "NAME")]
    key_details: Option<String>,
    /// Where to write the entry JSON (default: stdout).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

fn request(
    digest: Vec<u8>,
    content: Vec<u8>,
    key: VerifierKey,
    key_details: i32,
) -> CreateEntryRequest {
    let verifier = match key {
        VerifierKey::PublicKey(raw_bytes) => verifier::Verifier::PublicKey(PublicKey { raw_bytes }),
        VerifierKey::Certificate(raw_bytes) => {
            verifier::Verifier::X509Certificate(X509Certificate { raw_bytes })
        }
    };
    CreateEntryRequest {
        spec: Some(create_entry_request::Spec::HashedRekordRequestV002(
            HashedRekordRequestV002 {
                digest,
                signature: Some(Signature {
                    content,
                    verifier: Some(Verifier {
                        key_details,
                        verifier: Some(verifier),
                    }),
                }),
            },
        )),
    }
}

fn build_request(args: &UploadArgs) -> anyhow::Result<CreateEntryRequest> {
    let artifact = args.artifact.as_deref().map(read).transpose()?;
    if let Some(path) = &args.key {
        let what = format!("--key {}", path.display());
        let key = PrivateKey::from_file_bytes(&read(path)?, &what)?;
        let artifact = artifact.ok_or_else(|| anyhow!("--key needs --artifact"))?;
        let algorithm = key.algorithm();
        return Ok(request(
            sign::artifact_digest(algorithm, &artifact),
            key.sign(&artifact)?,
            VerifierKey::PublicKey(key.public_key_der()?),
            algorithm.key_details(),
        ));
    }
    let signature_path = args
        .signature
        .as_deref()
        .ok_or_else(|| anyhow!("pass --key, or --signature with --public-key or --certificate"))?;
    let (path, certificate) = match (&args.public_key, &args.certificate) {
        (Some(path), None) => (path, false),
        (None, Some(path)) => (path, true),
        _ => bail!("--signature needs --public-key FILE or --certificate FILE"),
    };
    let key = sign::verifier_key(&read(path)?, certificate, &path.display().to_string())?;
    let algorithm = sign::algorithm_for(&key, args.key_details.as_deref())?;
    let digest = match (&args.digest, &artifact) {
        (Some(hex_digest), _) => {
            hex::decode(hex_digest.trim()).map_err(|e| anyhow!("--digest is not hex: {e}"))?
        }
        (None, Some(artifact)) => sign::artifact_digest(algorithm, artifact),
        (None, None) => bail!("pass --artifact or --digest"),
    };
    if let (Some(_), Some(artifact)) = (&args.digest, &artifact)
        && sign::artifact_digest(algorithm, artifact) != digest
    {
        bail!(
            "--digest is not the {} digest of --artifact",
            algorithm.hash().proto_name()
        );
    }
    let content = sign::signature_bytes(&read(signature_path)?);
    Ok(request(digest, content, key, algorithm.key_details()))
}

/// Runs `upload`.
pub(crate) async fn run(
    client: &Client,
    verifier: &LogVerifier,
    args: &UploadArgs,
    timeout: Duration,
) -> anyhow::Result<()> {
    let request = build_request(args)?;
    let entry = match client.submit_verified(&request, verifier).await {
        Ok((entry, verified)) => {
            util::note(&format!(
                "Created entry at index {} (tree size {}); inclusion proof and checkpoint verified.",
                verified.index, verified.checkpoint.checkpoint.size
            ));
            entry
        }
        Err(Error::Duplicate { index }) => {
            util::note(&format!(
                "The entry is already in the log at index {index}; fetching it from the tiles."
            ));
            existing(client, verifier, &request, index, timeout).await?
        }
        Err(e) => return Err(e).context("uploading"),
    };
    let json = rekor_api::to_json(&entry).context("encoding the entry")?;
    util::emit(args.out.as_deref(), &util::pretty(&json)?)
}

/// Fetches an entry the log already holds, waiting (up to `timeout`) for a checkpoint that
/// covers it, and checks it is the one requested.
async fn existing(
    client: &Client,
    verifier: &LogVerifier,
    request: &CreateEntryRequest,
    index: u64,
    timeout: Duration,
) -> anyhow::Result<TransparencyLogEntry> {
    let expected = rekor_client::expected_body(request)?;
    let deadline = Instant::now() + timeout;
    let checkpoint = loop {
        let checkpoint = client.checkpoint(verifier).await?;
        if checkpoint.checkpoint.size > index {
            break checkpoint;
        }
        if Instant::now() >= deadline {
            bail!(
                "the log says the entry is at index {index}, but its checkpoint (size {}) does not cover it",
                checkpoint.checkpoint.size
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let found: LogEntry = client.entry_at(index, &checkpoint).await?;
    if found.body.as_ref() != expected.as_slice() {
        return Err(Error::WrongBody).context(format!("entry {index}"));
    }
    let entry = found.to_transparency_log_entry(verifier.log_id())?;
    rekor_client::verify_entry(&entry, verifier)?;
    Ok(entry)
}
