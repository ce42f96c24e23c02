//! tlog-cosignature v1 (Ed25519, type 0x04): signing, verifying, timestamps.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions fail loudly on bad fixtures"
)]

use rekor_note::{
    COSIGNATURE_V1_LEN, Checkpoint, CosignatureSigner, CosignatureVerifier, KeyName, LogSigner,
    MAX_COSIGNATURE_TIMESTAMP, Note, NoteError, NoteVerifier, Origin, cosignature_v1_key_id,
    key_hash, open_note,
};

fn log() -> LogSigner {
    LogSigner::from_ed25519_seed([1; 32], KeyName::new("log.example").unwrap())
}

fn witness(seed: u8, name: &str) -> CosignatureSigner {
    CosignatureSigner::from_ed25519_seed([seed; 32], KeyName::new(name).unwrap())
}

fn checkpoint_note() -> Note {
    let cp = Checkpoint::new(Origin::new("log.example").unwrap(), 42, [3; 32]);
    Note::parse(&log().sign_checkpoint(&cp).unwrap()).unwrap()
}

#[test]
fn cosign_add_and_verify() {
    let mut note = checkpoint_note();
    let w1 = witness(2, "w1.example");
    let w2 = witness(3, "w2.example");
    note.push_signature(w1.cosign(note.text(), 1_700_000_000).unwrap())
        .unwrap();
    note.push_signature(w2.cosign(note.text(), 1_700_000_001).unwrap())
        .unwrap();
    let bytes = note.to_bytes();

    let v1 = w1.verifier();
    let v2 = w2.verifier();
    let (cp, _, cosigs) = log()
        .verifier()
        .verify_checkpoint_with_cosigners(&bytes, &[&v1, &v2])
        .unwrap();
    assert_eq!(cp.size, 42);
    assert_eq!(cosigs.len(), 2);
    assert_eq!(v1.timestamp(&cosigs[0]), Some(1_700_000_000));
    assert_eq!(v2.timestamp(&cosigs[1]), Some(1_700_000_001));
    assert_eq!(v1.timestamp(&cosigs[1]), None, "other witness's line");
    assert_eq!(cosigs[0].signature.len(), COSIGNATURE_V1_LEN);

    // Only the witness: open_note accepts it (a known key verified), the checkpoint check
    // requires the log.
    assert_eq!(open_note(&bytes, &[&v1]).unwrap().1.len(), 1);
}

#[test]
fn key_id_uses_type_0x04() {
    let w = witness(2, "w1.example");
    let v = w.verifier();
    let pk = v.public_key();
    let name = KeyName::new("w1.example").unwrap();
    assert_eq!(v.key_id(), cosignature_v1_key_id(&name, &pk));
    assert_eq!(v.key_id(), key_hash(&name, 0x04, &pk)[..4]);
    assert_ne!(v.key_id(), key_hash(&name, 0x01, &pk)[..4]);
    // vkey round trip.
    let vkey = v.to_vkey();
    assert_eq!(CosignatureVerifier::from_vkey(&vkey).unwrap(), v);
    assert!(vkey.starts_with("w1.example+"));
}

#[test]
fn tampering_is_detected() {
    let note = checkpoint_note();
    let w = witness(2, "w1.example");
    let v = w.verifier();
    let sig = w.cosign(note.text(), 1_700_000_000).unwrap();
    assert_eq!(v.verify_cosignature(note.text(), &sig), Ok(1_700_000_000));

    // Changing the timestamp breaks the signature (the time is signed).
    let mut later = sig.clone();
    later.signature[7] ^= 1;
    assert!(matches!(
        v.verify_cosignature(note.text(), &later),
        Err(NoteError::SignatureVerificationFailed { .. })
    ));
    // A signature over another checkpoint fails.
    assert!(!v.verify(
        b"log.example\n43\nAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=\n",
        &sig.signature
    ));
    // Truncated or extended signatures fail.
    assert!(!v.verify(note.text().as_bytes(), &sig.signature[..71]));
    let mut longer = sig.signature.clone();
    longer.push(0);
    assert!(!v.verify(note.text().as_bytes(), &longer));
    // A line from another witness is not this witness's.
    let other = witness(3, "w2.example").cosign(note.text(), 1).unwrap();
    assert_eq!(
        v.verify_cosignature(note.text(), &other),
        Err(NoteError::NoVerifiedSignature)
    );

    // A bad cosignature of a known witness rejects the note.
    let mut bad_note = checkpoint_note();
    bad_note.push_signature(later).unwrap();
    assert!(matches!(
        log()
            .verifier()
            .verify_checkpoint_with_cosigners(&bad_note.to_bytes(), &[&v]),
        Err(NoteError::SignatureVerificationFailed { .. })
    ));
}

#[test]
fn timestamp_range() {
    let note = checkpoint_note();
    let w = witness(2, "w1.example");
    assert!(w.cosign(note.text(), MAX_COSIGNATURE_TIMESTAMP).is_ok());
    assert_eq!(
        w.cosign(note.text(), MAX_COSIGNATURE_TIMESTAMP + 1),
        Err(NoteError::TimestampOutOfRange {
            timestamp: MAX_COSIGNATURE_TIMESTAMP + 1
        })
    );
    assert_eq!(
        w.cosign("no newline", 1),
        Err(NoteError::TextNotNewlineTerminated)
    );
    // A timestamp with the top bit set is refused by the verifier even if otherwise well formed.
    let mut sig = w.cosign(note.text(), 5).unwrap();
    sig.signature[0] = 0x80;
    assert_eq!(rekor_note::cosignature_v1_timestamp(&sig.signature), None);
    assert!(!w.verifier().verify(note.text().as_bytes(), &sig.signature));
}
