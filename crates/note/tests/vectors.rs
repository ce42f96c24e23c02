//! Vectors produced by others: the C2SP specs, Go's sumdb/note documentation,
//! transparency-dev/formats tests, and real Sigstore staging checkpoints.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions fail loudly on bad fixtures"
)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rekor_note::{
    CosignatureVerifier, KeyName, LogKeyAlgorithm, LogSigner, LogVerifier, Note, NoteError,
    NoteVerifier, cosignature_v1_message, cosignature_v1_timestamp, open_note, sign_note,
};

fn testdata(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Reads `field value` lines of `sigstage-keys.txt`.
fn sigstage(field: &str) -> Vec<String> {
    String::from_utf8(testdata("sigstage-keys.txt"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(f, _)| *f == field)
        .map(|(_, v)| v.to_owned())
        .collect()
}

// c2sp.org/signed-note, "Verifier keys" / "Example".
const SPEC_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
const SPEC_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

#[test]
fn signed_note_spec_example_verifies() {
    let v = LogVerifier::from_vkey(SPEC_VKEY).unwrap();
    assert_eq!(v.name().as_str(), "example.com/foo");
    assert_eq!(v.key_id(), [0x53, 0x0d, 0x90, 0x3a]);
    assert_eq!(v.algorithm(), LogKeyAlgorithm::Ed25519);
    assert_eq!(v.to_vkey().as_deref(), Some(SPEC_VKEY));

    let (note, verified) = open_note(SPEC_NOTE.as_bytes(), &[&v]).unwrap();
    assert_eq!(note.text(), "This is an example message.\n");
    assert_eq!(verified.len(), 1);
    assert_eq!(note.to_bytes(), SPEC_NOTE.as_bytes());

    // The same signature over another text must fail.
    let tampered = SPEC_NOTE.replace("example message", "example massage");
    assert_eq!(
        open_note(tampered.as_bytes(), &[&v]),
        Err(NoteError::SignatureVerificationFailed {
            name: "example.com/foo".into(),
            key_id: [0x53, 0x0d, 0x90, 0x3a],
        })
    );
}

#[test]
fn signed_note_spec_vkey_with_wrong_key_id_is_refused() {
    let bad = SPEC_VKEY.replace("530d903a", "530d903b");
    assert_eq!(
        LogVerifier::from_vkey(&bad),
        Err(NoteError::VkeyKeyIdMismatch {
            stated: [0x53, 0x0d, 0x90, 0x3b],
            computed: [0x53, 0x0d, 0x90, 0x3a],
        })
    );
}

// golang.org/x/mod/sumdb/note package documentation.
const GO_SEED_B64: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const GO_SIGNED: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

#[test]
fn go_sumdb_example_signs_byte_for_byte() {
    let raw = STANDARD.decode(GO_SEED_B64).unwrap();
    assert_eq!(raw[0], 0x01);
    let seed: [u8; 32] = raw[1..].try_into().unwrap();
    let signer = LogSigner::from_ed25519_seed(seed, KeyName::new("PeterNeumann").unwrap());
    assert_eq!(signer.verifier().to_vkey().as_deref(), Some(GO_VKEY));
    let note = sign_note(GO_TEXT, &[&signer]).unwrap();
    assert_eq!(String::from_utf8(note.to_bytes()).unwrap(), GO_SIGNED);

    let v = LogVerifier::from_vkey(GO_VKEY).unwrap();
    let (opened, _) = open_note(GO_SIGNED.as_bytes(), &[&v]).unwrap();
    assert_eq!(opened.text(), GO_TEXT);
}

// c2sp.org/tlog-cosignature example (no witness key is published, so only the format is checked).
const COSIGNED_SPEC_NOTE: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n";
const COSIGNED_SPEC_MESSAGE: &str = "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

#[test]
fn tlog_cosignature_spec_example_format() {
    let note = Note::parse(COSIGNED_SPEC_NOTE.as_bytes()).unwrap();
    assert_eq!(note.signatures().len(), 2);
    let witness = &note.signatures()[1];
    assert_eq!(witness.name.as_str(), "witness.example.com/w1");
    assert_eq!(witness.signature.len(), 72);
    let ts = cosignature_v1_timestamp(&witness.signature).unwrap();
    assert_eq!(ts, 1_679_315_147);
    assert_eq!(
        cosignature_v1_message(note.text(), ts),
        COSIGNED_SPEC_MESSAGE.as_bytes()
    );
    // The log's line is a plain 64-byte Ed25519 signature: not a cosignature.
    assert_eq!(
        cosignature_v1_timestamp(&note.signatures()[0].signature),
        None
    );
    assert_eq!(note.to_bytes(), COSIGNED_SPEC_NOTE.as_bytes());
}

#[test]
fn transparency_dev_cosignature_vectors() {
    // transparency-dev/formats note/note_cosigv1_test.go, TestCosignatureTimestamp.
    let works = STANDARD
        .decode("ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA==")
        .unwrap();
    assert_eq!(cosignature_v1_timestamp(&works[4..]), Some(1_727_964_367));
    let plain = STANDARD
        .decode("eQjRQm6eSKzFoiYalgwCPXu2y3ijtg68is9M46JKxuZB+dRfTmeQeDBoXnvxZx2ugnkyV+MUMLXpWs1hPb/W/4xkNQY=")
        .unwrap();
    assert_eq!(cosignature_v1_timestamp(&plain[4..]), None);

    // TestCoSigV1NewVerifier: a native type-0x04 vkey and a type-0x01 vkey.
    let remora = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2";
    let w = CosignatureVerifier::from_vkey(remora).unwrap();
    assert_eq!(w.key_id(), [0xda, 0x77, 0xad, 0xe7]);
    assert_eq!(w.to_vkey(), remora);
    assert!(matches!(
        CosignatureVerifier::from_vkey(&remora.replace("da77ade7", "da77ade8")),
        Err(NoteError::VkeyKeyIdMismatch { .. })
    ));
    let ed = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6";
    assert_eq!(
        LogVerifier::from_vkey(ed).unwrap().key_id(),
        [0x79, 0x97, 0x40, 0x5c]
    );
    assert_eq!(
        CosignatureVerifier::from_vkey(ed),
        Err(NoteError::UnsupportedVkeyType { sig_type: 0x01 })
    );
    assert_eq!(
        LogVerifier::from_vkey(remora),
        Err(NoteError::UnsupportedVkeyType { sig_type: 0x04 })
    );
}

/// A real checkpoint of the Sigstore staging Rekor v2 log (from a sigstore-python test bundle),
/// signed by the log and cosigned by three public witnesses.
#[test]
fn sigstage_rekor_v2_checkpoint_with_witnesses() {
    let note = testdata("sigstage-rekor-v2-alpha3.note");
    let name = KeyName::new(&sigstage("v2-name")[0]).unwrap();
    let spki = STANDARD.decode(&sigstage("v2-spki")[0]).unwrap();
    let log = LogVerifier::from_spki_der(name, &spki).unwrap();
    assert_eq!(
        log.log_id().to_vec(),
        STANDARD.decode(&sigstage("v2-log-id")[0]).unwrap(),
        "log ID must equal the TrustedRoot logId.keyId"
    );
    assert_eq!(log.to_vkey().unwrap(), sigstage("v2-vkey")[0]);
    assert_eq!(log.public_key_der(), spki);

    let cp = log.verify_checkpoint(&note).unwrap();
    assert_eq!(cp.origin.as_str(), "log2025-alpha3.rekor.sigstage.dev");
    assert_eq!(cp.size, 4_026_479);
    assert_eq!(
        STANDARD.encode(cp.root),
        "5iaX4xK6PMnp4ZFTP4iywMcwLgaTjzgRTkrTOUFIrfY="
    );

    let witnesses: Vec<CosignatureVerifier> = sigstage("witness-vkey")
        .iter()
        .map(|v| CosignatureVerifier::from_vkey(v).unwrap())
        .collect();
    let dyns: Vec<&dyn NoteVerifier> = witnesses.iter().map(|w| w as &dyn NoteVerifier).collect();
    let (cp2, opened, cosigs) = log.verify_checkpoint_with_cosigners(&note, &dyns).unwrap();
    assert_eq!(cp2, cp);
    assert_eq!(cosigs.len(), 3);
    for w in &witnesses {
        let sig = cosigs
            .iter()
            .find(|s| s.name == *w.name())
            .expect("every witness cosigned");
        assert_eq!(w.timestamp(sig), Some(1_778_700_214));
        assert_eq!(w.verify_cosignature(opened.text(), sig), Ok(1_778_700_214));
    }

    // Witnesses alone do not make a checkpoint valid: drop the log's line (line 5).
    let text = String::from_utf8(note.clone()).unwrap();
    let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
    assert!(lines[4].contains("log2025-alpha3"));
    lines.remove(4);
    let without_log = lines.concat();
    assert_eq!(
        log.verify_checkpoint_with_cosigners(without_log.as_bytes(), &dyns)
            .map(|_| ()),
        Err(NoteError::MissingLogSignature {
            name: "log2025-alpha3.rekor.sigstage.dev".into()
        })
    );
    assert_eq!(
        log.verify_checkpoint(without_log.as_bytes()),
        Err(NoteError::NoVerifiedSignature)
    );
}

/// A real Rekor v1 staging checkpoint: ECDSA P-256, ASN.1 DER signature, key ID = SHA-256(SPKI)[:4].
#[test]
fn sigstage_rekor_v1_ecdsa_checkpoint() {
    let note = testdata("sigstage-rekor-v1.note");
    let name = KeyName::new(&sigstage("v1-name")[0]).unwrap();
    let spki = STANDARD.decode(&sigstage("v1-spki")[0]).unwrap();
    let log = LogVerifier::from_spki_der(name, &spki).unwrap();
    assert_eq!(log.algorithm(), LogKeyAlgorithm::EcdsaP256Sha256);
    assert_eq!(
        log.log_id().to_vec(),
        STANDARD.decode(&sigstage("v1-log-id")[0]).unwrap()
    );
    let (opened, verified) = open_note(&note, &[&log]).unwrap();
    assert_eq!(verified.len(), 1);
    assert_eq!(verified[0].key_id, log.log_id()[..4]);
    // Rekor v1 origins ("rekor.sigstage.dev - <tree id>") differ from the key name, so the
    // Rekor v2 checkpoint check refuses them.
    assert!(matches!(
        log.verify_checkpoint(&note),
        Err(NoteError::OriginMismatch { .. })
    ));
    assert_eq!(
        rekor_note::Checkpoint::parse(opened.text()).unwrap().size,
        25_901_138
    );

    // The P-256 vkey (transparency-dev type 0x02) round-trips.
    let vkey = log.to_vkey().unwrap();
    assert!(vkey.starts_with("rekor.sigstage.dev+d32f30a3+Aj"));
    assert_eq!(LogVerifier::from_vkey(&vkey).unwrap(), log);
}
