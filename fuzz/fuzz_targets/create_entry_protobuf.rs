//! `create_entry_request_from_protobuf` (the gRPC `CreateEntry` body), then entry validation as
//! the server does it: never panics; a decoded request re-encodes and decodes to the same
//! message, its protojson form (when it has one) parses back to it, and an accepted entry holds
//! the leaf invariants of `rekor_fuzz::validate`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use rekor_api::{create_entry_request_from_json, create_entry_request_from_protobuf, to_json};

fuzz_target!(|data: &[u8]| {
    let Ok(request) = create_entry_request_from_protobuf(data) else {
        return;
    };
    let encoded = request.encode_to_vec();
    let decoded = create_entry_request_from_protobuf(&encoded)
        .unwrap_or_else(|e| panic!("re-decoding an encoded request failed: {e}"));
    assert_eq!(decoded, request);
    // Enum numbers outside the schema have no protojson name; to_json refuses them by design.
    if let Ok(json) = to_json(&request) {
        let from_json = create_entry_request_from_json(json.as_bytes()).unwrap_or_else(|e| {
            panic!("protojson of a decoded request does not parse: {e}\n{json}")
        });
        assert_eq!(from_json, request);
    }
    let _ = rekor_fuzz::validate(&request);
});
