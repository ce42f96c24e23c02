//! Loading the log key a client trusts: a public key and origin, a C2SP verifier key, or a
//! Sigstore TrustedRoot.

use rekor_api::trustroot::v1::TrustedRoot;
use rekor_api::{JsonLimits, rekor};
use rekor_note::{KeyName, LogVerifier};

use crate::error::{Error, Result};

/// Largest trusted root file accepted.
const MAX_TRUSTED_ROOT_BYTES: usize = 4 * 1024 * 1024;

fn trust_error(what: &str, reason: impl ToString) -> Error {
    Error::Trust {
        what: what.to_string(),
        reason: reason.to_string(),
    }
}

/// Decodes a PEM block with `label`, or returns the bytes unchanged if they are not PEM.
///
/// # Errors
///
/// [`Error::Trust`] for malformed PEM or a PEM block with another label.
pub fn pem_or_der(bytes: &[u8], label: &str, what: &str) -> Result<Vec<u8>> {
    let text = bytes.trim_ascii_start();
    if !text.starts_with(b"-----BEGIN ") {
        return Ok(bytes.to_vec());
    }
    let (found, der) =
        der::pem::decode_vec(text).map_err(|e| trust_error(what, format!("bad PEM: {e}")))?;
    if found != label {
        return Err(trust_error(
            what,
            format!("expected a PEM {label:?} block, found {found:?}"),
        ));
    }
    Ok(der)
}

/// The origin clients expect from a log at `base_url`: its host name, as sigstore-go derives it
/// from the TrustedRoot `baseUrl`.
///
/// # Errors
///
/// [`Error::InvalidUrl`] if the URL has no host.
pub fn origin_of_url(base_url: &str) -> Result<String> {
    let invalid = |reason| Error::InvalidUrl {
        url: base_url.to_string(),
        reason,
    };
    let url = reqwest::Url::parse(base_url).map_err(|_| invalid("not a URL"))?;
    match url.host_str() {
        Some(host) if !host.is_empty() => Ok(host.to_string()),
        _ => Err(invalid("no host")),
    }
}

/// The verifier for a log key given as a DER or PEM (`PUBLIC KEY`) SubjectPublicKeyInfo, for the
/// log whose checkpoint origin (and note key name) is `origin`.
///
/// # Errors
///
/// [`Error::Trust`] for a malformed key or origin.
pub fn verifier_from_public_key(key: &[u8], origin: &str, what: &str) -> Result<LogVerifier> {
    let der = pem_or_der(key, "PUBLIC KEY", what)?;
    let name = KeyName::new(origin).map_err(|e| trust_error("origin", e))?;
    LogVerifier::from_spki_der(name, &der).map_err(|e| trust_error(what, e))
}

/// The verifier for a C2SP signed-note verifier key (`name+hex8+base64`).
///
/// # Errors
///
/// [`Error::Trust`] for a malformed or unsupported vkey.
pub fn verifier_from_vkey(vkey: &str) -> Result<LogVerifier> {
    LogVerifier::from_vkey(vkey.trim()).map_err(|e| trust_error("verifier key", e))
}

/// The verifier for the log at `base_url` in a Sigstore TrustedRoot (protojson).
///
/// The log is the `tlogs[]` entry whose `baseUrl` equals `base_url` (ignoring a trailing `/`), or
/// the only entry if there is just one. Its origin is `origin` if given, else the host of its
/// `baseUrl`. The root's `logId` must be the key's log ID for that origin.
///
/// # Errors
///
/// [`Error::InvalidJson`] for a file that is not a TrustedRoot; [`Error::Trust`] when no log or
/// several match, or the key or log ID do not fit.
pub fn verifier_from_trusted_root(
    json: &[u8],
    base_url: &str,
    origin: Option<&str>,
) -> Result<LogVerifier> {
    let what = "trusted root";
    let root: TrustedRoot = rekor_api::from_json(
        json,
        JsonLimits {
            max_bytes: MAX_TRUSTED_ROOT_BYTES,
            ..JsonLimits::default()
        },
    )
    .map_err(|source| Error::InvalidJson {
        what: what.to_string(),
        message: "TrustedRoot",
        source,
    })?;
    let wanted = base_url.trim_end_matches('/');
    let matching: Vec<_> = root
        .tlogs
        .iter()
        .filter(|t| t.base_url.trim_end_matches('/') == wanted)
        .collect();
    let tlog = match (matching.as_slice(), root.tlogs.as_slice()) {
        ([one], _) => *one,
        ([], [one]) => one,
        ([], []) => return Err(trust_error(what, "it lists no transparency logs")),
        ([], _) => {
            return Err(trust_error(
                what,
                format!("no tlogs entry has baseUrl {wanted}"),
            ));
        }
        _ => {
            return Err(trust_error(
                what,
                format!("several tlogs entries have baseUrl {wanted}"),
            ));
        }
    };
    let key = tlog
        .public_key
        .as_ref()
        .and_then(|k| k.raw_bytes.as_deref())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| trust_error(what, "the log has no publicKey.rawBytes"))?;
    let origin = match origin {
        Some(origin) => origin.to_string(),
        None => origin_of_url(&tlog.base_url)?,
    };
    let verifier = verifier_from_public_key(key, &origin, what)?;
    if let Some(rekor_api::common::v1::LogId { key_id }) = &tlog.log_id
        && key_id.as_slice() != verifier.log_id()
    {
        return Err(trust_error(
            what,
            format!(
                "its logId {} is not the key's log ID {} for origin {origin:?} (is the origin right?)",
                hex::encode(key_id),
                hex::encode(verifier.log_id())
            ),
        ));
    }
    Ok(verifier)
}

/// Reads a `TransparencyLogEntry` from protojson, as written by `rekor-cli upload` and
/// sigstore clients.
///
/// # Errors
///
/// [`Error::InvalidJson`] naming `what`.
pub fn entry_from_json(json: &[u8], what: &str) -> Result<rekor::v1::TransparencyLogEntry> {
    rekor_api::from_json(json, JsonLimits::default()).map_err(|source| Error::InvalidJson {
        what: what.to_string(),
        message: "TransparencyLogEntry",
        source,
    })
}

/// Reads a Sigstore bundle from protojson and returns its first transparency log entry.
///
/// # Errors
///
/// [`Error::InvalidJson`] naming `what`, or [`Error::MissingField`] if it has no tlog entry.
pub fn bundle_from_json(
    json: &[u8],
    what: &str,
) -> Result<(
    rekor_api::bundle::v1::Bundle,
    rekor::v1::TransparencyLogEntry,
)> {
    let bundle: rekor_api::bundle::v1::Bundle = rekor_api::from_json(json, JsonLimits::default())
        .map_err(|source| Error::InvalidJson {
        what: what.to_string(),
        message: "Bundle",
        source,
    })?;
    let entry = bundle
        .verification_material
        .as_ref()
        .and_then(|m| m.tlog_entries.first())
        .cloned()
        .ok_or(Error::MissingField {
            message: "Bundle",
            field: "verificationMaterial.tlogEntries[0]",
        })?;
    Ok((bundle, entry))
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use rekor_note::LogSigner;

    use super::*;

    fn signer() -> LogSigner {
        LogSigner::from_ed25519_seed([7; 32], KeyName::new("log.example.dev").unwrap())
    }

    #[test]
    fn public_key_as_pem_or_der() {
        let signer = signer();
        let der = signer.public_key_der();
        let pem = der::pem::encode_string("PUBLIC KEY", der::pem::LineEnding::LF, &der).unwrap();
        for input in [der.clone(), pem.into_bytes()] {
            let v = verifier_from_public_key(&input, "log.example.dev", "key").unwrap();
            assert_eq!(v.log_id(), signer.log_id());
        }
        // The Ed25519 log ID covers the origin: another origin is another log.
        let other = verifier_from_public_key(&der, "other.example.dev", "key").unwrap();
        assert_ne!(other.log_id(), signer.log_id());
        let cert_pem = der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &der)
            .unwrap()
            .into_bytes();
        assert!(matches!(
            verifier_from_public_key(&cert_pem, "log.example.dev", "key"),
            Err(Error::Trust { reason, .. }) if reason.contains("CERTIFICATE")
        ));
        assert!(verifier_from_public_key(b"garbage", "log.example.dev", "key").is_err());
    }

    #[test]
    fn trusted_root_selects_the_log_by_url_and_checks_the_log_id() {
        let signer = signer();
        let tlog = |url: &str, log_id: &[u8]| {
            serde_json::json!({
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {"rawBytes": STANDARD.encode(signer.public_key_der()),
                              "keyDetails": "PKIX_ED25519"},
                "logId": {"keyId": STANDARD.encode(log_id)},
            })
        };
        let root = serde_json::json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [tlog("https://other.example.dev", &[1; 32]),
                      tlog("https://log.example.dev", &signer.log_id())],
        });
        let json = serde_json::to_vec(&root).unwrap();
        let v = verifier_from_trusted_root(&json, "https://log.example.dev/", None).unwrap();
        assert_eq!(v.log_id(), signer.log_id());
        // Unknown URL with two logs: refused.
        assert!(matches!(
            verifier_from_trusted_root(&json, "https://third.example.dev", None),
            Err(Error::Trust { .. })
        ));
        // The wrong origin makes the Ed25519 log ID disagree with the root's logId.
        assert!(matches!(
            verifier_from_trusted_root(&json, "https://log.example.dev", Some("localhost")),
            Err(Error::Trust { reason, .. }) if reason.contains("logId")
        ));
        assert!(matches!(
            verifier_from_trusted_root(b"{\"bogus\":1}", "https://log.example.dev", None),
            Err(Error::InvalidJson { .. })
        ));
    }

    #[test]
    fn origin_is_the_host() {
        assert_eq!(origin_of_url("http://localhost:3000").unwrap(), "localhost");
        assert_eq!(
            origin_of_url("https://log2026-1.example.dev/").unwrap(),
            "log2026-1.example.dev"
        );
        assert!(origin_of_url("nonsense").is_err());
    }
}
