//! `TilePath::parse` (C2SP tlog-tiles paths): never panics; what parses prints back to the same
//! text (the parser accepts canonical paths only) and parses again to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rekor_tlog::{MAX_TILE_PATH_LEN, TilePath};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(path) = TilePath::parse(text) else {
        return;
    };
    assert!(text.len() <= MAX_TILE_PATH_LEN);
    let printed = path.path();
    assert_eq!(printed, text, "a non-canonical path was accepted");
    assert_eq!(TilePath::parse(&printed).ok(), Some(path));
    assert_eq!(path.to_string(), printed);
});
