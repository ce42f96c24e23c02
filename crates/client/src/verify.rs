//! Offline verification of a `TransparencyLogEntry`: body, leaf hash, inclusion proof, signed
//! checkpoint, log ID and kind.

use rekor_api::JsonLimits;
use rekor_api::common::v1::HashAlgorithm;
use rekor_api::rekor::v1::TransparencyLogEntry;
use rekor_api::rekor::v2::{
    CreateEntryRequest, Entry, HashedRekordLogEntryV002, create_entry_request, spec,
};
use rekor_entries::AlgorithmRegistry;
use rekor_entries::input::HashedRekordRequest;
use rekor_note::LogVerifier;
use rekor_tlog::{Hash, LeafIndex, TreeSize, leaf_hash, verify_inclusion};
use sha2::Digest as _;

use crate::checkpoint::SignedCheckpoint;
use crate::error::{Error, Result};

/// An entry every check of [`verify_entry`] passed.
#[derive(Clone, Debug)]
pub struct VerifiedEntry {
    /// The entry's index in the log.
    pub index: u64,
    /// Its RFC 6962 leaf hash.
    pub leaf_hash: Hash,
    /// The checkpoint the inclusion proof leads to, signed by the trusted key.
    pub checkpoint: SignedCheckpoint,
    /// The parsed body.
    pub body: EntryBody,
}

/// A parsed, canonical entry body (`canonicalizedBody`): the protojson
/// `dev.sigstore.rekor.v2.Entry` in RFC 8785 form.
#[derive(Clone, Debug)]
pub struct EntryBody {
    /// The parsed entry.
    pub entry: Entry,
    /// The exact bytes.
    pub bytes: Vec<u8>,
}

impl EntryBody {
    /// Parses a body strictly (unknown fields refused) and checks it is RFC 8785 canonical JSON.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidJson`] or [`Error::BodyNotCanonical`].
    pub fn parse(bytes: &[u8]) -> Result<EntryBody> {
        let entry: Entry =
            rekor_api::from_json(bytes, JsonLimits::default()).map_err(|source| {
                Error::InvalidJson {
                    what: "canonicalizedBody".to_string(),
                    message: "Entry",
                    source,
                }
            })?;
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|_| Error::BodyNotCanonical)?;
        let canonical =
            serde_json_canonicalizer::to_vec(&value).map_err(|_| Error::BodyNotCanonical)?;
        if canonical != bytes {
            return Err(Error::BodyNotCanonical);
        }
        Ok(EntryBody {
            entry,
            bytes: bytes.to_vec(),
        })
    }

    /// The entry kind (`hashedrekord` or `dsse`).
    #[must_use]
    pub fn kind(&self) -> &str {
        &self.entry.kind
    }

    /// The entry's `apiVersion`.
    #[must_use]
    pub fn api_version(&self) -> &str {
        &self.entry.api_version
    }

    /// Checks the body by the log's own entry rules.
    ///
    /// A `hashedrekord` v0.0.2 body is validated like a request (key, algorithm, digest length
    /// and the signature over the digest), and its canonical encoding must be these exact bytes.
    /// A `dsse` v0.0.2 body records only the payload hash, so its signatures cannot be checked
    /// without the envelope; only its form is checked.
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedKind`], [`Error::MissingField`], [`Error::BodyRejected`] or
    /// [`Error::BodyMismatch`].
    pub fn check(&self) -> Result<()> {
        match (self.kind(), self.api_version(), self.spec()) {
            ("hashedrekord", "0.0.2", Some(spec::Spec::HashedRekordV002(body))) => {
                let request = hashed_rekord_from_body(body)?;
                let validated =
                    rekor_entries::validate_hashed_rekord(&request, &AlgorithmRegistry::default())
                        .map_err(|source| Error::BodyRejected { source })?;
                if validated.canonical != self.bytes {
                    return Err(Error::BodyMismatch);
                }
                Ok(())
            }
            ("dsse", "0.0.2", Some(spec::Spec::DsseV002(body))) => {
                if body.payload_hash.is_none() {
                    return Err(Error::MissingField {
                        message: "dsseV002",
                        field: "payloadHash",
                    });
                }
                if body.signatures.is_empty() {
                    return Err(Error::MissingField {
                        message: "dsseV002",
                        field: "signatures",
                    });
                }
                Ok(())
            }
            (kind, version, _) => Err(Error::UnsupportedKind {
                kind: kind.to_string(),
                version: version.to_string(),
            }),
        }
    }

    fn spec(&self) -> Option<&spec::Spec> {
        self.entry.spec.as_ref().and_then(|s| s.spec.as_ref())
    }

    /// The digest the entry logs: the signed artifact's (hashedrekord) or the DSSE payload's,
    /// with its hash algorithm.
    #[must_use]
    pub fn artifact_digest(&self) -> Option<(HashAlgorithm, &[u8])> {
        let output = match self.spec()? {
            spec::Spec::HashedRekordV002(body) => body.data.as_ref()?,
            spec::Spec::DsseV002(body) => body.payload_hash.as_ref()?,
        };
        let algorithm = HashAlgorithm::try_from(output.algorithm).ok()?;
        Some((algorithm, &output.digest))
    }

    /// Checks that `artifact` (the signed file, or the DSSE payload) has the digest the entry
    /// logs.
    ///
    /// # Errors
    ///
    /// [`Error::MissingField`] if the body logs no digest, [`Error::ArtifactMismatch`] if the
    /// digests differ or the algorithm is not SHA-2.
    pub fn check_artifact(&self, artifact: &[u8]) -> Result<()> {
        let (algorithm, expected) = self.artifact_digest().ok_or(Error::MissingField {
            message: "canonicalizedBody",
            field: "digest",
        })?;
        let actual = digest(algorithm, artifact).unwrap_or_default();
        if actual != expected {
            return Err(Error::ArtifactMismatch {
                algorithm: algorithm.as_str_name(),
                expected: hex::encode(expected),
                actual: hex::encode(actual),
            });
        }
        Ok(())
    }
}

/// The SHA-2 digest of `data`, or `None` for other algorithms.
#[must_use]
pub fn digest(algorithm: HashAlgorithm, data: &[u8]) -> Option<Vec<u8>> {
    match algorithm {
        HashAlgorithm::Sha2256 => Some(sha2::Sha256::digest(data).to_vec()),
        HashAlgorithm::Sha2384 => Some(sha2::Sha384::digest(data).to_vec()),
        HashAlgorithm::Sha2512 => Some(sha2::Sha512::digest(data).to_vec()),
        _ => None,
    }
}

fn to_u64(field: &'static str, value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| Error::OutOfRange { field, value })
}

fn to_hash(field: impl FnOnce() -> String, bytes: &[u8]) -> Result<Hash> {
    Hash::from_slice(bytes).ok_or_else(|| Error::HashLength {
        field: field(),
        len: bytes.len(),
    })
}

/// Verifies a `TransparencyLogEntry` offline against the trusted log key, trusting nothing in it:
///
/// 1. the log ID is the key's log ID;
/// 2. the body is canonical protojson of an `Entry` whose kind and apiVersion are the ones
///    `kindVersion` declares, and passes [`EntryBody::check`] (for hashedrekord: the client's
///    signature over the digest verifies);
/// 3. the checkpoint in the inclusion proof is signed by the key, for the log's origin, and
///    states the proof's tree size and root;
/// 4. the inclusion proof leads from the body's leaf hash at `logIndex` to that root.
///
/// # Errors
///
/// The first check that fails, as an [`Error`] naming it.
pub fn verify_entry(entry: &TransparencyLogEntry, verifier: &LogVerifier) -> Result<VerifiedEntry> {
    let message = "TransparencyLogEntry";
    let log_id = entry.log_id.as_ref().ok_or(Error::MissingField {
        message,
        field: "logId",
    })?;
    if log_id.key_id.as_slice() != verifier.log_id() {
        return Err(Error::LogIdMismatch {
            expected: hex::encode(verifier.log_id()),
            actual: hex::encode(&log_id.key_id),
        });
    }

    let kind_version = entry.kind_version.as_ref().ok_or(Error::MissingField {
        message,
        field: "kindVersion",
    })?;
    if entry.canonicalized_body.is_empty() {
        return Err(Error::MissingField {
            message,
            field: "canonicalizedBody",
        });
    }
    let body = EntryBody::parse(&entry.canonicalized_body)?;
    if body.kind() != kind_version.kind || body.api_version() != kind_version.version {
        return Err(Error::KindMismatch {
            declared: format!("{}/{}", kind_version.kind, kind_version.version),
            body: format!("{}/{}", body.kind(), body.api_version()),
        });
    }
    body.check()?;

    let proof = entry.inclusion_proof.as_ref().ok_or(Error::MissingField {
        message,
        field: "inclusionProof",
    })?;
    let index = to_u64("logIndex", entry.log_index)?;
    let proof_index = to_u64("inclusionProof.logIndex", proof.log_index)?;
    if index != proof_index {
        return Err(Error::IndexMismatch {
            entry: index,
            proof: proof_index,
        });
    }
    let size = to_u64("inclusionProof.treeSize", proof.tree_size)?;
    let root = to_hash(|| "inclusionProof.rootHash".to_string(), &proof.root_hash)?;
    let hashes = proof
        .hashes
        .iter()
        .enumerate()
        .map(|(i, h)| to_hash(|| format!("inclusionProof.hashes[{i}]"), h))
        .collect::<Result<Vec<_>>>()?;
    let envelope = proof
        .checkpoint
        .as_ref()
        .map(|c| c.envelope.as_str())
        .filter(|e| !e.is_empty())
        .ok_or(Error::MissingField {
            message,
            field: "inclusionProof.checkpoint.envelope",
        })?;
    let checkpoint = SignedCheckpoint::verify(envelope.as_bytes(), verifier)?;
    if checkpoint.checkpoint.size != size {
        return Err(Error::CheckpointMismatch {
            field: "treeSize",
            proof: size.to_string(),
            checkpoint: checkpoint.checkpoint.size.to_string(),
        });
    }
    if checkpoint.root() != root {
        return Err(Error::CheckpointMismatch {
            field: "rootHash",
            proof: root.to_string(),
            checkpoint: checkpoint.root().to_string(),
        });
    }
    let leaf = leaf_hash(&entry.canonicalized_body);
    verify_inclusion(
        &leaf,
        LeafIndex::new(index),
        TreeSize::new(size),
        &hashes,
        &root,
    )
    .map_err(|source| Error::Inclusion {
        index,
        size,
        source,
    })?;
    Ok(VerifiedEntry {
        index,
        leaf_hash: leaf,
        checkpoint,
        body,
    })
}

/// The canonical body a log must store for `request`, computed locally by the log's own rules
/// (so an invalid request is refused before it is sent).
///
/// # Errors
///
/// [`Error::MissingField`] for an empty request, [`Error::BodyRejected`] for an invalid one.
pub fn expected_body(request: &CreateEntryRequest) -> Result<Vec<u8>> {
    let registry = AlgorithmRegistry::default();
    let validated = match &request.spec {
        Some(create_entry_request::Spec::HashedRekordRequestV002(hashed)) => {
            rekor_entries::validate_hashed_rekord(
                &rekor_api::entries_input::hashed_rekord(hashed),
                &registry,
            )
        }
        Some(create_entry_request::Spec::DsseRequestV002(dsse)) => {
            rekor_entries::validate_dsse(&rekor_api::entries_input::dsse(dsse), &registry)
        }
        None => {
            return Err(Error::MissingField {
                message: "CreateEntryRequest",
                field: "spec",
            });
        }
    }
    .map_err(|source| Error::BodyRejected { source })?;
    Ok(validated.canonical)
}

fn hashed_rekord_from_body(body: &HashedRekordLogEntryV002) -> Result<HashedRekordRequest> {
    let data = body.data.as_ref().ok_or(Error::MissingField {
        message: "hashedRekordV002",
        field: "data",
    })?;
    Ok(HashedRekordRequest {
        digest: data.digest.clone(),
        signature: body
            .signature
            .as_ref()
            .map(rekor_api::entries_input::signature),
    })
}
