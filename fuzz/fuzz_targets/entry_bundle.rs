//! `decode_bundle` (C2SP tlog-tiles entry bundles): never panics; what decodes encodes back to
//! the same bytes, and `decode_bundle_exact` agrees with it on the entry count.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rekor_tlog::{MAX_ENTRY_SIZE, TileWidth, decode_bundle, decode_bundle_exact, encode_bundle};

fuzz_target!(|data: &[u8]| {
    let Ok(entries) = decode_bundle(data) else {
        return;
    };
    assert!(!entries.is_empty() && entries.len() <= 256);
    assert!(entries.iter().all(|e| e.len() <= MAX_ENTRY_SIZE));
    let encoded = encode_bundle(entries.iter().copied())
        .unwrap_or_else(|e| panic!("re-encoding a decoded bundle failed: {e}"));
    assert_eq!(encoded, data, "decode then encode changed the bytes");

    let width = u16::try_from(entries.len())
        .ok()
        .and_then(TileWidth::new)
        .unwrap_or_else(|| panic!("{} entries is not a bundle width", entries.len()));
    let exact = decode_bundle_exact(data, width)
        .unwrap_or_else(|e| panic!("exact decode at the decoded width failed: {e}"));
    assert_eq!(exact, entries);
    if let Some(other) = width.get().checked_add(1).and_then(TileWidth::new) {
        assert!(decode_bundle_exact(data, other).is_err());
    }
});
