//! Search terms: what the log's search index finds an entry by.
//!
//! An entry is found by
//! - the digest it logs: a hashedrekord's `data` digest, a DSSE entry's `payloadHash`
//!   ([`TermKind::Digest`], written `sha256:<hex>`, `sha384:<hex>` or `sha512:<hex>`);
//! - each key that signed it: SHA-256 of the verifier's DER SubjectPublicKeyInfo, the leaf
//!   certificate's for an X.509 verifier ([`TermKind::Key`], written `sha256:<hex>`);
//! - each identity in a verifier certificate's subject alternative names, e-mail addresses
//!   and URIs, exactly as the certificate spells them ([`TermKind::Identity`]).
//!
//! The terms are derived from the entry's logged bytes alone, so anyone holding the entry
//! bundles derives the same index: the index never decides what the log contains. The index
//! stores each term as its [`SearchTerm::index_key`], a domain-separated SHA-256, so a
//! term's length never matters to storage.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use der::Decode as _;
use std::borrow::Cow;

use serde::Deserialize;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

pub mod commitment;

pub use crate::error::TermError;

/// The longest identity a query may name (and the index records).
pub const MAX_IDENTITY_LEN: usize = 1024;

/// What a search term is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TermKind {
    /// An artifact (or DSSE payload) digest.
    Digest,
    /// The SHA-256 of a signer's DER SubjectPublicKeyInfo.
    Key,
    /// A subject alternative name (e-mail or URI) of a signer's certificate.
    Identity,
}

impl TermKind {
    /// The query parameter that names this kind (`digest`, `key`, `identity`).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Digest => "digest",
            Self::Key => "key",
            Self::Identity => "identity",
        }
    }

    const fn tag(self) -> u8 {
        match self {
            Self::Digest => 1,
            Self::Key => 2,
            Self::Identity => 3,
        }
    }
}

/// One term an entry can be found by, in its canonical text form.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SearchTerm {
    kind: TermKind,
    value: String,
}

/// The digest algorithms entries record, with their names in terms and in protojson.
const DIGESTS: [(&str, &str, usize); 3] = [
    ("sha256", "SHA2_256", 32),
    ("sha384", "SHA2_384", 48),
    ("sha512", "SHA2_512", 64),
];

impl SearchTerm {
    /// A digest term from a query value such as `sha256:<hex>` (hex in either case).
    ///
    /// # Errors
    ///
    /// [`TermError`] naming what is wrong with the value.
    pub fn digest(query: &str) -> Result<Self, TermError> {
        let (algorithm, len) = parse_algorithm_hex(query, TermKind::Digest, &DIGESTS)?;
        Ok(Self::from_parts(TermKind::Digest, algorithm, query, len))
    }

    /// A key term from a query value `sha256:<hex of the DER SubjectPublicKeyInfo's SHA-256>`.
    ///
    /// # Errors
    ///
    /// [`TermError`] naming what is wrong with the value.
    pub fn key(query: &str) -> Result<Self, TermError> {
        let (algorithm, len) = parse_algorithm_hex(query, TermKind::Key, &DIGESTS[..1])?;
        Ok(Self::from_parts(TermKind::Key, algorithm, query, len))
    }

    /// An identity term: an e-mail address or URI, matched exactly as certificates spell it.
    ///
    /// # Errors
    ///
    /// [`TermError::BadIdentity`] for an empty or overlong value or one with control characters.
    pub fn identity(query: &str) -> Result<Self, TermError> {
        if query.is_empty() || query.len() > MAX_IDENTITY_LEN || query.chars().any(char::is_control)
        {
            return Err(TermError::BadIdentity);
        }
        Ok(Self {
            kind: TermKind::Identity,
            value: query.to_string(),
        })
    }

    /// Builds a term of `kind` from its query value (see [`SearchTerm::digest`],
    /// [`SearchTerm::key`], [`SearchTerm::identity`]).
    ///
    /// # Errors
    ///
    /// [`TermError`] naming what is wrong with the value.
    pub fn parse(kind: TermKind, query: &str) -> Result<Self, TermError> {
        match kind {
            TermKind::Digest => Self::digest(query),
            TermKind::Key => Self::key(query),
            TermKind::Identity => Self::identity(query),
        }
    }

    fn from_parts(kind: TermKind, algorithm: &str, query: &str, len: usize) -> Self {
        let hex_part = query.get(algorithm.len() + 1..).unwrap_or_default();
        debug_assert_eq!(hex_part.len(), 2 * len);
        Self {
            kind,
            value: format!("{algorithm}:{}", hex_part.to_ascii_lowercase()),
        }
    }

    fn from_digest(kind: TermKind, algorithm: &str, digest: &[u8]) -> Self {
        Self {
            kind,
            value: format!("{algorithm}:{}", hex_lower(digest)),
        }
    }

    /// The kind of term.
    #[must_use]
    pub const fn kind(&self) -> TermKind {
        self.kind
    }

    /// The canonical value (`sha256:<lowercase hex>`, or the identity as given).
    #[must_use]
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The key the index stores this term under:
    /// SHA-256(`"rekor-search-term/v1"` ‖ 0x00 ‖ kind tag ‖ 0x00 ‖ value).
    #[must_use]
    pub fn index_key(&self) -> [u8; 32] {
        let mut input = Vec::with_capacity(24 + self.value.len());
        input.extend_from_slice(b"rekor-search-term/v1\0");
        input.push(self.kind.tag());
        input.push(0);
        input.extend_from_slice(self.value.as_bytes());
        sha256(&input)
    }
}

impl std::fmt::Display for SearchTerm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.kind.name(), self.value)
    }
}

fn parse_algorithm_hex(
    query: &str,
    kind: TermKind,
    allowed: &'static [(&'static str, &'static str, usize)],
) -> Result<(&'static str, usize), TermError> {
    let name = kind.name();
    let (algorithm, hex_part) = query
        .split_once(':')
        .ok_or(TermError::NotAlgorithmHex { kind: name })?;
    let &(canonical, _, len) = allowed
        .iter()
        .find(|(a, _, _)| a.eq_ignore_ascii_case(algorithm))
        .ok_or_else(|| TermError::UnsupportedAlgorithm {
            kind: name,
            algorithm: algorithm.chars().take(32).collect(),
            supported: if allowed.len() == 1 {
                "sha256"
            } else {
                "sha256, sha384, sha512"
            },
        })?;
    if hex_part.len() != 2 * len || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TermError::BadHex {
            kind: name,
            algorithm: canonical,
            expected: 2 * len,
        });
    }
    Ok((canonical, len))
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

// The parts of a logged entry the terms come from. Unknown fields are ignored: terms are
// derived from whatever the log holds, and an entry kind this crate does not know has none.
// The bodies borrow their strings from the entry (escapes, which a canonical body never has
// in these fields, are unescaped into owned ones): a search confirms every candidate and the
// indexer reads every entry, so allocations here are paid per entry.
#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    spec: BodySpec<'a>,
}

#[derive(Deserialize)]
struct BodySpec<'a> {
    #[serde(rename = "hashedRekordV002", borrow)]
    hashed_rekord: Option<BodyHashedRekord<'a>>,
    #[serde(rename = "dsseV002", borrow)]
    dsse: Option<BodyDsse<'a>>,
}

#[derive(Deserialize)]
struct BodyHashedRekord<'a> {
    #[serde(borrow)]
    data: BodyHash<'a>,
    #[serde(borrow)]
    signature: BodySignature<'a>,
}

#[derive(Deserialize)]
struct BodyDsse<'a> {
    #[serde(rename = "payloadHash", borrow)]
    payload_hash: BodyHash<'a>,
    #[serde(default, borrow)]
    signatures: Vec<BodySignature<'a>>,
}

#[derive(Deserialize)]
struct BodyHash<'a> {
    #[serde(borrow)]
    algorithm: Cow<'a, str>,
    #[serde(borrow)]
    digest: Cow<'a, str>,
}

#[derive(Deserialize)]
struct BodySignature<'a> {
    #[serde(borrow)]
    verifier: BodyVerifier<'a>,
}

#[derive(Deserialize)]
struct BodyVerifier<'a> {
    #[serde(rename = "publicKey", borrow)]
    public_key: Option<BodyRawBytes<'a>>,
    #[serde(rename = "x509Certificate", borrow)]
    x509_certificate: Option<BodyRawBytes<'a>>,
}

#[derive(Deserialize)]
struct BodyRawBytes<'a> {
    #[serde(rename = "rawBytes", borrow)]
    raw_bytes: Cow<'a, str>,
}

/// The terms an entry is found by, sorted and without repeats. An entry that is not JSON of
/// a known kind, or a part that does not decode (a certificate that does not parse, say),
/// contributes no terms for that part: the index reflects the log, it does not judge it.
#[must_use]
pub fn search_terms(entry: &[u8]) -> Vec<SearchTerm> {
    let Ok(body) = serde_json::from_slice::<Body<'_>>(entry) else {
        return Vec::new();
    };
    let mut terms = Vec::new();
    let (hash, signatures) = match (body.spec.hashed_rekord, body.spec.dsse) {
        (Some(h), _) => (h.data, vec![h.signature]),
        (None, Some(d)) => (d.payload_hash, d.signatures),
        (None, None) => return terms,
    };
    if let Some(&(name, _, len)) = DIGESTS
        .iter()
        .find(|(_, proto, _)| *proto == hash.algorithm)
        && let Ok(digest) = STANDARD.decode(hash.digest.as_bytes())
        && digest.len() == len
    {
        terms.push(SearchTerm::from_digest(TermKind::Digest, name, &digest));
    }
    for signature in signatures {
        let verifier = signature.verifier;
        if let Some(key) = verifier.public_key
            && let Ok(spki) = STANDARD.decode(key.raw_bytes.as_bytes())
        {
            terms.push(SearchTerm::from_digest(
                TermKind::Key,
                "sha256",
                &sha256(&spki),
            ));
        }
        if let Some(cert) = verifier.x509_certificate
            && let Ok(der) = STANDARD.decode(cert.raw_bytes.as_bytes())
        {
            certificate_terms(&der, &mut terms);
        }
    }
    terms.sort();
    terms.dedup();
    terms
}

/// The terms a verifier certificate (DER) contributes to its entry: the SHA-256 of its
/// SubjectPublicKeyInfo as a [`TermKind::Key`], and each e-mail and URI subject alternative name
/// as a [`TermKind::Identity`], in certificate order. A certificate that does not parse has none.
/// This is what `search_terms` takes from each certificate, for naming a signer exactly as the
/// index knows it.
#[must_use]
pub fn certificate_search_terms(der: &[u8]) -> Vec<SearchTerm> {
    let mut terms = Vec::new();
    certificate_terms(der, &mut terms);
    terms
}

fn certificate_terms(der: &[u8], terms: &mut Vec<SearchTerm>) {
    let Ok((spki, alt_names)) = certificate_parts(der) else {
        return;
    };
    terms.push(SearchTerm::from_digest(
        TermKind::Key,
        "sha256",
        &sha256(spki),
    ));
    let names = alt_names
        .into_iter()
        .filter_map(|value| SubjectAltName::from_der(value).ok());
    for name in names.flat_map(|names| names.0) {
        let value = match &name {
            GeneralName::Rfc822Name(s) | GeneralName::UniformResourceIdentifier(s) => s.as_str(),
            _ => continue,
        };
        if let Ok(term) = SearchTerm::identity(value) {
            terms.push(term);
        }
    }
}

/// The DER of the subjectAltName extension's identifier, 2.5.29.17.
const SUBJECT_ALT_NAME_OID: [u8; 5] = [0x06, 0x03, 0x55, 0x1d, 0x11];

/// The parts of a certificate (DER) that give its terms: its SubjectPublicKeyInfo, as encoded,
/// and the value of each subjectAltName extension (RFC 5280 allows one; a full decode reads
/// them all, and so does this).
///
/// Only the structure is walked: every field of the Certificate and its TBSCertificate by its
/// tag (RFC 5280, 4.1), the extensions one by one, DER lengths throughout and nothing after
/// the end. Decoding the whole certificate instead cost about 4 us of a certificate entry's
/// 7 us of terms, and every entry indexed and every search candidate is parsed. The encoded
/// SubjectPublicKeyInfo is the one a full decode would re-encode: DER has one encoding per
/// value.
fn certificate_parts(der: &[u8]) -> der::Result<(&[u8], Vec<&[u8]>)> {
    use der::{Header, Reader as _, SliceReader, Tag, TagNumber};

    fn explicit(number: u32) -> Tag {
        Tag::ContextSpecific {
            constructed: true,
            number: TagNumber(number),
        }
    }
    /// The next field, whole, if it has `tag`.
    fn field<'a>(reader: &mut SliceReader<'a>, tag: Tag) -> der::Result<&'a [u8]> {
        Tag::peek(reader)?.assert_eq(tag)?;
        reader.tlv_bytes()
    }
    /// The next field's contents, if it has `tag`.
    fn contents<'a>(reader: &mut SliceReader<'a>, tag: Tag) -> der::Result<&'a [u8]> {
        let header = Header::decode(reader)?;
        header.tag().assert_eq(tag)?;
        reader.read_slice(header.length())
    }

    let mut reader = SliceReader::new(der)?;
    let parts = reader.sequence(|certificate| {
        let parts = certificate.sequence(|tbs| {
            if Tag::peek(tbs)? == explicit(0) {
                tbs.tlv_bytes()?; // version
            }
            field(tbs, Tag::Integer)?; // serialNumber
            for _ in 0..4 {
                field(tbs, Tag::Sequence)?; // signature, issuer, validity, subject
            }
            let spki = field(tbs, Tag::Sequence)?;
            let mut alt_names = Vec::new();
            for number in [1, 2] {
                // issuerUniqueID and subjectUniqueID, IMPLICIT BIT STRINGs
                if Tag::peek(tbs).ok()
                    == Some(Tag::ContextSpecific {
                        constructed: false,
                        number: TagNumber(number),
                    })
                {
                    tbs.tlv_bytes()?;
                }
            }
            if !tbs.is_finished() {
                let header = Header::decode(tbs)?;
                header.tag().assert_eq(explicit(3))?;
                tbs.read_nested(header.length(), |wrapper| {
                    wrapper.sequence(|extensions| {
                        while !extensions.is_finished() {
                            extensions.sequence(|extension| {
                                let id = field(extension, Tag::ObjectIdentifier)?;
                                if Tag::peek(extension)? == Tag::Boolean {
                                    extension.tlv_bytes()?; // critical
                                }
                                let value = contents(extension, Tag::OctetString)?;
                                if id == SUBJECT_ALT_NAME_OID {
                                    alt_names.push(value);
                                }
                                Ok::<_, der::Error>(())
                            })?;
                        }
                        Ok::<_, der::Error>(())
                    })
                })?;
            }
            Ok::<_, der::Error>((spki, alt_names))
        })?;
        field(certificate, Tag::Sequence)?; // signatureAlgorithm
        field(certificate, Tag::BitString)?; // signatureValue
        Ok::<_, der::Error>(parts)
    })?;
    reader.finish()?;
    Ok(parts)
}
