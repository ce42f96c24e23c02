//! The protojson rules the Rekor v2 HTTP API depends on, one test each.

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    reason = "test helpers outside #[test] fns fail the test by panicking"
)]

use rekor_api::common::v1::{HashOutput, LogId, PublicKeyDetails};
use rekor_api::rekor::v1::{Checkpoint, InclusionProof, KindVersion, TransparencyLogEntry};
use rekor_api::rekor::v2::{
    CreateEntryRequest, HashedRekordRequestV002, PublicKey, Signature, Verifier,
    create_entry_request, verifier,
};
use rekor_api::{
    ApiError, JsonLimits, MAX_JSON_DEPTH, MAX_MESSAGE_BYTES, create_entry_request_from_json,
    create_entry_request_from_protobuf, from_json, to_json,
};

fn request(
    digest: &[u8],
    content: &[u8],
    key: &[u8],
    details: PublicKeyDetails,
) -> CreateEntryRequest {
    CreateEntryRequest {
        spec: Some(create_entry_request::Spec::HashedRekordRequestV002(
            HashedRekordRequestV002 {
                digest: digest.to_vec(),
                signature: Some(Signature {
                    content: content.to_vec(),
                    verifier: Some(Verifier {
                        verifier: Some(verifier::Verifier::PublicKey(PublicKey {
                            raw_bytes: key.to_vec(),
                        })),
                        key_details: details.into(),
                    }),
                }),
            },
        )),
    }
}

fn expect_invalid(body: &str) -> String {
    match create_entry_request_from_json(body.as_bytes()) {
        Err(ApiError::InvalidJson { source, .. }) => source.to_string(),
        other => panic!("expected InvalidJson for {body}, got {other:?}"),
    }
}

fn log_id(json: &str) -> Result<LogId, ApiError> {
    from_json(json.as_bytes(), JsonLimits::default())
}

const CAMEL: &str = r#"{"hashedRekordRequestV002":{"digest":"AAEC","signature":{"content":"AQI=","verifier":{"publicKey":{"rawBytes":"AwQ="},"keyDetails":"PKIX_ECDSA_P256_SHA_256"}}}}"#;

#[test]
fn output_names_are_lower_camel_case() {
    let json = to_json(&request(
        &[0, 1, 2],
        &[1, 2],
        &[3, 4],
        PublicKeyDetails::PkixEcdsaP256Sha256,
    ))
    .unwrap();
    assert_eq!(
        json,
        r#"{"hashedRekordRequestV002":{"digest":"AAEC","signature":{"content":"AQI=","verifier":{"keyDetails":"PKIX_ECDSA_P256_SHA_256","publicKey":{"rawBytes":"AwQ="}}}}}"#
    );
}

#[test]
fn input_accepts_camel_case_and_proto_names() {
    let expected = request(
        &[0, 1, 2],
        &[1, 2],
        &[3, 4],
        PublicKeyDetails::PkixEcdsaP256Sha256,
    );
    assert_eq!(
        create_entry_request_from_json(CAMEL.as_bytes()).unwrap(),
        expected
    );
    let snake = r#"{"hashed_rekord_request_v002":{"digest":"AAEC","signature":{"content":"AQI=","verifier":{"public_key":{"raw_bytes":"AwQ="},"key_details":"PKIX_ECDSA_P256_SHA_256"}}}}"#;
    assert_eq!(
        create_entry_request_from_json(snake.as_bytes()).unwrap(),
        expected
    );
}

#[test]
fn int64_is_a_string_out() {
    let tle = TransparencyLogEntry {
        log_index: 9_007_199_254_740_993, // 2^53 + 1: not exact as a JSON double
        integrated_time: -1,
        inclusion_proof: Some(InclusionProof {
            tree_size: i64::MAX,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        to_json(&tle).unwrap(),
        r#"{"logIndex":"9007199254740993","integratedTime":"-1","inclusionProof":{"treeSize":"9223372036854775807"}}"#
    );
}

#[test]
fn int64_in_accepts_strings_and_numbers() {
    for json in [
        r#"{"logIndex":"9007199254740993"}"#,
        r#"{"logIndex":9007199254740993}"#,
        r#"{"log_index":"9007199254740993"}"#,
    ] {
        let tle: TransparencyLogEntry = from_json(json.as_bytes(), JsonLimits::default()).unwrap();
        assert_eq!(tle.log_index, 9_007_199_254_740_993, "{json}");
    }
    for bad in [
        r#"{"logIndex":"12x"}"#,
        r#"{"logIndex":"9223372036854775808"}"#,
        r#"{"logIndex":true}"#,
    ] {
        assert!(
            matches!(
                from_json::<TransparencyLogEntry>(bad.as_bytes(), JsonLimits::default()),
                Err(ApiError::InvalidJson { .. })
            ),
            "{bad} must be refused"
        );
    }
}

#[test]
fn bytes_are_padded_standard_base64_out() {
    let id = LogId {
        key_id: vec![0xfb, 0xff],
    };
    assert_eq!(to_json(&id).unwrap(), r#"{"keyId":"+/8="}"#);
    let id = LogId {
        key_id: vec![0xfb, 0xff, 0xbf],
    };
    assert_eq!(to_json(&id).unwrap(), r#"{"keyId":"+/+/"}"#);
}

#[test]
fn bytes_in_accept_standard_and_url_safe_padded_or_not() {
    for s in ["+/8=", "+/8", "-_8=", "-_8"] {
        let id = log_id(&format!(r#"{{"keyId":"{s}"}}"#)).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(id.key_id, [0xfb, 0xff], "{s}");
    }
    for bad in ["+/8*", "A", r"\u0000"] {
        assert!(
            matches!(
                log_id(&format!(r#"{{"keyId":"{bad}"}}"#)),
                Err(ApiError::InvalidJson { .. })
            ),
            "{bad} must be refused"
        );
    }
}

#[test]
fn enums_in_by_name_or_number_out_by_name() {
    let by_number = CAMEL.replace(r#""PKIX_ECDSA_P256_SHA_256""#, "5");
    let parsed = create_entry_request_from_json(by_number.as_bytes()).unwrap();
    assert_eq!(
        parsed,
        create_entry_request_from_json(CAMEL.as_bytes()).unwrap()
    );
    assert!(
        to_json(&parsed)
            .unwrap()
            .contains(r#""keyDetails":"PKIX_ECDSA_P256_SHA_256""#)
    );

    // A deprecated value is still a valid name.
    let deprecated = CAMEL.replace("PKIX_ECDSA_P256_SHA_256", "PKIX_ECDSA_P384_SHA_256");
    let parsed = create_entry_request_from_json(deprecated.as_bytes()).unwrap();
    assert!(
        to_json(&parsed)
            .unwrap()
            .contains(r#""keyDetails":"PKIX_ECDSA_P384_SHA_256""#)
    );

    let hash = HashOutput {
        algorithm: 2,
        digest: vec![],
    };
    assert_eq!(to_json(&hash).unwrap(), r#"{"algorithm":"SHA2_384"}"#);

    // Known deviation from protojson, pinned here: a number outside the enum
    // is refused on input and cannot be written on output (protojson would
    // carry the bare number). Validation refuses such values anyway.
    expect_invalid(&CAMEL.replace(r#""PKIX_ECDSA_P256_SHA_256""#, "99"));
    let unknown = HashOutput {
        algorithm: 99,
        digest: vec![],
    };
    assert!(matches!(to_json(&unknown), Err(ApiError::Serialize { .. })));

    let message = expect_invalid(&CAMEL.replace("PKIX_ECDSA_P256_SHA_256", "ECDSA_P256"));
    assert!(message.contains("ECDSA_P256"), "{message}");
    expect_invalid(&CAMEL.replace(
        r#""PKIX_ECDSA_P256_SHA_256""#,
        r#""pkix_ecdsa_p256_sha_256""#,
    ));
}

#[test]
fn unknown_fields_are_refused_at_every_level() {
    for body in [
        r#"{"hashedRekordRequestV002":{},"bogus":1}"#,
        r#"{"hashedRekordRequestV002":{"digest":"AAEC","bogus":null}}"#,
        r#"{"hashedRekordRequestV002":{"signature":{"verifier":{"publicKey":{"rawBytes":"AwQ=","extra":"x"}}}}}"#,
        // Case matters: neither the JSON name nor the proto name.
        r#"{"HashedRekordRequestV002":{}}"#,
    ] {
        let message = expect_invalid(body);
        assert!(message.contains("unknown field"), "{body}: {message}");
    }
}

#[test]
fn default_values_are_omitted() {
    assert_eq!(to_json(&CreateEntryRequest::default()).unwrap(), "{}");
    assert_eq!(to_json(&TransparencyLogEntry::default()).unwrap(), "{}");
    let tle = TransparencyLogEntry {
        log_index: 0,
        log_id: Some(LogId::default()),
        kind_version: Some(KindVersion {
            kind: "hashedrekord".into(),
            version: String::new(),
        }),
        inclusion_proof: Some(InclusionProof {
            checkpoint: Some(Checkpoint::default()),
            ..Default::default()
        }),
        ..Default::default()
    };
    // Present sub-messages are written even when empty; zero scalars are not.
    assert_eq!(
        to_json(&tle).unwrap(),
        r#"{"logId":{},"kindVersion":{"kind":"hashedrekord"},"inclusionProof":{"checkpoint":{}}}"#
    );
    let unspecified = request(&[], &[], &[], PublicKeyDetails::Unspecified);
    assert_eq!(
        to_json(&unspecified).unwrap(),
        r#"{"hashedRekordRequestV002":{"signature":{"verifier":{"publicKey":{}}}}}"#
    );
}

#[test]
fn explicit_null_is_the_default_for_messages_only() {
    let body = r#"{"hashedRekordRequestV002":{"signature":null}}"#;
    let parsed = create_entry_request_from_json(body.as_bytes()).unwrap();
    assert_eq!(
        parsed.spec,
        Some(create_entry_request::Spec::HashedRekordRequestV002(
            HashedRekordRequestV002::default()
        ))
    );
    // protojson also allows null for scalars; pbjson refuses it. Stricter is
    // fine for a server, and this pins the behaviour so a change is noticed.
    let message = expect_invalid(r#"{"hashedRekordRequestV002":{"digest":null}}"#);
    assert!(message.contains("null"), "{message}");
}

#[test]
fn repeated_field_and_two_oneof_members_are_refused() {
    let message =
        expect_invalid(r#"{"hashedRekordRequestV002":{"digest":"AA==","digest":"AQ=="}}"#);
    assert!(message.contains("duplicate field"), "{message}");
    // The JSON name and the proto name are the same field.
    let message = expect_invalid(
        r#"{"hashedRekordRequestV002":{"signature":{"verifier":{"keyDetails":5,"key_details":5}}}}"#,
    );
    assert!(message.contains("duplicate field"), "{message}");
    let message =
        expect_invalid(r#"{"hashedRekordRequestV002":{},"hashed_rekord_request_v002":{}}"#);
    assert!(message.contains("duplicate field"), "{message}");
    expect_invalid(r#"{"hashedRekordRequestV002":{},"dsseRequestV002":{}}"#);
    expect_invalid(r#"{"verifier":{"publicKey":{},"x509Certificate":{}}}"#);
}

#[test]
fn trailing_data_is_refused_and_whitespace_is_not() {
    let padded = format!(" \n\t{CAMEL}\r\n ");
    assert!(create_entry_request_from_json(padded.as_bytes()).is_ok());
    for tail in ["{}", "x", ",", "]", "\0"] {
        let message = expect_invalid(&format!("{CAMEL}{tail}"));
        assert!(message.contains("trailing"), "{tail:?}: {message}");
    }
    for bad in [
        "",
        "null",
        "[]",
        "\"{}\"",
        "{",
        r#"{"hashedRekordRequestV002":{}"#,
    ] {
        expect_invalid(bad);
    }
}

#[test]
fn size_limit_is_checked_before_parsing() {
    let mut body = CAMEL.as_bytes().to_vec();
    body.resize(MAX_MESSAGE_BYTES, b' ');
    assert!(
        create_entry_request_from_json(&body).is_ok(),
        "exactly at the limit"
    );
    body.push(b' ');
    assert!(matches!(
        create_entry_request_from_json(&body),
        Err(ApiError::TooLarge { size, limit: MAX_MESSAGE_BYTES }) if size == MAX_MESSAGE_BYTES + 1
    ));

    let small = JsonLimits {
        max_bytes: 10,
        ..JsonLimits::default()
    };
    assert!(matches!(
        from_json::<CreateEntryRequest>(CAMEL.as_bytes(), small),
        Err(ApiError::TooLarge { limit: 10, .. })
    ));

    let mut wire = vec![0u8; MAX_MESSAGE_BYTES + 1];
    wire[0] = 0x0a;
    assert!(matches!(
        create_entry_request_from_protobuf(&wire),
        Err(ApiError::TooLarge { .. })
    ));
}

#[test]
fn depth_limit_is_checked_before_parsing() {
    let deep = |n: usize| format!(r#"{{"bogus":{}{}}}"#, "[".repeat(n), "]".repeat(n));
    // Too deep: refused as such, before the unknown field is even seen.
    assert!(matches!(
        create_entry_request_from_json(deep(MAX_JSON_DEPTH).as_bytes()),
        Err(ApiError::TooDeep {
            limit: MAX_JSON_DEPTH
        })
    ));
    // Within the limit: reaches the parser, which refuses the unknown field.
    assert!(matches!(
        create_entry_request_from_json(deep(MAX_JSON_DEPTH - 1).as_bytes()),
        Err(ApiError::InvalidJson { .. })
    ));
    // Far deeper than serde_json's own recursion limit: still our error.
    assert!(matches!(
        create_entry_request_from_json(deep(100_000).as_bytes()),
        Err(ApiError::TooDeep { .. })
    ));
    // The deepest real request (five levels) passes a limit of five.
    let five = JsonLimits {
        max_depth: 5,
        ..JsonLimits::default()
    };
    assert!(from_json::<CreateEntryRequest>(CAMEL.as_bytes(), five).is_ok());
    let four = JsonLimits {
        max_depth: 4,
        ..JsonLimits::default()
    };
    assert!(matches!(
        from_json::<CreateEntryRequest>(CAMEL.as_bytes(), four),
        Err(ApiError::TooDeep { limit: 4 })
    ));
}

#[test]
fn protobuf_decoding_refuses_garbage() {
    assert!(matches!(
        create_entry_request_from_protobuf(&[0x0a, 0x05, 0x00]),
        Err(ApiError::InvalidProtobuf { .. })
    ));
    let wire =
        prost::Message::encode_to_vec(&request(&[1], &[2], &[3], PublicKeyDetails::PkixEd25519Ph));
    assert_eq!(
        create_entry_request_from_protobuf(&wire).unwrap(),
        request(&[1], &[2], &[3], PublicKeyDetails::PkixEd25519Ph)
    );
}

#[test]
fn errors_name_the_problem() {
    let err = create_entry_request_from_json(br#"{"bogus":1}"#).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("invalid JSON: unknown field `bogus`"),
        "{text}"
    );
    assert!(
        matches!(
            err,
            ApiError::InvalidJson {
                line: 1,
                column: 8,
                ..
            }
        ),
        "{err:?}"
    );
}
