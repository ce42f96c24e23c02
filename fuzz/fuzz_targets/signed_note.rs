//! `Note::parse` and `open_note` (C2SP signed-note) with fixed log verifiers (the Ed25519, P-256
//! and P-384 keys of `crates/note/tests/testdata`): never panic; a parsed note encodes back to the
//! input and rebuilds through `Note::new`; an opened note's verified signatures are among its
//! lines and match a verifier; `verify_checkpoint` accepts only notes whose text is a checkpoint
//! of the verifier's origin.
#![no_main]

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use rekor_note::{Checkpoint, KeyName, LogVerifier, Note, NoteSignature, NoteVerifier, open_note};

/// `expected.txt` in `crates/note/tests/testdata`: the DER SPKIs of its key fixtures.
const SPKIS: [&str; 3] = [
    "MCowBQYDK2VwAyEALBHgyA88i9sEybsWKnzbHOhkYbWQUci62DKu3Pro434=",
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEy80WEJTGbEBWO2jQ3Dp00beQmJTb7axGD9rd4VWP3/1/2p52cZVCWpyI8BTBjVgHuyV+NFrwOJ31XCmn3xaUGw==",
    "MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEv1kut6buzKAgndHSvs4HyAtADLHdU6Qrh0mQri3i0h6YKipbslt34DBoJtANXchBqGbumb10FzsLN/3oA9H7O33qP8n30JyHxOCyYz2FgWlRlcMeDW/Af/hvZnEK4mV1",
];

static VERIFIERS: LazyLock<Vec<LogVerifier>> = LazyLock::new(|| {
    let name = KeyName::new("log.example.dev").unwrap_or_else(|e| panic!("key name: {e}"));
    SPKIS
        .iter()
        .map(|spki| {
            let der = STANDARD
                .decode(spki)
                .unwrap_or_else(|e| panic!("fixture base64: {e}"));
            LogVerifier::from_spki_der(name.clone(), &der)
                .unwrap_or_else(|e| panic!("fixture key: {e}"))
        })
        .collect()
});

fuzz_target!(|data: &[u8]| {
    let verifiers: Vec<&dyn NoteVerifier> =
        VERIFIERS.iter().map(|v| v as &dyn NoteVerifier).collect();
    let opened = open_note(data, &verifiers);

    let Ok(note) = Note::parse(data) else {
        assert!(
            opened.is_err(),
            "open_note accepted what Note::parse refused"
        );
        return;
    };
    assert_eq!(note.to_bytes(), data, "parse then encode changed the note");
    let rebuilt = Note::new(note.text(), note.signatures().to_vec())
        .unwrap_or_else(|e| panic!("Note::new refused a parsed note: {e}"));
    assert_eq!(rebuilt, note);
    for signature in note.signatures() {
        let line = signature.to_line();
        let body = line
            .strip_suffix('\n')
            .unwrap_or_else(|| panic!("signature line without newline: {line:?}"));
        assert_eq!(
            NoteSignature::parse_line(body).ok().as_ref(),
            Some(signature)
        );
    }

    if let Ok((opened, verified)) = opened {
        assert_eq!(opened, note);
        assert!(!verified.is_empty());
        for signature in &verified {
            assert!(note.signatures().contains(signature));
            assert!(
                verifiers
                    .iter()
                    .any(|v| v.name() == &signature.name && v.key_id() == signature.key_id)
            );
        }
    }

    for verifier in VERIFIERS.iter() {
        if let Ok(checkpoint) = verifier.verify_checkpoint(data) {
            assert_eq!(
                Checkpoint::parse(note.text()).ok().as_ref(),
                Some(&checkpoint)
            );
            assert_eq!(checkpoint.origin.as_str(), "log.example.dev");
        }
    }
});
