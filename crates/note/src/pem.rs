//! Private key loading: PEM framing, PKCS#8 (plain and PBES2-encrypted) and SEC1.

use p256::NistP256;
use p384::NistP384;
use pkcs8::der::Decode as _;
use pkcs8::{AssociatedOid as _, EncryptedPrivateKeyInfoRef, ObjectIdentifier, PrivateKeyInfoRef};
use zeroize::Zeroizing;

use crate::NoteError;

/// rsaEncryption, named in errors for RSA keys (rekor-tiles accepts RSA; we do not).
const RSA_OID: &str = "1.2.840.113549.1.1.1";

/// A decoded private key of a supported algorithm.
pub(crate) enum PrivateKey {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
}

/// Decodes the first private-key PEM block of `pem` (an `EC PARAMETERS` block before it, as
/// written by `openssl ecparam -genkey`, is skipped).
///
/// Labels: `PRIVATE KEY` (PKCS#8), `ENCRYPTED PRIVATE KEY` (PKCS#8 PBES2, needs `password`),
/// `EC PRIVATE KEY` (SEC1). A password given for an unencrypted key is ignored, as rekor-tiles
/// does.
pub(crate) fn decode_private_key_pem(
    pem: &[u8],
    password: Option<&[u8]>,
) -> Result<PrivateKey, NoteError> {
    let text = core::str::from_utf8(pem).map_err(|_| NoteError::InvalidPem)?;
    let mut rest = text;
    loop {
        let (_, after_begin) = rest
            .split_once("-----BEGIN ")
            .ok_or(NoteError::InvalidPem)?;
        let (label, body_and_rest) = after_begin
            .split_once("-----")
            .ok_or(NoteError::InvalidPem)?;
        let end_marker = format!("-----END {label}-----");
        let (body, after_end) = body_and_rest
            .split_once(end_marker.as_str())
            .ok_or(NoteError::InvalidPem)?;
        rest = after_end;
        if label == "EC PARAMETERS" {
            continue;
        }
        if body.contains("Proc-Type:") || body.contains("DEK-Info:") {
            return Err(NoteError::LegacyEncryptedPem);
        }
        let block = Zeroizing::new(format!("-----BEGIN {label}-----{body}{end_marker}\n"));
        let (_, der) =
            pkcs8::der::pem::decode_vec(block.as_bytes()).map_err(|_| NoteError::InvalidPem)?;
        let der = Zeroizing::new(der);
        return match label {
            "PRIVATE KEY" => decode_pkcs8(&der),
            "ENCRYPTED PRIVATE KEY" => {
                let password = password.ok_or(NoteError::PasswordRequired)?;
                decode_encrypted_pkcs8(&der, password)
            }
            "EC PRIVATE KEY" => decode_sec1(&der),
            "RSA PRIVATE KEY" => Err(NoteError::UnsupportedKeyAlgorithm {
                oid: RSA_OID.to_owned(),
            }),
            other => Err(NoteError::UnsupportedPemLabel {
                label: other.to_owned(),
            }),
        };
    }
}

/// Decodes an unencrypted PKCS#8 `PrivateKeyInfo` (v1 or v2).
pub(crate) fn decode_pkcs8(der: &[u8]) -> Result<PrivateKey, NoteError> {
    let info = PrivateKeyInfoRef::from_der(der).map_err(|_| NoteError::InvalidPrivateKey)?;
    key_from_info(info)
}

fn decode_encrypted_pkcs8(der: &[u8], password: &[u8]) -> Result<PrivateKey, NoteError> {
    let enc =
        EncryptedPrivateKeyInfoRef::from_der(der).map_err(|_| NoteError::InvalidPrivateKey)?;
    let doc = enc
        .decrypt(password)
        .map_err(|_| NoteError::DecryptionFailed)?;
    // With a wrong password the CBC padding check passes about once in 256 tries; the plaintext
    // is then garbage, so a structure error here also means "wrong password".
    let info =
        PrivateKeyInfoRef::from_der(doc.as_bytes()).map_err(|_| NoteError::DecryptionFailed)?;
    key_from_info(info)
}

fn key_from_info(info: PrivateKeyInfoRef<'_>) -> Result<PrivateKey, NoteError> {
    let oid = info.algorithm.oid;
    if oid == ed25519_dalek::pkcs8::ALGORITHM_OID {
        let key =
            ed25519_dalek::SigningKey::try_from(info).map_err(|_| NoteError::InvalidPrivateKey)?;
        return Ok(PrivateKey::Ed25519(key));
    }
    if oid == p256::elliptic_curve::ALGORITHM_OID {
        let curve = info
            .algorithm
            .parameters_oid()
            .map_err(|_| NoteError::UnsupportedCurve {
                oid: "none".to_owned(),
            })?;
        return if curve == NistP256::OID {
            p256::ecdsa::SigningKey::try_from(info)
                .map(PrivateKey::P256)
                .map_err(|_| NoteError::InvalidPrivateKey)
        } else if curve == NistP384::OID {
            p384::ecdsa::SigningKey::try_from(info)
                .map(PrivateKey::P384)
                .map_err(|_| NoteError::InvalidPrivateKey)
        } else {
            Err(unsupported_curve(Some(curve)))
        };
    }
    Err(NoteError::UnsupportedKeyAlgorithm {
        oid: oid.to_string(),
    })
}

/// Decodes a SEC1 `ECPrivateKey`; the curve comes from its `parameters` field.
fn decode_sec1(der: &[u8]) -> Result<PrivateKey, NoteError> {
    let key = sec1::EcPrivateKey::from_der(der).map_err(|_| NoteError::InvalidPrivateKey)?;
    let curve = match key.parameters {
        Some(sec1::EcParameters::NamedCurve(oid)) => oid,
        None => return Err(unsupported_curve(None)),
    };
    if curve == NistP256::OID {
        p256::SecretKey::try_from(key)
            .map(|sk| PrivateKey::P256(sk.into()))
            .map_err(|_| NoteError::InvalidPrivateKey)
    } else if curve == NistP384::OID {
        p384::SecretKey::try_from(key)
            .map(|sk| PrivateKey::P384(sk.into()))
            .map_err(|_| NoteError::InvalidPrivateKey)
    } else {
        Err(unsupported_curve(Some(curve)))
    }
}

fn unsupported_curve(oid: Option<ObjectIdentifier>) -> NoteError {
    NoteError::UnsupportedCurve {
        oid: oid.map_or_else(|| "none".to_owned(), |o| o.to_string()),
    }
}
