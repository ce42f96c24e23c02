//! Signing keys held outside the process (`--signer-kmskey`): each backend opens the key its URI
//! names, reads its public key once, and signs checkpoints on request through
//! [`rekor_note::ExternalSigner`].
//!
//! | URI | module | tested against |
//! |-----|--------|----------------|
//! | `pkcs11:...` (RFC 7512) | [`pkcs11`] | SoftHSM2 |
//! | `awskms://[endpoint]/key` | [`aws`] | moto's KMS server on 127.0.0.1 |
//! | `gcpkms://projects/...` | [`gcp`] | a loopback server built from the Cloud KMS API's protobuf definitions |

use std::sync::Arc;

use rekor_note::ExternalSigner;

pub mod aws;
pub mod gcp;
pub mod pkcs11;

/// Why a `--signer-kmskey` key could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// The URI names no supported scheme.
    #[error("unsupported key URI {uri:?}: use pkcs11:, awskms:// or gcpkms://")]
    UnsupportedScheme {
        /// The URI as given.
        uri: String,
    },
    /// The URI is malformed for its scheme.
    #[error("invalid {scheme} key URI: {reason}")]
    InvalidUri {
        /// `pkcs11`, `awskms` or `gcpkms`.
        scheme: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The HSM or KMS refused or failed.
    #[error("{scheme}: {reason}")]
    Backend {
        /// `pkcs11`, `awskms` or `gcpkms`.
        scheme: &'static str,
        /// What failed, as the service said it.
        reason: String,
    },
    /// The key's algorithm is not one a log can sign with.
    #[error("{scheme} key type {key_type} is not Ed25519, ECDSA P-256 or P-384")]
    UnsupportedKey {
        /// `pkcs11`, `awskms` or `gcpkms`.
        scheme: &'static str,
        /// The type the service reports.
        key_type: String,
    },
}

/// Opens the key `uri` names.
///
/// # Errors
///
/// [`KmsError`] naming the scheme and what failed.
pub fn open(uri: &str) -> Result<Arc<dyn ExternalSigner>, KmsError> {
    if uri.starts_with("pkcs11:") {
        Ok(Arc::new(pkcs11::Pkcs11Key::open(uri)?))
    } else if uri.starts_with("awskms://") {
        Ok(Arc::new(aws::AwsKmsKey::open(uri)?))
    } else if uri.starts_with("gcpkms://") {
        Ok(Arc::new(gcp::GcpKmsKey::open(uri)?))
    } else {
        Err(KmsError::UnsupportedScheme {
            uri: uri.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_schemes_are_refused() {
        for uri in ["file:///k.pem", "hashivault://k", "", "PKCS11:x"] {
            assert!(
                matches!(open(uri), Err(KmsError::UnsupportedScheme { .. })),
                "{uri}"
            );
        }
    }
}
