//! Every rejection rule of Note::parse, open_note, sign_note and Checkpoint::parse.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions fail loudly on bad fixtures"
)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rekor_note::{
    Checkpoint, KeyName, LogSigner, MAX_NOTE_SIGNATURES, MAX_NOTE_SIZE, Note, NoteError,
    NoteSignature, NoteSigner, open_note, sign_note,
};

const ROOT_B64: &str = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";

fn signer() -> LogSigner {
    LogSigner::from_ed25519_seed([7; 32], KeyName::new("log.example").unwrap())
}

fn signed(text: &str) -> String {
    String::from_utf8(sign_note(text, &[&signer()]).unwrap().to_bytes()).unwrap()
}

/// A syntactically valid line from an unknown key.
fn unknown_line(i: usize) -> String {
    NoteSignature {
        name: KeyName::new(&format!("witness{i}.example")).unwrap(),
        key_id: [0, 0, 0, 1],
        signature: vec![0xaa; 64],
    }
    .to_line()
}

fn parse(s: &str) -> Result<Note, NoteError> {
    Note::parse(s.as_bytes())
}

#[test]
fn framing_rules() {
    let good = signed("hello\n");
    assert!(parse(&good).is_ok());
    let sig = good.strip_prefix("hello\n\n").unwrap();

    assert_eq!(
        parse(&format!("hello\n{sig}")),
        Err(NoteError::MissingSignatureSeparator)
    );
    assert_eq!(parse("hello\n\n"), Err(NoteError::EmptySignatureBlock));
    assert_eq!(
        parse(good.strip_suffix('\n').unwrap()),
        Err(NoteError::SignatureBlockNotTerminated)
    );
    // A trailing blank line makes an empty signature block (the last blank line separates).
    assert_eq!(
        parse(&format!("{good}\n")),
        Err(NoteError::EmptySignatureBlock)
    );
    assert_eq!(parse(""), Err(NoteError::MissingSignatureSeparator));
}

#[test]
fn encoding_rules() {
    let good = signed("hello\n");
    let mut bytes = good.clone().into_bytes();
    bytes[1] = 0xff;
    assert_eq!(Note::parse(&bytes), Err(NoteError::NotUtf8));
    for (bad, offset) in [("he\rllo\n", 2), ("he\tllo\n", 2), ("\0hello\n", 0)] {
        let note = good.replacen("hello\n", bad, 1);
        assert_eq!(
            parse(&note),
            Err(NoteError::ControlCharacter { offset }),
            "{bad:?}"
        );
    }
    // A CRLF line ending is a control character too.
    let crlf = good.replace('\n', "\r\n");
    assert!(matches!(
        parse(&crlf),
        Err(NoteError::ControlCharacter { .. })
    ));
}

#[test]
fn signature_line_rules() {
    let text = "hello\n\n";
    let b64 = STANDARD.encode([1u8, 2, 3, 4, 5, 6]);
    let cases: Vec<(String, NoteError)> = vec![
        (
            format!("- k {b64}\n"),
            NoteError::MalformedSignatureLine { line: 1 },
        ),
        (
            format!("\u{2014}k {b64}\n"),
            NoteError::MalformedSignatureLine { line: 1 },
        ),
        (
            format!("\u{2014} k{b64}\n"),
            NoteError::MalformedSignatureLine { line: 1 },
        ),
        (
            "\u{2014} k \n".to_owned(),
            NoteError::MalformedSignatureLine { line: 1 },
        ),
        (
            format!("\u{2014}  k {b64}\n"),
            NoteError::SignatureLineKeyName { line: 1 },
        ),
        (
            format!("\u{2014} k+1 {b64}\n"),
            NoteError::SignatureLineKeyName { line: 1 },
        ),
        (
            format!("\u{2014} k\u{a0}1 {b64}\n"),
            NoteError::SignatureLineKeyName { line: 1 },
        ),
        (
            format!("\u{2014} k {b64} x\n"),
            NoteError::SignatureBase64 { line: 1 },
        ),
        (
            "\u{2014} k AQIDBAUG\n\u{2014} k AQIDBAU*\n".to_owned(),
            NoteError::SignatureBase64 { line: 2 },
        ),
        // Unpadded, URL-safe and non-canonical trailing bits are refused.
        (
            "\u{2014} k AQIDBAUGBw\n".to_owned(),
            NoteError::SignatureBase64 { line: 1 },
        ),
        (
            "\u{2014} k __8DBAUG\n".to_owned(),
            NoteError::SignatureBase64 { line: 1 },
        ),
        (
            "\u{2014} k AQIDBAUGBx==\n".to_owned(),
            NoteError::SignatureBase64 { line: 1 },
        ),
        // Four bytes is a key ID with no signature.
        (
            "\u{2014} k AQIDBA==\n".to_owned(),
            NoteError::SignatureTooShort { line: 1, len: 4 },
        ),
        (
            "\u{2014} k AQID\n".to_owned(),
            NoteError::SignatureTooShort { line: 1, len: 3 },
        ),
    ];
    for (block, err) in cases {
        assert_eq!(parse(&format!("{text}{block}")), Err(err), "{block:?}");
    }
    // The shortest valid signature: key ID plus one byte.
    let note = parse(&format!("{text}\u{2014} k AQIDBAU=\n")).unwrap();
    assert_eq!(note.signatures()[0].key_id, [1, 2, 3, 4]);
    assert_eq!(note.signatures()[0].signature, [5]);
}

#[test]
fn signature_count_limits() {
    let good = signed("hello\n");
    let with = |n: usize| -> String {
        let mut s = good.clone();
        for i in 0..n {
            s.push_str(&unknown_line(i));
        }
        s
    };
    // The spec floor: 16 signatures must be accepted.
    assert_eq!(parse(&with(15)).unwrap().signatures().len(), 16);
    assert_eq!(
        parse(&with(MAX_NOTE_SIGNATURES - 1))
            .unwrap()
            .signatures()
            .len(),
        MAX_NOTE_SIGNATURES
    );
    let (_, verified) = open_note(
        with(MAX_NOTE_SIGNATURES - 1).as_bytes(),
        &[&signer().verifier()],
    )
    .unwrap();
    assert_eq!(verified.len(), 1);
    assert_eq!(
        parse(&with(MAX_NOTE_SIGNATURES)),
        Err(NoteError::TooManySignatures {
            max: MAX_NOTE_SIGNATURES
        })
    );
    // Building notes obeys the same limit.
    let mut note = parse(&with(MAX_NOTE_SIGNATURES - 1)).unwrap();
    assert_eq!(
        note.push_signature(NoteSignature::parse_line(&unknown_line(999)).unwrap()),
        Err(NoteError::TooManySignatures {
            max: MAX_NOTE_SIGNATURES
        })
    );
    assert_eq!(note.signatures().len(), MAX_NOTE_SIGNATURES);
}

#[test]
fn size_limit() {
    let big_text = format!("{}\n", "a".repeat(MAX_NOTE_SIZE));
    let mut note = big_text.clone();
    note.push('\n');
    note.push_str(&unknown_line(0));
    assert_eq!(
        parse(&note),
        Err(NoteError::NoteTooLarge {
            size: note.len(),
            max: MAX_NOTE_SIZE
        })
    );
    assert!(matches!(
        sign_note(&big_text, &[&signer()]),
        Err(NoteError::NoteTooLarge { .. })
    ));
    // Just under the limit is fine.
    let line = signed("x\n").strip_prefix("x\n\n").unwrap().to_owned();
    let text_len = MAX_NOTE_SIZE - 1 - line.len();
    let text = format!("{}\n", "a".repeat(text_len - 1));
    let exact = format!("{text}\n{line}");
    assert_eq!(exact.len(), MAX_NOTE_SIZE);
    assert!(parse(&exact).is_ok());
}

#[test]
fn verification_rules() {
    let s = signer();
    let v = s.verifier();
    let good = signed("hello\n");

    // Known key whose signature fails: the whole note is rejected, even with a valid one too.
    let sig = sign_note("hello\n", &[&s]).unwrap().signatures()[0].clone();
    let mut bad = sig.clone();
    bad.signature[0] ^= 1;
    let both = format!("hello\n\n{}{}", sig.to_line(), bad.to_line());
    assert_eq!(
        open_note(both.as_bytes(), &[&v]),
        Err(NoteError::SignatureVerificationFailed {
            name: "log.example".into(),
            key_id: s.key_id()
        })
    );
    // A wrong-length Ed25519 signature from a known key fails too.
    let mut short = sig.clone();
    short.signature.pop();
    let note = format!("hello\n\n{}", short.to_line());
    assert!(matches!(
        open_note(note.as_bytes(), &[&v]),
        Err(NoteError::SignatureVerificationFailed { .. })
    ));

    // No known key: no verifiers, or only unrelated ones.
    assert_eq!(
        open_note(good.as_bytes(), &[]),
        Err(NoteError::NoVerifiedSignature)
    );
    let other = LogSigner::from_ed25519_seed([8; 32], KeyName::new("log.example").unwrap());
    assert_eq!(
        open_note(good.as_bytes(), &[&other.verifier()]),
        Err(NoteError::NoVerifiedSignature),
        "same name, other key ID: ignored"
    );

    // A bad signature from an unknown key is ignored.
    let with_junk = format!("{good}{}", unknown_line(1));
    assert_eq!(open_note(with_junk.as_bytes(), &[&v]).unwrap().1.len(), 1);
}

#[test]
fn sign_note_rules() {
    let s = signer();
    assert_eq!(
        sign_note("no newline", &[&s]),
        Err(NoteError::TextNotNewlineTerminated)
    );
    assert_eq!(
        sign_note("tab\there\n", &[&s]),
        Err(NoteError::ControlCharacter { offset: 3 })
    );
    assert_eq!(sign_note("x\n", &[]), Err(NoteError::NoSignatures));
    // Blank lines inside the text survive a round trip (the last blank line separates).
    let note = sign_note("a\n\nb\n\n", &[&s]).unwrap();
    let (opened, _) = open_note(&note.to_bytes(), &[&s.verifier()]).unwrap();
    assert_eq!(opened.text(), "a\n\nb\n\n");
}

#[test]
fn note_new_rules() {
    let line = NoteSignature::parse_line(&unknown_line(0)).unwrap();
    assert_eq!(
        Note::new("x", vec![line.clone()]),
        Err(NoteError::TextNotNewlineTerminated)
    );
    assert_eq!(Note::new("x\n", vec![]), Err(NoteError::NoSignatures));
    assert_eq!(
        Note::new("x\n", vec![line; MAX_NOTE_SIGNATURES + 1]),
        Err(NoteError::TooManySignatures {
            max: MAX_NOTE_SIGNATURES
        })
    );
    assert_eq!(
        NoteSignature::parse_line("\u{2014} a AQIDBAU=\n\u{2014} b AQIDBAU=\n"),
        Err(NoteError::MalformedSignatureLine { line: 1 })
    );
}

#[test]
fn checkpoint_rules() {
    let ok = format!("o\n5\n{ROOT_B64}\n");
    assert!(Checkpoint::parse(&ok).is_ok());
    let cases: Vec<(String, NoteError)> = vec![
        (
            format!("o\n5\n{ROOT_B64}"),
            NoteError::CheckpointNotNewlineTerminated,
        ),
        (
            "o\n5\n".to_owned(),
            NoteError::CheckpointTooFewLines { lines: 2 },
        ),
        (
            "o\n".to_owned(),
            NoteError::CheckpointTooFewLines { lines: 1 },
        ),
        (
            "\n".to_owned(),
            NoteError::CheckpointTooFewLines { lines: 1 },
        ),
        (
            format!("\n5\n{ROOT_B64}\n"),
            NoteError::CheckpointEmptyLine { line: 1 },
        ),
        (
            format!("o\n\n{ROOT_B64}\n"),
            NoteError::CheckpointEmptyLine { line: 2 },
        ),
        (
            "o\n5\n\n".to_owned(),
            NoteError::CheckpointEmptyLine { line: 3 },
        ),
        (
            format!("o\n5\n{ROOT_B64}\next\n\n"),
            NoteError::CheckpointEmptyLine { line: 5 },
        ),
        (
            format!("o\n05\n{ROOT_B64}\n"),
            NoteError::TreeSizeLeadingZero,
        ),
        (
            format!("o\n5 \n{ROOT_B64}\n"),
            NoteError::TreeSizeNotDecimal,
        ),
        (
            format!("o\n0x5\n{ROOT_B64}\n"),
            NoteError::TreeSizeNotDecimal,
        ),
        (
            format!("o\n99999999999999999999\n{ROOT_B64}\n"),
            NoteError::TreeSizeOverflow,
        ),
        ("o\n5\nnot base64!\n".to_owned(), NoteError::RootHashBase64),
        (
            "o\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n".to_owned(),
            NoteError::RootHashBase64,
        ),
        (
            format!("o\n5\n{}\n", STANDARD.encode([0u8; 31])),
            NoteError::RootHashLength { len: 31 },
        ),
        (
            format!("o\n5\n{}\n", STANDARD.encode([0u8; 33])),
            NoteError::RootHashLength { len: 33 },
        ),
        (
            format!("o\n5\n{}\n", STANDARD.encode([0u8; 48])),
            NoteError::RootHashLength { len: 48 },
        ),
        (
            format!("o\r\n5\n{ROOT_B64}\n"),
            NoteError::OriginInvalidChar { ch: '\r' },
        ),
    ];
    for (text, err) in cases {
        assert_eq!(Checkpoint::parse(&text), Err(err), "{text:?}");
    }
    let with_ext = Checkpoint::parse(&format!("o\n5\n{ROOT_B64}\nTimestamp: 1\nx\n")).unwrap();
    assert_eq!(with_ext.extensions, ["Timestamp: 1", "x"]);
    assert_eq!(
        with_ext.to_text(),
        format!("o\n5\n{ROOT_B64}\nTimestamp: 1\nx\n")
    );
}

#[test]
fn checkpoint_round_trip() {
    for size in [0u64, 1, 9, 10, 1 << 40, u64::MAX] {
        let cp = Checkpoint::new(
            rekor_note::Origin::new("log.example").unwrap(),
            size,
            [size.to_le_bytes()[0]; 32],
        );
        assert_eq!(Checkpoint::parse(&cp.to_text()).unwrap(), cp);
        let note = signer().sign_checkpoint(&cp).unwrap();
        assert_eq!(signer().verifier().verify_checkpoint(&note).unwrap(), cp);
        let parsed = Note::parse(&note).unwrap();
        assert_eq!(parsed.to_bytes(), note);
    }
}
