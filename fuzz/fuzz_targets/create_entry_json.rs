//! `create_entry_request_from_json` (the `POST /api/v2/log/entries` body, strict protojson), then
//! entry validation as the server does it: never panics; a parsed request prints to protojson
//! that parses back to it and survives a protobuf round trip, and an accepted entry holds the
//! leaf invariants of `rekor_fuzz::validate`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use rekor_api::{create_entry_request_from_json, create_entry_request_from_protobuf, to_json};

fuzz_target!(|data: &[u8]| {
    let Ok(request) = create_entry_request_from_json(data) else {
        return;
    };
    if let Ok(json) = to_json(&request) {
        let reparsed = create_entry_request_from_json(json.as_bytes())
            .unwrap_or_else(|e| panic!("printed protojson does not parse: {e}\n{json}"));
        assert_eq!(reparsed, request);
    }
    let decoded = create_entry_request_from_protobuf(&request.encode_to_vec())
        .unwrap_or_else(|e| panic!("protobuf round trip failed: {e}"));
    assert_eq!(decoded, request);
    let _ = rekor_fuzz::validate(&request);
});
