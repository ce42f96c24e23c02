//! ML-DSA-44 checkpoint signatures (tlog-cosignature type 0x06) and dual-signing logs: the
//! signed-message layout written out by hand and checked with the `ml-dsa` crate directly, key
//! IDs computed with sha2 directly, key files, and tampering.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions fail loudly on bad fixtures"
)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ml_dsa::{KeyExport as _, MlDsa44};
use pkcs8::der::Encode as _;
use rekor_note::{
    Checkpoint, KeyName, LogSigner, LogVerifier, MLDSA44_COSIGNATURE_LEN, MlDsa44Signer,
    MlDsa44Verifier, Note, NoteError, NoteVerifier, Origin, SIG_TYPE_MLDSA44_COSIGNATURE,
    mldsa44_checkpoint_message, mldsa44_key_id, mldsa44_timestamp, open_note,
};
use sha2::{Digest as _, Sha256};

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/testdata");

const NOW: u64 = 1_700_000_000;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{TESTDATA}/{name}")).unwrap()
}

fn name(s: &str) -> KeyName {
    KeyName::new(s).unwrap()
}

fn now() -> u64 {
    NOW
}

fn dual_signer() -> LogSigner {
    LogSigner::from_ed25519_seed([1; 32], name("log.example"))
        .with_mldsa44(MlDsa44Signer::from_seed([2; 32], name("log.example")), now)
        .unwrap()
}

fn checkpoint(size: u64) -> Checkpoint {
    Checkpoint::new(Origin::new("log.example").unwrap(), size, [0xab; 32])
}

/// The message written out field by field from tlog-cosignature's `cosigned_message`.
fn expected_message(
    cosigner: &str,
    timestamp: u64,
    origin: &str,
    size: u64,
    root: &[u8],
) -> Vec<u8> {
    let mut m = b"subtree/v1\n\x00".to_vec();
    m.push(u8::try_from(cosigner.len()).unwrap());
    m.extend_from_slice(cosigner.as_bytes());
    m.extend_from_slice(&timestamp.to_be_bytes());
    m.push(u8::try_from(origin.len()).unwrap());
    m.extend_from_slice(origin.as_bytes());
    m.extend_from_slice(&0u64.to_be_bytes());
    m.extend_from_slice(&size.to_be_bytes());
    m.extend_from_slice(root);
    m
}

#[test]
fn signatures_are_over_the_hand_built_message() {
    let signer = MlDsa44Signer::from_seed([3; 32], name("log.example"));
    let vkey = signer.verifier().to_vkey();
    // The public key from the vkey text alone, decoded here rather than by the crate.
    let raw = STANDARD
        .decode(vkey.splitn(3, '+').nth(2).unwrap())
        .unwrap();
    assert_eq!(raw[0], 0x06);
    let public = ml_dsa::VerifyingKey::<MlDsa44>::decode(&raw[1..].try_into().unwrap());

    let cp = checkpoint(5);
    let ours = signer.cosign_checkpoint(&cp, NOW).unwrap();
    let sig = &ours.signature;
    assert_eq!(sig.len(), MLDSA44_COSIGNATURE_LEN);
    assert_eq!(sig[..8], NOW.to_be_bytes(), "timestamp first");
    let message = expected_message("log.example", NOW, "log.example", 5, &[0xab; 32]);
    assert_eq!(
        mldsa44_checkpoint_message(&name("log.example"), NOW, &cp).unwrap(),
        message
    );
    let ml_sig = ml_dsa::Signature::<MlDsa44>::try_from(&sig[8..]).unwrap();
    assert!(public.verify_with_context(&message, &[], &ml_sig));
    // Pure ML-DSA with an empty context: another context does not verify.
    assert!(!public.verify_with_context(&message, b"x", &ml_sig));
}

#[test]
fn key_id_is_sha256_of_name_newline_type_and_key() {
    let signer = MlDsa44Signer::from_seed([9; 32], name("log.example"));
    let verifier = signer.verifier();
    let mut h = Sha256::new();
    h.update(b"log.example\n\x06");
    h.update(verifier.public_key());
    let digest = h.finalize();
    assert_eq!(verifier.key_id(), digest[..4]);
    assert_eq!(
        mldsa44_key_id(&name("log.example"), verifier.public_key()),
        verifier.key_id()
    );
    assert_eq!(SIG_TYPE_MLDSA44_COSIGNATURE, 0x06);
    assert_eq!(verifier.public_key().len(), 1312);
    let vkey = verifier.to_vkey();
    let parts: Vec<&str> = vkey.splitn(3, '+').collect();
    assert_eq!(
        parts[..2],
        ["log.example", hex::encode(&digest[..4]).as_str()]
    );
    let key = parts[2];
    let raw = STANDARD.decode(key).unwrap();
    assert_eq!(raw[0], 0x06);
    assert_eq!(&raw[1..], verifier.public_key());
}

#[test]
fn dual_signed_checkpoint_verifies_with_each_key_alone() {
    let signer = dual_signer();
    let cp = checkpoint(7);
    let bytes = signer.sign_checkpoint(&cp).unwrap();
    let note = Note::parse(&bytes).unwrap();
    assert_eq!(note.signatures().len(), 2);
    let primary = signer.verifier();
    let mldsa = signer.mldsa44_verifier().unwrap();
    assert_eq!(note.signatures()[0].key_id, primary.key_id());
    assert_eq!(note.signatures()[1].key_id, mldsa.key_id());
    assert!(
        note.signatures()
            .iter()
            .all(|s| s.name.as_str() == "log.example")
    );

    assert_eq!(primary.verify_checkpoint(&bytes).unwrap(), cp);
    assert_eq!(mldsa.verify_checkpoint(&bytes).unwrap(), cp);
    let (_, verified) = open_note(&bytes, &[&primary, &mldsa]).unwrap();
    assert_eq!(verified.len(), 2);
    assert_eq!(mldsa.timestamp(&note.signatures()[1]), Some(NOW));
    assert_eq!(
        mldsa44_timestamp(&note.signatures()[1].signature),
        Some(NOW)
    );

    // The ML-DSA line is over the binary message, checked here with ml-dsa directly.
    let message = expected_message("log.example", NOW, "log.example", 7, &[0xab; 32]);
    let public = ml_dsa::VerifyingKey::<MlDsa44>::decode(&mldsa.public_key().try_into().unwrap());
    let sig = ml_dsa::Signature::<MlDsa44>::try_from(&note.signatures()[1].signature[8..]).unwrap();
    assert!(public.verify_with_context(&message, &[], &sig));

    // Deterministic: the same checkpoint and time give the same note.
    assert_eq!(signer.sign_checkpoint_at(&cp, NOW).unwrap(), bytes);
}

#[test]
fn ecdsa_logs_dual_sign_too() {
    let mut scalar = [0u8; 32];
    scalar[31] = 5;
    let signer = LogSigner::from_p256_scalar(scalar, name("log.example"))
        .unwrap()
        .with_mldsa44(MlDsa44Signer::from_seed([3; 32], name("log.example")), now)
        .unwrap();
    let bytes = signer.sign_checkpoint(&checkpoint(3)).unwrap();
    assert!(signer.verifier().verify_checkpoint(&bytes).is_ok());
    assert!(
        signer
            .mldsa44_verifier()
            .unwrap()
            .verify_checkpoint(&bytes)
            .is_ok()
    );
}

#[test]
fn a_log_without_mldsa_signs_one_line() {
    let signer = LogSigner::from_ed25519_seed([1; 32], name("log.example"));
    assert!(signer.mldsa44_verifier().is_none());
    let bytes = signer.sign_checkpoint(&checkpoint(3)).unwrap();
    assert_eq!(Note::parse(&bytes).unwrap().signatures().len(), 1);
    // The primary line is the same whether or not the log dual-signs.
    let dual = dual_signer().sign_checkpoint(&checkpoint(3)).unwrap();
    assert_eq!(
        Note::parse(&dual).unwrap().signatures()[0],
        Note::parse(&bytes).unwrap().signatures()[0]
    );
}

#[test]
fn tampering_is_caught() {
    let signer = dual_signer();
    let primary = signer.verifier();
    let mldsa = signer.mldsa44_verifier().unwrap();
    let bytes = signer.sign_checkpoint(&checkpoint(7)).unwrap();
    let note = Note::parse(&bytes).unwrap();

    // A different tree size in the text: both keys reject it.
    let altered = String::from_utf8(bytes.clone())
        .unwrap()
        .replacen("\n7\n", "\n8\n", 1);
    for verifier in [&primary as &dyn NoteVerifier, &mldsa] {
        assert!(matches!(
            open_note(altered.as_bytes(), &[verifier]),
            Err(NoteError::SignatureVerificationFailed { .. })
        ));
    }

    // A flipped bit in the ML-DSA signature, or another timestamp: the ML-DSA key rejects the
    // note, the primary key (which ignores the line) does not.
    for (offset, what) in [(100, "signature"), (7, "timestamp")] {
        let mut sigs = note.signatures().to_vec();
        sigs[1].signature[offset] ^= 1;
        let forged = Note::new(note.text(), sigs).unwrap().to_bytes();
        assert!(
            matches!(
                mldsa.verify_checkpoint(&forged),
                Err(NoteError::SignatureVerificationFailed { .. })
            ),
            "{what}"
        );
        assert!(primary.verify_checkpoint(&forged).is_ok(), "{what}");
    }

    // Another cosigner name in the message (same key): rejected.
    let renamed = MlDsa44Signer::from_seed([2; 32], name("other.example"));
    let other = renamed.cosign_checkpoint(&checkpoint(7), NOW).unwrap();
    assert!(!mldsa.verify(note.text().as_bytes(), &other.signature));
}

#[test]
fn extension_lines_are_refused() {
    let signer = dual_signer();
    let mut cp = checkpoint(7);
    cp.extensions.push("ext".to_owned());
    assert_eq!(
        signer.sign_checkpoint(&cp),
        Err(NoteError::MlDsaCheckpointExtensions)
    );
    // A valid signature over the three-line body does not cover a text with an extension.
    let bytes = signer.sign_checkpoint(&checkpoint(7)).unwrap();
    let note = Note::parse(&bytes).unwrap();
    let text = format!("{}ext\n", note.text());
    let mldsa = signer.mldsa44_verifier().unwrap();
    assert!(!mldsa.verify(text.as_bytes(), &note.signatures()[1].signature));
}

#[test]
fn second_key_must_share_the_name() {
    let err = LogSigner::from_ed25519_seed([1; 32], name("log.example"))
        .with_mldsa44(
            MlDsa44Signer::from_seed([2; 32], name("other.example")),
            now,
        )
        .unwrap_err();
    assert!(matches!(err, NoteError::KeyNameMismatch { .. }));
}

#[test]
fn vkey_types_are_kept_apart() {
    let mldsa = MlDsa44Signer::from_seed([2; 32], name("log.example")).verifier();
    let ed = LogSigner::from_ed25519_seed([1; 32], name("log.example"))
        .verifier()
        .to_vkey()
        .unwrap();
    assert_eq!(
        MlDsa44Verifier::from_vkey(&ed),
        Err(NoteError::UnsupportedVkeyType { sig_type: 0x01 })
    );
    assert_eq!(
        LogVerifier::from_vkey(&mldsa.to_vkey()),
        Err(NoteError::UnsupportedVkeyType { sig_type: 0x06 })
    );
    // A vkey whose key ID does not match its key.
    let vkey = mldsa.to_vkey();
    let (head, tail) = vkey.split_once('+').unwrap();
    let bad = format!("{head}+00000000+{}", tail.split_once('+').unwrap().1);
    assert!(matches!(
        MlDsa44Verifier::from_vkey(&bad),
        Err(NoteError::VkeyKeyIdMismatch { .. })
    ));
}

/// A PKCS#8 document for id-ml-dsa-44 with `private` as its privateKey octets.
fn pkcs8_pem(private: &[u8]) -> String {
    let info = pkcs8::PrivateKeyInfoRef::new(
        pkcs8::AlgorithmIdentifierRef {
            oid: pkcs8::ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.17"),
            parameters: None,
        },
        pkcs8::der::asn1::OctetStringRef::new(private).unwrap(),
    );
    let der = info.to_der().unwrap();
    pkcs8::der::pem::encode_string("PRIVATE KEY", pkcs8::LineEnding::LF, &der).unwrap()
}

#[test]
fn key_files_round_trip_in_rfc9881_forms() {
    let signer = MlDsa44Signer::from_seed([4; 32], name("log.example"));
    let pem = signer.to_pkcs8_pem().unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let loaded = MlDsa44Signer::from_pem(pem.as_bytes(), name("log.example")).unwrap();
    assert_eq!(loaded.verifier(), signer.verifier());

    // The same bytes as ml-dsa's own PKCS#8 encoder (seed form).
    let theirs = ml_dsa::SigningKey::<MlDsa44>::from_seed(&[4u8; 32].into());
    let theirs = pkcs8::EncodePrivateKey::to_pkcs8_pem(&theirs, pkcs8::LineEnding::LF).unwrap();
    assert_eq!(pem.as_str(), theirs.as_str());

    // The seed-and-expanded-key form (OpenSSL 3.5's default): accepted when both halves agree.
    #[expect(
        deprecated,
        reason = "builds the expanded encoding a test fixture needs"
    )]
    let expanded = ml_dsa::SigningKey::<MlDsa44>::from_seed(&[4u8; 32].into())
        .expanded_key()
        .to_expanded();
    let both = |seed: [u8; 32]| {
        let mut inner = vec![0x04, 0x20];
        inner.extend_from_slice(&seed);
        inner.extend_from_slice(&[0x04, 0x82, 0x0a, 0x00]);
        inner.extend_from_slice(&expanded);
        let mut seq = vec![0x30, 0x82, 0x0a, 0x26];
        seq.extend_from_slice(&inner);
        pkcs8_pem(&seq)
    };
    let loaded = MlDsa44Signer::from_pem(both([4; 32]).as_bytes(), name("log.example")).unwrap();
    assert_eq!(loaded.verifier(), signer.verifier());
    assert_eq!(
        MlDsa44Signer::from_pem(both([5; 32]).as_bytes(), name("log.example")).unwrap_err(),
        NoteError::MlDsaPrivateKeyForm
    );

    // The expanded-key-only form, and a truncated seed, are refused.
    let mut only = vec![0x04, 0x82, 0x0a, 0x00];
    only.extend_from_slice(&expanded);
    for private in [only, vec![0x80, 0x1f, 0]] {
        assert_eq!(
            MlDsa44Signer::from_pem(pkcs8_pem(&private).as_bytes(), name("log.example"))
                .unwrap_err(),
            NoteError::MlDsaPrivateKeyForm
        );
    }

    // Other key types and PEM labels.
    let ed25519 = fixture("ed25519.pem");
    assert!(matches!(
        MlDsa44Signer::from_pem(ed25519.as_bytes(), name("log.example")),
        Err(NoteError::UnsupportedKeyAlgorithm { .. })
    ));
    let sec1 = fixture("p256-sec1.pem");
    assert!(MlDsa44Signer::from_pem(sec1.as_bytes(), name("log.example")).is_err());
    // Our public key is the FIPS 204 encoding ml-dsa computes.
    assert_eq!(
        signer.verifier().public_key(),
        theirs_public(&[4u8; 32]).as_slice()
    );
}

fn theirs_public(seed: &[u8; 32]) -> Vec<u8> {
    use ml_dsa::Keypair as _;
    ml_dsa::SigningKey::<MlDsa44>::from_seed(&(*seed).into())
        .verifying_key()
        .to_bytes()
        .to_vec()
}
