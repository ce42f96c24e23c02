//! Verifier keys: parsing a DER SubjectPublicKeyInfo or an X.509 certificate into a key that
//! checks client signatures over a digest.

use core::fmt;

use aws_lc_rs::digest::Digest;
use aws_lc_rs::signature::{self as lc, ParsedPublicKey};
use der::asn1::{AnyRef, ObjectIdentifier, UintRef};
use der::{Decode, Reader, SliceReader};
use ed25519_dalek::ed25519::signature::digest;
use spki::SubjectPublicKeyInfoRef;

use crate::algorithm::SigningAlgorithm;
use crate::error::{EntryError, KeyProblem, VerifierAt};
use crate::input::VerifierKey;

/// `rsaEncryption` (RFC 8017).
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// `id-ecPublicKey` (RFC 5480).
const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// `id-Ed25519` (RFC 8410).
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// `secp256r1` (RFC 5480).
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// `secp384r1` (RFC 5480).
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
/// `secp521r1` (RFC 5480).
const OID_P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");

/// The longest IEEE P1363 (`r ‖ s`) ECDSA signature accepted, as sigstore's Go verifier does.
const MAX_P1363_SIGNATURE_LEN: usize = 132;

/// The kind of a parsed public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyType {
    /// An RSA key.
    Rsa {
        /// The modulus length in bits.
        modulus_bits: usize,
    },
    /// An EC key on P-256.
    EcdsaP256,
    /// An EC key on P-384.
    EcdsaP384,
    /// An EC key on P-521.
    EcdsaP521,
    /// An Ed25519 key.
    Ed25519,
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rsa { modulus_bits } => write!(f, "an RSA-{modulus_bits} key"),
            Self::EcdsaP256 => f.write_str("an EC P-256 key"),
            Self::EcdsaP384 => f.write_str("an EC P-384 key"),
            Self::EcdsaP521 => f.write_str("an EC P-521 key"),
            Self::Ed25519 => f.write_str("an Ed25519 key"),
        }
    }
}

impl KeyType {
    /// Whether a key of this type can be used with `algorithm` (type, curve and exact RSA size).
    #[must_use]
    pub const fn fits(&self, algorithm: SigningAlgorithm) -> bool {
        use SigningAlgorithm as A;
        matches!(
            (self, algorithm),
            (Self::Rsa { modulus_bits: 2048 }, A::RsaPkcs1v15_2048Sha256)
                | (Self::Rsa { modulus_bits: 3072 }, A::RsaPkcs1v15_3072Sha256)
                | (Self::Rsa { modulus_bits: 4096 }, A::RsaPkcs1v15_4096Sha256)
                | (Self::EcdsaP256, A::EcdsaP256Sha256)
                | (Self::EcdsaP384, A::EcdsaP384Sha384)
                | (Self::EcdsaP521, A::EcdsaP521Sha512)
                | (Self::Ed25519, A::Ed25519ph)
        )
    }
}

/// A parsed client public key, ready to verify signatures over digests.
#[derive(Clone, Debug)]
pub struct VerificationKey {
    key_type: KeyType,
    inner: Inner,
}

#[derive(Clone, Debug)]
enum Inner {
    /// ECDSA (ASN.1 DER signatures) or RSA PKCS#1 v1.5, in aws-lc.
    AwsLc(ParsedPublicKey),
    /// Ed25519, in ed25519-dalek.
    Ed25519(ed25519_dalek::VerifyingKey),
}

/// A key-parsing failure before it is tied to a verifier's position.
enum ParseFailure {
    Der(der::Error),
    Problem(KeyProblem),
}

impl From<der::Error> for ParseFailure {
    fn from(e: der::Error) -> Self {
        Self::Der(e)
    }
}

impl From<KeyProblem> for ParseFailure {
    fn from(p: KeyProblem) -> Self {
        Self::Problem(p)
    }
}

impl VerificationKey {
    /// Parses a verifier's key: a DER SubjectPublicKeyInfo, or a DER X.509 certificate of
    /// which only the public key is used. `at` names the verifier in errors.
    ///
    /// # Errors
    /// [`EntryError::MalformedPublicKey`] or [`EntryError::InvalidCertificate`] when the DER
    /// does not decode, [`EntryError::InvalidPublicKey`] when the key is not a usable RSA,
    /// P-256/384/521 or Ed25519 key.
    pub fn from_verifier_key(key: &VerifierKey, at: VerifierAt) -> Result<Self, EntryError> {
        match key {
            VerifierKey::PublicKey(der) => {
                let spki = SubjectPublicKeyInfoRef::from_der(der)
                    .map_err(|source| EntryError::MalformedPublicKey { at, source })?;
                Self::from_parts(
                    spki.algorithm.oid,
                    spki.algorithm.parameters,
                    spki.subject_public_key.as_bytes(),
                )
                .map_err(|f| failure(f, at))
            }
            VerifierKey::Certificate(der) => {
                let cert = x509_cert::Certificate::from_der(der)
                    .map_err(|source| EntryError::InvalidCertificate { at, source })?;
                let spki = cert.tbs_certificate().subject_public_key_info();
                Self::from_parts(
                    spki.algorithm.oid,
                    spki.algorithm.parameters.as_ref().map(AnyRef::from),
                    spki.subject_public_key.as_bytes(),
                )
                .map_err(|f| failure(f, at))
            }
        }
    }

    /// Builds the key from a SubjectPublicKeyInfo's algorithm OID, parameters and key bits
    /// (`None` when the BIT STRING has unused bits).
    fn from_parts(
        oid: ObjectIdentifier,
        params: Option<AnyRef<'_>>,
        key: Option<&[u8]>,
    ) -> Result<Self, ParseFailure> {
        let key = key.ok_or(KeyProblem::UnusedBits)?;
        if oid == OID_EC {
            let curve: ObjectIdentifier = params
                .ok_or(KeyProblem::BadParameters)?
                .decode_as()
                .map_err(|_| KeyProblem::UnsupportedCurve)?;
            let (key_type, alg, coord_len) = if curve == OID_P256 {
                (KeyType::EcdsaP256, &lc::ECDSA_P256_SHA256_ASN1, 32)
            } else if curve == OID_P384 {
                (KeyType::EcdsaP384, &lc::ECDSA_P384_SHA384_ASN1, 48)
            } else if curve == OID_P521 {
                (KeyType::EcdsaP521, &lc::ECDSA_P521_SHA512_ASN1, 66)
            } else {
                return Err(KeyProblem::UnsupportedCurve.into());
            };
            // Uncompressed points only, as Go's x509.ParsePKIXPublicKey requires.
            if key.first() != Some(&0x04) || key.len() != 1 + 2 * coord_len {
                return Err(KeyProblem::InvalidPoint.into());
            }
            let parsed = ParsedPublicKey::new(alg, key).map_err(|_| KeyProblem::InvalidPoint)?;
            Ok(Self {
                key_type,
                inner: Inner::AwsLc(parsed),
            })
        } else if oid == OID_RSA {
            // RFC 8017 requires NULL parameters; Go refuses RSA keys without them.
            if params.map(|p| der::Tagged::tag(&p)) != Some(der::Tag::Null) {
                return Err(KeyProblem::BadParameters.into());
            }
            let modulus_bits = rsa_modulus_bits(key).ok_or(KeyProblem::InvalidRsaKey)?;
            let parsed = ParsedPublicKey::new(&lc::RSA_PKCS1_2048_8192_SHA256, key)
                .map_err(|_| KeyProblem::InvalidRsaKey)?;
            Ok(Self {
                key_type: KeyType::Rsa { modulus_bits },
                inner: Inner::AwsLc(parsed),
            })
        } else if oid == OID_ED25519 {
            if params.is_some() {
                return Err(KeyProblem::BadParameters.into());
            }
            let bytes: &[u8; 32] = key.try_into().map_err(|_| KeyProblem::InvalidEd25519Key)?;
            let vk = ed25519_dalek::VerifyingKey::from_bytes(bytes)
                .map_err(|_| KeyProblem::InvalidEd25519Key)?;
            Ok(Self {
                key_type: KeyType::Ed25519,
                inner: Inner::Ed25519(vk),
            })
        } else {
            Err(KeyProblem::UnsupportedAlgorithm.into())
        }
    }

    /// The key's type.
    #[must_use]
    pub const fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// Verifies `signature` over `digest` (the output of `algorithm`'s hash).
    ///
    /// ECDSA signatures are ASN.1 DER; like sigstore's Go verifier, a signature that does not
    /// parse as an ASN.1 `SEQUENCE { INTEGER, INTEGER }` is read as IEEE P1363 `r ‖ s`.
    /// RSA is PKCS#1 v1.5; Ed25519ph is RFC 8032 with an empty context, verified strictly.
    ///
    /// Returns `false` when the signature does not verify, and also when `algorithm` does not
    /// fit the key or `digest` has the wrong length (check those first for a precise error).
    #[must_use]
    pub fn verify_digest(
        &self,
        algorithm: SigningAlgorithm,
        digest: &[u8],
        signature: &[u8],
    ) -> bool {
        if !self.key_type.fits(algorithm) {
            return false;
        }
        match &self.inner {
            Inner::AwsLc(key) => {
                let Ok(digest) = Digest::import_less_safe(digest, algorithm.hash().aws_lc()) else {
                    return false;
                };
                if matches!(self.key_type, KeyType::Rsa { .. }) || is_go_asn1_signature(signature) {
                    return key.verify_digest_sig(&digest, signature).is_ok();
                }
                match p1363_to_der(signature) {
                    Some(der) => key.verify_digest_sig(&digest, &der).is_ok(),
                    None => false,
                }
            }
            Inner::Ed25519(key) => {
                let Ok(prehash) = <[u8; 64]>::try_from(digest) else {
                    return false;
                };
                let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
                    return false;
                };
                key.verify_prehashed_strict(Sha512Prehash(prehash), None, &signature)
                    .is_ok()
            }
        }
    }
}

fn failure(f: ParseFailure, at: VerifierAt) -> EntryError {
    match f {
        ParseFailure::Der(source) => EntryError::MalformedPublicKey { at, source },
        ParseFailure::Problem(problem) => EntryError::InvalidPublicKey { at, problem },
    }
}

/// The bit length of the modulus of a DER `RSAPublicKey ::= SEQUENCE { n INTEGER, e INTEGER }`.
fn rsa_modulus_bits(der: &[u8]) -> Option<usize> {
    let mut reader = SliceReader::new(der).ok()?;
    let n = reader
        .sequence(|r: &mut SliceReader<'_>| {
            let n = UintRef::decode(r)?;
            let _e = UintRef::decode(r)?;
            Ok::<_, der::Error>(n)
        })
        .ok()?;
    reader.finish().ok()?;
    let bytes = n.as_bytes();
    let first = *bytes.first()?;
    let lead_bits = usize::try_from(first.leading_zeros()).ok()?;
    bytes.len().checked_mul(8)?.checked_sub(lead_bits)
}

/// One DER-style TLV with a short or minimal long-form length: `(tag, content, rest)`.
fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        // Indefinite (0x80) and over-long lengths are not DER.
        if count == 0 || count > 4 {
            return None;
        }
        let (len_bytes, after) = rest.split_at_checked(count)?;
        rest = after;
        if len_bytes.first() == Some(&0) {
            return None;
        }
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        if len < 0x80 {
            return None;
        }
        len
    };
    let (content, rest) = rest.split_at_checked(len)?;
    Some((tag, content, rest))
}

/// A non-empty, minimally encoded INTEGER body (either sign).
fn is_minimal_integer(body: &[u8]) -> bool {
    match body {
        [] => false,
        [0x00, next, ..] => next & 0x80 != 0,
        [0xff, next, ..] => next & 0x80 == 0,
        _ => true,
    }
}

/// Whether Go's `encoding/asn1` would read `sig` as `SEQUENCE { INTEGER, INTEGER }`: the
/// choice sigstore's ECDSA verifier makes between ASN.1 and IEEE P1363. Go allows bytes after
/// the sequence and extra elements inside it; the strict DER verify then decides.
fn is_go_asn1_signature(sig: &[u8]) -> bool {
    let Some((0x30, body, _)) = read_tlv(sig) else {
        return false;
    };
    let Some((0x02, r, after_r)) = read_tlv(body) else {
        return false;
    };
    let Some((0x02, s, _)) = read_tlv(after_r) else {
        return false;
    };
    is_minimal_integer(r) && is_minimal_integer(s)
}

/// Converts an IEEE P1363 `r ‖ s` signature (even length, at most 132 bytes, halves read as
/// unsigned big-endian integers) to ASN.1 DER.
fn p1363_to_der(sig: &[u8]) -> Option<Vec<u8>> {
    if sig.is_empty() || sig.len() > MAX_P1363_SIGNATURE_LEN || !sig.len().is_multiple_of(2) {
        return None;
    }
    let (r, s) = sig.split_at(sig.len() / 2);
    let mut body = Vec::with_capacity(sig.len() + 6);
    push_der_uint(&mut body, r);
    push_der_uint(&mut body, s);
    let mut out = Vec::with_capacity(body.len() + 3);
    out.push(0x30);
    push_der_len(&mut out, body.len())?;
    out.extend_from_slice(&body);
    Some(out)
}

fn push_der_uint(out: &mut Vec<u8>, value: &[u8]) {
    let start = value.iter().position(|b| *b != 0).unwrap_or(value.len());
    let trimmed = value.get(start..).unwrap_or_default();
    let pad = trimmed.first().is_none_or(|b| b & 0x80 != 0);
    out.push(0x02);
    // At most 67 bytes, so the length always fits the short form.
    out.push(u8::try_from(trimmed.len() + usize::from(pad)).unwrap_or(u8::MAX));
    if pad {
        out.push(0);
    }
    out.extend_from_slice(trimmed);
}

fn push_der_len(out: &mut Vec<u8>, len: usize) -> Option<()> {
    let byte = u8::try_from(len).ok()?;
    if byte >= 0x80 {
        out.push(0x81);
    }
    out.push(byte);
    Some(())
}

/// A SHA-512 "hasher" that already holds its output: ed25519-dalek's Ed25519ph verification
/// takes a hasher, and a hashedrekord server has only the 64-byte digest.
#[derive(Clone)]
struct Sha512Prehash([u8; 64]);

impl Default for Sha512Prehash {
    fn default() -> Self {
        Self([0; 64])
    }
}

impl digest::HashMarker for Sha512Prehash {}

impl digest::OutputSizeUser for Sha512Prehash {
    type OutputSize = digest::consts::U64;
}

impl digest::Update for Sha512Prehash {
    /// Never called by the prehashed verification; the digest is fixed at construction.
    fn update(&mut self, _data: &[u8]) {}
}

impl digest::FixedOutput for Sha512Prehash {
    fn finalize_into(self, out: &mut digest::Output<Self>) {
        out.copy_from_slice(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_rules() {
        assert!(read_tlv(&[0x30, 0x00]).is_some());
        assert!(read_tlv(&[0x30, 0x80]).is_none(), "indefinite length");
        assert!(
            read_tlv(&[0x30, 0x81, 0x05, 0, 0, 0, 0, 0]).is_none(),
            "non-minimal long form"
        );
        assert!(read_tlv(&[0x30, 0x02, 0x00]).is_none(), "truncated");
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([0u8; 0x80]);
        assert!(read_tlv(&long).is_some());
    }

    #[test]
    fn minimal_integers() {
        assert!(is_minimal_integer(&[0x00]));
        assert!(is_minimal_integer(&[0x00, 0x80]));
        assert!(!is_minimal_integer(&[0x00, 0x7f]));
        assert!(!is_minimal_integer(&[0xff, 0x80]));
        assert!(is_minimal_integer(&[0xff, 0x7f]));
        assert!(!is_minimal_integer(&[]));
    }

    #[test]
    fn p1363_conversion() {
        let mut sig = vec![0u8; 64];
        sig[0] = 0x80; // r needs a zero pad
        sig[63] = 0x01; // s = 1 after stripping zeros
        let der = p1363_to_der(&sig).unwrap();
        assert!(is_go_asn1_signature(&der));
        assert_eq!(der[..4], [0x30, 2 + 33 + 3, 0x02, 33]);
        assert_eq!(der[der.len() - 3..], [0x02, 0x01, 0x01]);
        assert!(p1363_to_der(&[1, 2, 3]).is_none());
        assert!(p1363_to_der(&[0; 134]).is_none());
        // A 132-byte P-521 signature needs the long-form sequence length.
        let der = p1363_to_der(&[0xff; 132]).unwrap();
        assert_eq!(der[..3], [0x30, 0x81, 2 * (2 + 67)]);
    }

    #[test]
    fn rsa_modulus_bit_length() {
        // SEQUENCE { INTEGER 0x00 0x80 0x00 (16 bits), INTEGER 3 }
        assert_eq!(
            rsa_modulus_bits(&[0x30, 0x08, 0x02, 0x03, 0x00, 0x80, 0x00, 0x02, 0x01, 0x03]),
            Some(16)
        );
        // SEQUENCE { INTEGER 0x01 0x00 (9 bits), INTEGER 3 }
        assert_eq!(
            rsa_modulus_bits(&[0x30, 0x07, 0x02, 0x02, 0x01, 0x00, 0x02, 0x01, 0x03]),
            Some(9)
        );
        assert_eq!(rsa_modulus_bits(&[0x30, 0x00]), None);
    }
}
