//! Log keys: PEM fixtures made by the openssl CLI, log IDs computed by openssl + sha256sum
//! (tests/testdata/gen-expected.sh), openssl-made signatures, and sign/verify round trips.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions fail loudly on bad fixtures"
)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rekor_note::{
    Checkpoint, KeyName, LogKeyAlgorithm, LogSigner, LogVerifier, NoteError, NoteSigner,
    NoteVerifier, Origin, ecdsa_log_id, ed25519_log_id, open_note,
};

const PASSWORD: &[u8] = b"correct horse battery staple";
const NAME: &str = "log.example.dev";

fn testdata(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn name() -> KeyName {
    KeyName::new(NAME).unwrap()
}

/// (log ID, SPKI DER) for a key of expected.txt.
fn expected(key: &str) -> ([u8; 32], Vec<u8>) {
    let text = String::from_utf8(testdata("expected.txt")).unwrap();
    let line = text
        .lines()
        .find(|l| l.split(' ').next() == Some(key))
        .unwrap();
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields[1], NAME);
    let log_id: [u8; 32] = hex::decode(fields[2]).unwrap().try_into().unwrap();
    (log_id, STANDARD.decode(fields[3]).unwrap())
}

fn load(file: &str, password: Option<&[u8]>) -> Result<LogSigner, NoteError> {
    LogSigner::from_pem(&testdata(file), password, name())
}

#[test]
fn pem_fixtures_load_with_expected_log_ids() {
    let cases: [(&str, Option<&[u8]>, &str, LogKeyAlgorithm); 8] = [
        ("ed25519.pem", None, "ed25519", LogKeyAlgorithm::Ed25519),
        (
            "ed25519-enc.pem",
            Some(PASSWORD),
            "ed25519",
            LogKeyAlgorithm::Ed25519,
        ),
        ("p256.pem", None, "p256", LogKeyAlgorithm::EcdsaP256Sha256),
        (
            "p256-sec1.pem",
            None,
            "p256",
            LogKeyAlgorithm::EcdsaP256Sha256,
        ),
        (
            "p256-enc.pem",
            Some(PASSWORD),
            "p256",
            LogKeyAlgorithm::EcdsaP256Sha256,
        ),
        ("p384.pem", None, "p384", LogKeyAlgorithm::EcdsaP384Sha384),
        (
            "p384-sec1.pem",
            None,
            "p384",
            LogKeyAlgorithm::EcdsaP384Sha384,
        ),
        (
            "p384-enc-scrypt.pem",
            Some(PASSWORD),
            "p384",
            LogKeyAlgorithm::EcdsaP384Sha384,
        ),
    ];
    for (file, password, key, algorithm) in cases {
        let signer = load(file, password).unwrap_or_else(|e| panic!("{file}: {e}"));
        let (log_id, spki) = expected(key);
        assert_eq!(signer.algorithm(), algorithm, "{file}");
        assert_eq!(signer.log_id(), log_id, "{file}");
        assert_eq!(signer.public_key_der(), spki, "{file}");
        assert_eq!(signer.key_id(), log_id[..4], "{file}");
        let verifier = LogVerifier::from_spki_der(name(), &spki).unwrap();
        assert_eq!(verifier.log_id(), log_id, "{file}");
        assert_eq!(verifier, signer.verifier(), "{file}");
    }
}

#[test]
fn ed25519_log_id_matches_independent_computation() {
    let (log_id, spki) = expected("ed25519");
    let pk: [u8; 32] = spki[spki.len() - 32..].try_into().unwrap();
    assert_eq!(ed25519_log_id(&name(), &pk), log_id);
    let other = KeyName::new("log2.example.dev").unwrap();
    assert_ne!(ed25519_log_id(&other, &pk), log_id, "the name is hashed");
    let (p256_id, p256_spki) = expected("p256");
    assert_eq!(ecdsa_log_id(&p256_spki), p256_id);
}

#[test]
fn ecdsa_log_id_ignores_the_name() {
    let a = LogSigner::from_pem(&testdata("p256.pem"), None, name()).unwrap();
    let b =
        LogSigner::from_pem(&testdata("p256.pem"), None, KeyName::new("other").unwrap()).unwrap();
    assert_eq!(a.log_id(), b.log_id());
    let c = LogSigner::from_pem(&testdata("ed25519.pem"), None, name()).unwrap();
    let d = LogSigner::from_pem(
        &testdata("ed25519.pem"),
        None,
        KeyName::new("other").unwrap(),
    )
    .unwrap();
    assert_ne!(c.log_id(), d.log_id());
}

#[test]
fn encrypted_pkcs8_needs_the_right_password() {
    for file in ["ed25519-enc.pem", "p256-enc.pem", "p384-enc-scrypt.pem"] {
        assert_eq!(
            load(file, None).unwrap_err(),
            NoteError::PasswordRequired,
            "{file}"
        );
        assert_eq!(
            load(file, Some(b"wrong password")).unwrap_err(),
            NoteError::DecryptionFailed,
            "{file}"
        );
        assert_eq!(
            load(file, Some(b"")).unwrap_err(),
            NoteError::DecryptionFailed,
            "{file}"
        );
        assert!(load(file, Some(PASSWORD)).is_ok(), "{file}");
    }
    // A password for a plain key is ignored (rekor-tiles does the same).
    assert!(load("p256.pem", Some(b"unused")).is_ok());
}

#[test]
fn unsupported_keys_are_refused_precisely() {
    assert_eq!(
        load("rsa.pem", None).unwrap_err(),
        NoteError::UnsupportedKeyAlgorithm {
            oid: "1.2.840.113549.1.1.1".into()
        }
    );
    assert_eq!(
        load("p521.pem", None).unwrap_err(),
        NoteError::UnsupportedCurve {
            oid: "1.3.132.0.35".into()
        }
    );
    assert_eq!(
        load("secp256k1-sec1.pem", None).unwrap_err(),
        NoteError::UnsupportedCurve {
            oid: "1.3.132.0.10".into()
        }
    );
    assert_eq!(
        load("p256-legacy-enc.pem", Some(PASSWORD)).unwrap_err(),
        NoteError::LegacyEncryptedPem
    );
    assert_eq!(
        LogSigner::from_pem(b"not a pem", None, name()).unwrap_err(),
        NoteError::InvalidPem
    );
    assert_eq!(
        LogSigner::from_pem(
            b"-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----\n",
            None,
            name()
        )
        .unwrap_err(),
        NoteError::UnsupportedPemLabel {
            label: "PUBLIC KEY".into()
        }
    );
    // cosign / sigstore's own encrypted format (scrypt + NaCl secretbox) is not supported.
    for label in [
        "ENCRYPTED SIGSTORE PRIVATE KEY",
        "ENCRYPTED COSIGN PRIVATE KEY",
    ] {
        let pem = format!("-----BEGIN {label}-----\neyJrZGYiOnt9fQ==\n-----END {label}-----\n");
        assert_eq!(
            LogSigner::from_pem(pem.as_bytes(), Some(PASSWORD), name()).unwrap_err(),
            NoteError::UnsupportedPemLabel {
                label: label.into()
            }
        );
    }
    // Truncated base64 body.
    let pem = String::from_utf8(testdata("p256.pem")).unwrap();
    let broken = pem.replacen("MIGHAgEAMBMG", "MIGHAgEAMB", 1);
    assert_eq!(
        LogSigner::from_pem(broken.as_bytes(), None, name()).unwrap_err(),
        NoteError::InvalidPem
    );
    // Corrupt DER inside valid base64.
    let garbage = "-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----\n";
    assert_eq!(
        LogSigner::from_pem(garbage.as_bytes(), None, name()).unwrap_err(),
        NoteError::InvalidPrivateKey
    );
}

#[test]
fn openssl_signed_notes_verify() {
    let body = String::from_utf8(testdata("checkpoint-body.txt")).unwrap();
    let expected_cp = Checkpoint::parse(&body).unwrap();
    for key in ["ed25519", "p256", "p384"] {
        let (_, spki) = expected(key);
        let verifier = LogVerifier::from_spki_der(name(), &spki).unwrap();
        let note = testdata(&format!("openssl-{key}.note"));
        assert_eq!(
            verifier.verify_checkpoint(&note).unwrap(),
            expected_cp,
            "{key}"
        );
        // A flipped bit in the signature is a failure of a known key.
        let mut bad = note.clone();
        let n = bad.len();
        bad[n - 6] ^= 0x01;
        assert!(
            matches!(
                verifier.verify_checkpoint(&bad),
                Err(NoteError::SignatureVerificationFailed { .. })
                    | Err(NoteError::SignatureBase64 { .. })
            ),
            "{key}"
        );
    }
}

#[test]
fn sign_then_verify_every_algorithm() {
    let cp = Checkpoint::new(Origin::new(NAME).unwrap(), 123_456, [0x5a; 32]);
    let signers = [
        LogSigner::from_ed25519_seed([1; 32], name()),
        LogSigner::from_p256_scalar([2; 32], name()).unwrap(),
        LogSigner::from_p384_scalar([3; 48], name()).unwrap(),
        load("p384.pem", None).unwrap(),
    ];
    for signer in &signers {
        let note = signer.sign_checkpoint(&cp).unwrap();
        assert_eq!(signer.verifier().verify_checkpoint(&note).unwrap(), cp);
        // Deterministic signatures (RFC 8032 / RFC 6979).
        assert_eq!(signer.sign_checkpoint(&cp).unwrap(), note);
        let text = cp.to_text();
        assert!(note.starts_with(text.as_bytes()));
        // Another key with the same name and algorithm does not verify it: with Ed25519 the key
        // ID differs (note ignored), with ECDSA too (SPKI differs).
        let other = LogSigner::from_p256_scalar([9; 32], name())
            .unwrap()
            .verifier();
        assert_eq!(
            other.verify_checkpoint(&note),
            Err(NoteError::NoVerifiedSignature)
        );
    }
    // ECDSA signatures are ASN.1 DER SEQUENCEs.
    let sig = signers[1].sign(b"x\n").unwrap();
    assert_eq!(sig[0], 0x30);
    assert_eq!(usize::from(sig[1]) + 2, sig.len());
    let sig = signers[2].sign(b"x\n").unwrap();
    assert_eq!(sig[0], 0x30);
    assert_eq!(signers[0].sign(b"x\n").unwrap().len(), 64);
}

#[test]
fn p384_is_over_sha384_not_sha256() {
    // A P-384 signature over SHA-384 from openssl verifies (openssl-p384.note); an attempt with a
    // P-256-style SHA-256 digest would not: re-sign the body with a P-384 signer and check that
    // the verifier rejects a signature made over another message.
    let signer = load("p384.pem", None).unwrap();
    let v = signer.verifier();
    let sig = signer.sign(b"message\n").unwrap();
    assert!(v.verify(b"message\n", &sig));
    assert!(!v.verify(b"massage\n", &sig));
    assert_eq!(v.to_vkey(), None, "no vkey type describes P-384/SHA-384");
}

#[test]
fn generated_keys_persist_as_pkcs8() {
    let signers = [
        LogSigner::from_ed25519_seed([4; 32], name()),
        LogSigner::from_p256_scalar([5; 32], name()).unwrap(),
        LogSigner::from_p384_scalar([6; 48], name()).unwrap(),
    ];
    for s in &signers {
        let pem = s.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let again = LogSigner::from_pem(pem.as_bytes(), None, name()).unwrap();
        assert_eq!(again.log_id(), s.log_id());
        assert_eq!(again.verifier(), s.verifier());
    }
    // Ed25519 is written as PKCS#8 v1, byte-identical to what openssl genpkey writes.
    let openssl = testdata("ed25519.pem");
    let loaded = LogSigner::from_pem(&openssl, None, name()).unwrap();
    assert_eq!(
        loaded.to_pkcs8_pem().unwrap().as_bytes(),
        openssl.as_slice()
    );
}

#[test]
fn scalar_constructors_reject_out_of_range() {
    assert_eq!(
        LogSigner::from_p256_scalar([0; 32], name()).unwrap_err(),
        NoteError::InvalidPrivateKey
    );
    assert_eq!(
        LogSigner::from_p256_scalar([0xff; 32], name()).unwrap_err(),
        NoteError::InvalidPrivateKey
    );
    assert_eq!(
        LogSigner::from_p384_scalar([0xff; 48], name()).unwrap_err(),
        NoteError::InvalidPrivateKey
    );
}

#[test]
fn sign_checkpoint_enforces_origin_and_extensions() {
    let signer = LogSigner::from_ed25519_seed([1; 32], name());
    let cp = Checkpoint::new(Origin::new("other.example.dev").unwrap(), 1, [0; 32]);
    assert_eq!(
        signer.sign_checkpoint(&cp),
        Err(NoteError::OriginMismatch {
            origin: "other.example.dev".into(),
            key_name: NAME.into()
        })
    );
    let mut cp = Checkpoint::new(Origin::new(NAME).unwrap(), 1, [0; 32]);
    cp.extensions = vec!["ok".into(), String::new()];
    assert_eq!(
        signer.sign_checkpoint(&cp),
        Err(NoteError::CheckpointExtensionInvalid { index: 1 })
    );
    cp.extensions = vec!["a\nb".into()];
    assert_eq!(
        signer.sign_checkpoint(&cp),
        Err(NoteError::CheckpointExtensionInvalid { index: 0 })
    );
    cp.extensions = vec!["Timestamp: 1".into()];
    let note = signer.sign_checkpoint(&cp).unwrap();
    assert_eq!(signer.verifier().verify_checkpoint(&note).unwrap(), cp);
}

#[test]
fn spki_errors() {
    assert_eq!(
        LogVerifier::from_spki_der(name(), b"\x30\x00"),
        Err(NoteError::InvalidPublicKey)
    );
    let (_, mut spki) = expected("p256");
    spki.push(0);
    assert_eq!(
        LogVerifier::from_spki_der(name(), &spki),
        Err(NoteError::InvalidPublicKey),
        "trailing data"
    );
    let (_, mut spki) = expected("p256");
    let last = spki.len() - 1;
    spki[last] ^= 1; // point no longer on the curve
    assert_eq!(
        LogVerifier::from_spki_der(name(), &spki),
        Err(NoteError::InvalidPublicKey)
    );
}

#[test]
fn verifiers_work_through_open_note_with_other_keys() {
    let a = LogSigner::from_ed25519_seed([1; 32], name());
    let b = LogSigner::from_p256_scalar([2; 32], KeyName::new("b.example").unwrap()).unwrap();
    let note = rekor_note::sign_note("hello\n", &[&a, &b])
        .unwrap()
        .to_bytes();
    let (_, verified) = open_note(&note, &[&b.verifier()]).unwrap();
    assert_eq!(verified.len(), 1);
    assert_eq!(verified[0].name.as_str(), "b.example");
    let (_, verified) = open_note(&note, &[&a.verifier(), &b.verifier()]).unwrap();
    assert_eq!(verified.len(), 2);
}
