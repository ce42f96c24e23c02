//! `Checkpoint::parse` (C2SP tlog-checkpoint note text): never panics; what parses validates and
//! prints back to the same text (size without leading zeros, canonical base64 root).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rekor_note::Checkpoint;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(checkpoint) = Checkpoint::parse(text) else {
        return;
    };
    assert!(
        checkpoint.validate().is_ok(),
        "a parsed checkpoint fails validate()"
    );
    let printed = checkpoint.to_text();
    assert_eq!(printed, text, "parse then print changed the text");
    assert_eq!(Checkpoint::parse(&printed).ok(), Some(checkpoint));
});
