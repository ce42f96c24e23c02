//! The synthetic log: a pool of signers, and entry `i` as the canonical hashedrekord v0.0.2 body
//! the server would log for it.
//!
//! Every choice is a function of the seed and the entry number, so the queries (and a rerun on
//! a log built before) know which entries carry which terms without reading the log:
//!
//! - entry `i` logs the artifact digest SHA-256(`"rekor-search-bench" ‖ seed ‖ i`), unique;
//! - its signer is drawn from the pool by a Zipf law over the signers' ranks (or uniformly);
//! - a signer is an ECDSA P-256 key (derived from the seed), given either as a public key or, for a share of the pool,
//!   as an X.509 certificate for that key with one e-mail subject alternative name (shared by
//!   several certificates, as one person's signing identity is across key rotations);
//! - the signature is 70 bytes shaped like an ECDSA DER signature but not a real one: indexing
//!   and search never verify signatures, and signing 10M digests would take longer than the
//!   rest of the run. [`Corpus::check_against_validation`] makes one real signature per kind of
//!   verifier and checks that the server's own validation gives exactly these bytes.

use aws_lc_rs::digest::SHA256;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rekor_entries::search::{SearchTerm, search_terms};

/// How signers are drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Distribution {
    /// Every signer equally likely.
    Uniform,
    /// Signer of rank `k` (from 1) with weight `1 / k^s`.
    Zipf(f64),
}

impl std::fmt::Display for Distribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Distribution::Uniform => f.write_str("uniform"),
            Distribution::Zipf(s) => write!(f, "zipf:{s}"),
        }
    }
}

impl std::str::FromStr for Distribution {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once(':') {
            None if text == "uniform" => Ok(Distribution::Uniform),
            None if text == "zipf" => Ok(Distribution::Zipf(1.0)),
            Some(("zipf", s)) => s
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Distribution::Zipf)
                .ok_or_else(|| format!("bad Zipf exponent {s:?}")),
            _ => Err(format!("{text:?}: use uniform, zipf or zipf:<exponent>")),
        }
    }
}

/// One signer of the pool.
pub(crate) struct Signer {
    /// The `verifier` member of the canonical body, from `"keyDetails"` on.
    verifier_json: String,
    /// The key term (SHA-256 of the SubjectPublicKeyInfo).
    pub(crate) key: SearchTerm,
    /// The certificate's e-mail, if the signer comes as a certificate.
    pub(crate) identity: Option<SearchTerm>,
    pair: EcdsaKeyPair,
    certificate: Option<Vec<u8>>,
}

/// The pool of signers and the law that picks one per entry.
pub(crate) struct Corpus {
    seed: u64,
    pub(crate) signers: Vec<Signer>,
    /// Cumulative weights of the signers, ending at 1.
    cdf: Vec<f64>,
}

/// The parameters a corpus is made from (also what a reused log must have been built with).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CorpusSpec {
    pub(crate) seed: u64,
    pub(crate) keys: usize,
    /// Per cent of the signers that come as certificates.
    pub(crate) cert_percent: usize,
    /// Distinct e-mails among the certificates.
    pub(crate) identities: usize,
    pub(crate) distribution: Distribution,
}

impl CorpusSpec {
    /// One line describing it, kept beside a built log.
    pub(crate) fn describe(&self) -> String {
        format!(
            "seed={} keys={} cert_percent={} identities={} distribution={}",
            self.seed, self.keys, self.cert_percent, self.identities, self.distribution
        )
    }
}

/// SplitMix64: a fixed, well-mixed function of its input.
pub(crate) fn mix64(input: u64) -> u64 {
    let mut z = input.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A number in [0, 1) from 53 bits of `bits`.
#[allow(clippy::as_conversions, reason = "53-bit integers are exact in an f64")]
fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut context = aws_lc_rs::digest::Context::new(&SHA256);
    for part in parts {
        context.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Corpus {
    /// Generates the signers' keys (and certificates) of `spec`.
    ///
    /// # Errors
    ///
    /// A description of the first key that could not be made.
    pub(crate) fn new(spec: &CorpusSpec) -> Result<Corpus, String> {
        if spec.keys == 0 || spec.cert_percent > 100 {
            return Err("need at least one key and a certificate share of at most 100%".into());
        }
        let mut signers = Vec::with_capacity(spec.keys);
        for k in 0..spec.keys {
            let pair = seeded_key(spec.seed, k)?;
            let spki = pair
                .public_key()
                .as_der()
                .map_err(|e| format!("encoding key {k}: {e}"))?
                .as_ref()
                .to_vec();
            let key = SearchTerm::key(&format!("sha256:{}", hex(&sha256(&[&spki]))))
                .map_err(|e| e.to_string())?;
            // Spread the certificates over the ranks: key k is a certificate when its slot
            // among 100 falls in the share.
            let slot =
                usize::try_from(mix64(spec.seed ^ 0xce47 ^ (k as u64)) % 100).unwrap_or_default();
            let (verifier_json, identity, certificate) = if slot < spec.cert_percent {
                let email = format!(
                    "signer-{}@bench.example",
                    mix64(spec.seed ^ (k as u64)) % spec.identities.max(1) as u64
                );
                let cert = certificate(spec.seed, k, &spki, &email);
                let json = format!(
                    r#""keyDetails":"PKIX_ECDSA_P256_SHA_256","x509Certificate":{{"rawBytes":"{}"}}"#,
                    STANDARD.encode(&cert)
                );
                let identity = SearchTerm::identity(&email).map_err(|e| e.to_string())?;
                (json, Some(identity), Some(cert))
            } else {
                let json = format!(
                    r#""keyDetails":"PKIX_ECDSA_P256_SHA_256","publicKey":{{"rawBytes":"{}"}}"#,
                    STANDARD.encode(&spki)
                );
                (json, None, None)
            };
            signers.push(Signer {
                verifier_json,
                key,
                identity,
                pair,
                certificate,
            });
        }
        let weights: Vec<f64> = (1..=spec.keys)
            .map(|rank| match spec.distribution {
                Distribution::Uniform => 1.0,
                #[allow(clippy::as_conversions, reason = "ranks are far below 2^53")]
                Distribution::Zipf(s) => 1.0 / (rank as f64).powf(s),
            })
            .collect();
        let total: f64 = weights.iter().sum();
        let mut running = 0.0;
        let mut cdf: Vec<f64> = weights
            .iter()
            .map(|w| {
                running += w / total;
                running
            })
            .collect();
        if let Some(last) = cdf.last_mut() {
            *last = 1.0;
        }
        Ok(Corpus {
            seed: spec.seed,
            signers,
            cdf,
        })
    }

    /// The signer of entry `i`.
    pub(crate) fn signer_of(&self, i: u64) -> usize {
        let u = unit(mix64(self.seed.rotate_left(17) ^ mix64(i)));
        self.cdf
            .partition_point(|c| *c <= u)
            .min(self.signers.len() - 1)
    }

    /// The artifact digest entry `i` logs.
    pub(crate) fn digest_of(&self, i: u64) -> [u8; 32] {
        sha256(&[
            b"rekor-search-bench",
            &self.seed.to_be_bytes(),
            &i.to_be_bytes(),
        ])
    }

    /// A digest no entry logs (the `n`th of them).
    pub(crate) fn absent_digest(&self, n: u64) -> [u8; 32] {
        sha256(&[
            b"rekor-search-bench absent",
            &self.seed.to_be_bytes(),
            &n.to_be_bytes(),
        ])
    }

    /// The canonical body of entry `i`.
    pub(crate) fn entry(&self, i: u64) -> Vec<u8> {
        let digest = self.digest_of(i);
        let signer = &self.signers[self.signer_of(i)];
        canonical_body(&digest, &fake_signature(&digest), &signer.verifier_json)
    }

    /// How many entries among the first `n` each signer signed.
    pub(crate) fn counts(&self, n: u64) -> Vec<u64> {
        let mut counts = vec![0u64; self.signers.len()];
        for i in 0..n {
            counts[self.signer_of(i)] += 1;
        }
        counts
    }

    /// Checks, for a signer given as a public key and one given as a certificate, that an entry
    /// with a real signature validates (`rekor_entries::validate_hashed_rekord`, as the server
    /// does) to exactly the bytes [`Corpus::entry`] writes with that signature, and that its
    /// search terms are the digest, the key and the identity.
    ///
    /// # Errors
    ///
    /// What differs.
    pub(crate) fn check_against_validation(&self) -> Result<(), String> {
        let rng = SystemRandom::new();
        let mut kinds_seen = [false; 2];
        for signer in &self.signers {
            let kind = usize::from(signer.certificate.is_some());
            if kinds_seen[kind] {
                continue;
            }
            kinds_seen[kind] = true;
            let message = b"rekor-search-bench self-check";
            let digest = sha256(&[message]);
            let signature = signer
                .pair
                .sign(&rng, message)
                .map_err(|e| format!("signing: {e}"))?
                .as_ref()
                .to_vec();
            let key = match &signer.certificate {
                Some(cert) => rekor_entries::input::VerifierKey::Certificate(cert.clone()),
                None => rekor_entries::input::VerifierKey::PublicKey(
                    signer
                        .pair
                        .public_key()
                        .as_der()
                        .map_err(|e| e.to_string())?
                        .as_ref()
                        .to_vec(),
                ),
            };
            let request = rekor_entries::input::HashedRekordRequest {
                digest: digest.to_vec(),
                signature: Some(rekor_entries::input::SignatureInput {
                    content: signature.clone(),
                    verifier: Some(rekor_entries::input::VerifierInput {
                        key: Some(key),
                        key_details: i32::from(
                            rekor_api::common::v1::PublicKeyDetails::PkixEcdsaP256Sha256,
                        ),
                    }),
                }),
            };
            let validated = rekor_entries::validate_hashed_rekord(
                &request,
                &rekor_entries::AlgorithmRegistry::default(),
            )
            .map_err(|e| format!("the server's validation refuses the entry: {e}"))?;
            let ours = canonical_body(&digest, &signature, &signer.verifier_json);
            if validated.canonical != ours {
                return Err(format!(
                    "canonical bodies differ:\n server {}\n bench  {}",
                    String::from_utf8_lossy(&validated.canonical),
                    String::from_utf8_lossy(&ours)
                ));
            }
            let mut expected = vec![
                SearchTerm::digest(&format!("sha256:{}", hex(&digest)))
                    .map_err(|e| e.to_string())?,
                signer.key.clone(),
            ];
            expected.extend(signer.identity.clone());
            expected.sort();
            if search_terms(&ours) != expected {
                return Err(format!(
                    "search terms {:?}, expected {expected:?}",
                    search_terms(&ours)
                ));
            }
        }
        Ok(())
    }
}

/// Signer `k`'s P-256 key, a function of the seed: a rerun on a log built before (`--reuse-log`)
/// must know the same keys. The private scalar is SHA-256(seed, k, attempt), as an RFC 5915
/// ECPrivateKey; the rare value at or above the group order is refused and the next one tried.
fn seeded_key(seed: u64, k: usize) -> Result<EcdsaKeyPair, String> {
    const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    for attempt in 0u32..16 {
        let scalar = sha256(&[
            b"rekor-search-bench key",
            &seed.to_be_bytes(),
            &(k as u64).to_be_bytes(),
            &attempt.to_be_bytes(),
        ]);
        let der = sequence(&[
            &[0x02, 0x01, 0x01],
            &tlv(0x04, &scalar),
            &tlv(0xa0, OID_P256),
        ]);
        if let Ok(pair) = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_ASN1_SIGNING, &der)
        {
            return Ok(pair);
        }
    }
    Err(format!("no usable P-256 scalar for key {k}"))
}

/// The canonical (RFC 8785) hashedrekord v0.0.2 body, keys in their sorted order.
fn canonical_body(digest: &[u8], signature: &[u8], verifier_json: &str) -> Vec<u8> {
    format!(
        concat!(
            r#"{{"apiVersion":"0.0.2","kind":"hashedrekord","spec":{{"hashedRekordV002":{{"#,
            r#""data":{{"algorithm":"SHA2_256","digest":"{}"}},"#,
            r#""signature":{{"content":"{}","verifier":{{{}}}}}}}}}}}"#
        ),
        STANDARD.encode(digest),
        STANDARD.encode(signature),
        verifier_json
    )
    .into_bytes()
}

/// 70 bytes shaped like a DER ECDSA signature (`SEQUENCE { INTEGER r, INTEGER s }`), derived
/// from the digest. Not a valid signature.
fn fake_signature(digest: &[u8; 32]) -> Vec<u8> {
    let mut r = sha256(&[b"r", digest]);
    let mut s = sha256(&[b"s", digest]);
    // Positive and minimal: no leading zero byte needed.
    r[0] = (r[0] & 0x7f) | 0x01;
    s[0] = (s[0] & 0x7f) | 0x01;
    let mut out = vec![0x30, 68, 0x02, 32];
    out.extend_from_slice(&r);
    out.extend_from_slice(&[0x02, 32]);
    out.extend_from_slice(&s);
    out
}

/// One DER TLV.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(u8::try_from(len).unwrap_or_default());
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | u8::try_from(bytes.len() - skip).unwrap_or_default());
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

// DER-encoded object identifiers (tag and length included).
const OID_ECDSA_SHA256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const OID_ORGANIZATION: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x0a];
const OID_COMMON_NAME: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x03];
const OID_KEY_USAGE: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x0f];
const OID_EXT_KEY_USAGE: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x25];
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x11];
const OID_CODE_SIGNING: &[u8] = &[0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
/// 1.3.6.1.4.1.57264.1.8, Fulcio's OIDC issuer extension.
const OID_FULCIO_ISSUER: &[u8] = &[
    0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0xbf, 0x30, 0x01, 0x08,
];

fn extension(oid: &[u8], critical: bool, value: &[u8]) -> Vec<u8> {
    let flag: &[u8] = if critical { &[0x01, 0x01, 0xff] } else { &[] };
    sequence(&[oid, flag, &tlv(0x04, value)])
}

/// A certificate shaped like a Fulcio code-signing certificate: empty subject, the key, a
/// critical e-mail SAN, key usage, code-signing EKU and an OIDC issuer extension. Its
/// signature is not a real one (nothing here verifies certificate chains).
fn certificate(seed: u64, k: usize, spki: &[u8], email: &str) -> Vec<u8> {
    let k = k as u64;
    let mut serial = sha256(&[b"serial", &seed.to_be_bytes(), &k.to_be_bytes()]);
    serial[0] = (serial[0] & 0x7f) | 0x01;
    let name_part = |oid: &[u8], value: &str| -> Vec<u8> {
        tlv(0x31, &sequence(&[oid, &tlv(0x0c, value.as_bytes())]))
    };
    let issuer = sequence(&[
        &name_part(OID_ORGANIZATION, "bench.example"),
        &name_part(OID_COMMON_NAME, "bench-intermediate"),
    ]);
    let validity = sequence(&[&tlv(0x17, b"260101000000Z"), &tlv(0x17, b"260101001000Z")]);
    let extensions = sequence(&[
        &extension(OID_KEY_USAGE, true, &[0x03, 0x02, 0x07, 0x80]),
        &extension(OID_EXT_KEY_USAGE, false, &sequence(&[OID_CODE_SIGNING])),
        &extension(
            OID_SUBJECT_ALT_NAME,
            true,
            &sequence(&[&tlv(0x81, email.as_bytes())]),
        ),
        &extension(
            OID_FULCIO_ISSUER,
            false,
            &tlv(0x0c, b"https://accounts.bench.example"),
        ),
    ]);
    let algorithm = sequence(&[OID_ECDSA_SHA256]);
    let tbs = sequence(&[
        &tlv(0xa0, &tlv(0x02, &[0x02])),
        &tlv(0x02, &serial[..20]),
        &algorithm,
        &issuer,
        &validity,
        &sequence(&[]),
        spki,
        &tlv(0xa3, &extensions),
    ]);
    let mut signature = vec![0x00];
    signature.extend(fake_signature(&sha256(&[&tbs])));
    sequence(&[&tbs, &algorithm, &tlv(0x03, &signature)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(distribution: Distribution) -> CorpusSpec {
        CorpusSpec {
            seed: 7,
            keys: 50,
            cert_percent: 30,
            identities: 5,
            distribution,
        }
    }

    #[test]
    fn entries_validate_as_the_server_writes_them() {
        let corpus = Corpus::new(&spec(Distribution::Zipf(1.0))).unwrap();
        assert!(corpus.signers.iter().any(|s| s.identity.is_some()));
        assert!(corpus.signers.iter().any(|s| s.identity.is_none()));
        corpus.check_against_validation().unwrap();
        // Every entry has the digest, key and (for certificates) identity terms.
        for i in 0..20 {
            let signer = &corpus.signers[corpus.signer_of(i)];
            let terms = search_terms(&corpus.entry(i));
            assert!(terms.contains(&signer.key));
            assert_eq!(terms.len(), 2 + usize::from(signer.identity.is_some()));
        }
    }

    #[test]
    fn keys_are_a_function_of_the_seed() {
        let a = Corpus::new(&spec(Distribution::Uniform)).unwrap();
        let b = Corpus::new(&spec(Distribution::Uniform)).unwrap();
        assert!(
            a.signers
                .iter()
                .zip(&b.signers)
                .all(|(x, y)| x.key == y.key)
        );
        assert_eq!(a.entry(3), b.entry(3));
        let other = Corpus::new(&CorpusSpec {
            seed: 8,
            ..spec(Distribution::Uniform)
        })
        .unwrap();
        assert_ne!(a.signers[0].key, other.signers[0].key);
    }

    #[test]
    fn zipf_favours_the_first_ranks_and_uniform_does_not() {
        let zipf = Corpus::new(&spec(Distribution::Zipf(1.0)))
            .unwrap()
            .counts(10_000);
        assert!(zipf[0] > 5 * zipf[49], "{zipf:?}");
        let uniform = Corpus::new(&spec(Distribution::Uniform))
            .unwrap()
            .counts(10_000);
        assert!(uniform[0] < 2 * uniform[49], "{uniform:?}");
        assert_eq!(uniform.iter().sum::<u64>(), 10_000);
    }
}
