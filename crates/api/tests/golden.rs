//! Golden vectors from independent producers: a real Rekor v2 response and
//! the request that produced it (see `tests/testdata/README.md`).

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    reason = "test helpers outside #[test] fns fail the test by panicking"
)]

use prost::Message as _;
use rekor_api::bundle::v1::{Bundle, bundle, verification_material};
use rekor_api::common::v1::{HashAlgorithm, PublicKeyDetails};
use rekor_api::rekor::v1::TransparencyLogEntry;
use rekor_api::rekor::v2::{CreateEntryRequest, Entry, create_entry_request, spec, verifier};
use rekor_api::{JsonLimits, create_entry_request_from_json, from_json, to_json};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

fn testdata(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn bundle_json() -> Value {
    serde_json::from_slice(&testdata("staging-bundle.json")).unwrap()
}

fn tlog_entry_json() -> Value {
    bundle_json()["verificationMaterial"]["tlogEntries"][0].clone()
}

fn parse_tlog_entry() -> TransparencyLogEntry {
    let bytes = serde_json::to_vec(&tlog_entry_json()).unwrap();
    from_json(&bytes, JsonLimits::default()).unwrap()
}

fn b64(s: &str) -> Vec<u8> {
    // Decode through the generated code of a bytes field, so the test needs no
    // base64 crate: LogId { key_id: bytes }.
    let json = serde_json::json!({ "keyId": s }).to_string();
    let id: rekor_api::common::v1::LogId =
        from_json(json.as_bytes(), JsonLimits::default()).unwrap();
    id.key_id
}

/// RFC 6962 §2.1.1 inclusion proof check, written out here so that the
/// vector's leaf, hashes and root are checked against each other.
fn rfc6962_root(leaf: &[u8], index: u64, size: u64, proof: &[Vec<u8>]) -> Vec<u8> {
    let mut hash = Sha256::new()
        .chain_update([0u8])
        .chain_update(leaf)
        .finalize()
        .to_vec();
    let (mut fn_, mut sn) = (index, size - 1);
    for p in proof {
        assert!(sn > 0, "proof too long");
        if fn_ & 1 == 1 || fn_ == sn {
            hash = Sha256::new()
                .chain_update([1u8])
                .chain_update(p)
                .chain_update(&hash)
                .finalize()
                .to_vec();
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            hash = Sha256::new()
                .chain_update([1u8])
                .chain_update(&hash)
                .chain_update(p)
                .finalize()
                .to_vec();
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    assert_eq!(sn, 0, "proof too short");
    hash
}

#[test]
fn rekor_v2_response_parses_to_the_expected_fields() {
    let tle = parse_tlog_entry();
    assert_eq!(tle.log_index, 645);
    let log_id = tle.log_id.as_ref().unwrap();
    assert_eq!(
        log_id.key_id.len(),
        32,
        "Rekor v2 log IDs are full 32-byte key IDs"
    );
    assert_eq!(&log_id.key_id[..4], [0xf3, 0x0d, 0x5a, 0x99]);
    let kv = tle.kind_version.as_ref().unwrap();
    assert_eq!(
        (kv.kind.as_str(), kv.version.as_str()),
        ("hashedrekord", "0.0.2")
    );
    assert_eq!(tle.integrated_time, 0);
    assert!(tle.inclusion_promise.is_none());

    let proof = tle.inclusion_proof.as_ref().unwrap();
    assert_eq!(proof.log_index, 645);
    assert_eq!(proof.tree_size, 646);
    assert_eq!(proof.root_hash.len(), 32);
    assert_eq!(proof.hashes.len(), 4);
    assert!(proof.hashes.iter().all(|h| h.len() == 32));
    let envelope = &proof.checkpoint.as_ref().unwrap().envelope;
    assert!(envelope.starts_with("log2025-alpha1.rekor.example\n646\nkNum4JmdViJPfZLMRB3xPi6flATj2JzJSiF+1pQDzNQ=\n\n\u{2014} "));

    // The decoded leaf, hashes and root agree with each other.
    let index = u64::try_from(proof.log_index).unwrap();
    let size = u64::try_from(proof.tree_size).unwrap();
    assert_eq!(
        rfc6962_root(&tle.canonicalized_body, index, size, &proof.hashes),
        proof.root_hash
    );
}

#[test]
fn rekor_v2_response_serialises_back_to_the_same_json() {
    let ours: Value = serde_json::from_str(&to_json(&parse_tlog_entry()).unwrap()).unwrap();
    assert_eq!(ours, tlog_entry_json());

    let text = to_json(&parse_tlog_entry()).unwrap();
    for key in [
        r#""logIndex":"645""#,
        r#""logId":{"keyId":"8w1amZ2S5mJIQkQmPxdMuOrL/oJkvFg9MnQXmeOCXck="}"#,
        r#""kindVersion":{"kind":"hashedrekord","version":"0.0.2"}"#,
        r#""treeSize":"646""#,
        r#""rootHash":"kNum4JmdViJPfZLMRB3xPi6flATj2JzJSiF+1pQDzNQ=""#,
        r#""checkpoint":{"envelope":"log2025-alpha1.rekor.example\n646\n"#,
        r#""canonicalizedBody":"eyJhcGlWZXJzaW9uIjoiMC4wLjIi"#,
    ] {
        assert!(text.contains(key), "{key} missing from {text}");
    }
    assert!(
        !text.contains("integratedTime"),
        "zero integratedTime must be omitted"
    );
    assert!(!text.contains("inclusionPromise"));
}

#[test]
fn whole_bundle_round_trips_through_json_and_protobuf() {
    let bytes = testdata("staging-bundle.json");
    let parsed: Bundle = from_json(&bytes, JsonLimits::default()).unwrap();
    assert_eq!(
        parsed.media_type,
        "application/vnd.dev.sigstore.bundle.v0.3+json"
    );
    let material = parsed.verification_material.as_ref().unwrap();
    assert!(matches!(
        material.content,
        Some(verification_material::Content::Certificate(_))
    ));
    assert_eq!(
        material
            .timestamp_verification_data
            .as_ref()
            .unwrap()
            .rfc3161_timestamps
            .len(),
        1
    );
    assert!(matches!(
        parsed.content,
        Some(bundle::Content::MessageSignature(_))
    ));

    let again: Value = serde_json::from_str(&to_json(&parsed).unwrap()).unwrap();
    assert_eq!(again, bundle_json());

    let wire = parsed.encode_to_vec();
    assert_eq!(Bundle::decode(wire.as_slice()).unwrap(), parsed);
}

#[test]
fn canonicalized_body_is_the_entry_for_the_request() {
    let tle = parse_tlog_entry();
    let entry: Entry = from_json(&tle.canonicalized_body, JsonLimits::default()).unwrap();
    assert_eq!(entry.kind, "hashedrekord");
    assert_eq!(entry.api_version, "0.0.2");
    let Some(spec::Spec::HashedRekordV002(logged)) = entry.spec.and_then(|s| s.spec) else {
        panic!("expected a hashedrekord v0.0.2 spec");
    };

    let request =
        create_entry_request_from_json(&testdata("staging-create-entry-request.json")).unwrap();
    let Some(create_entry_request::Spec::HashedRekordRequestV002(sent)) = request.spec else {
        panic!("expected a hashedrekord request");
    };

    let data = logged.data.as_ref().unwrap();
    assert_eq!(data.algorithm(), HashAlgorithm::Sha2256);
    assert_eq!(data.digest, sent.digest);
    assert_eq!(logged.signature, sent.signature);

    let verifier = sent.signature.as_ref().unwrap().verifier.as_ref().unwrap();
    assert_eq!(
        verifier.key_details(),
        PublicKeyDetails::PkixEcdsaP256Sha256
    );
    let Some(verifier::Verifier::X509Certificate(cert)) = &verifier.verifier else {
        panic!("expected a certificate verifier");
    };
    // The bundle's certificate, the request's and the logged entry's agree.
    let bundle = bundle_json();
    let bundle_cert = b64(bundle["verificationMaterial"]["certificate"]["rawBytes"]
        .as_str()
        .unwrap());
    assert_eq!(cert.raw_bytes, bundle_cert);
    assert_eq!(&cert.raw_bytes[..2], [0x30, 0x82], "DER SEQUENCE");
    let digest = b64(bundle["messageSignature"]["messageDigest"]["digest"]
        .as_str()
        .unwrap());
    assert_eq!(sent.digest, digest);
}

#[test]
fn public_key_request_in_the_documented_shape() {
    // The shape of the "self-managed key" example in rekor-tiles' CLIENTS.md.
    let body = br#"{
        "hashedRekordRequestV002": {
            "digest": "FfZyRhFZIbt8HeDn6eknXIAW3CVKDACYiJRLftNkSqo=",
            "signature": {
                "content": "MEUCIAZ6",
                "verifier": {
                    "publicKey": { "rawBytes": "MFkwEwYHKoZIzj0CAQ==" },
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256"
                }
            }
        }
    }"#;
    let request = create_entry_request_from_json(body).unwrap();
    let Some(create_entry_request::Spec::HashedRekordRequestV002(hashed)) = &request.spec else {
        panic!("expected a hashedrekord request");
    };
    assert_eq!(hashed.digest.len(), 32);
    assert_eq!(hashed.digest[..4], [0x15, 0xf6, 0x72, 0x46]);
    let signature = hashed.signature.as_ref().unwrap();
    assert_eq!(signature.content, [0x30, 0x45, 0x02, 0x20, 0x06, 0x7a]);
    let verifier = signature.verifier.as_ref().unwrap();
    assert_eq!(verifier.key_details, 5);
    let Some(verifier::Verifier::PublicKey(key)) = &verifier.verifier else {
        panic!("expected a public key verifier");
    };
    assert_eq!(
        key.raw_bytes,
        [
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01
        ]
    );
}

#[test]
fn create_entry_request_protobuf_bytes_match_hand_encoding() {
    let request: CreateEntryRequest = create_entry_request_from_json(
        br#"{"hashedRekordRequestV002":{"digest":"AQI=","signature":{"content":"AwQ=",
            "verifier":{"publicKey":{"rawBytes":"BQY="},"keyDetails":"PKIX_ED25519_PH"}}}}"#,
    )
    .unwrap();
    // Written by hand from the .proto field numbers: each field starts with
    // the key (number << 3 | wire type), LEN fields then give their length.
    // prost writes fields in field-number order, as the spec recommends.
    let expected: &[u8] = &[
        0x0a, 0x14, // CreateEntryRequest.hashed_rekord_request_v002 = 1, 20 bytes
        0x0a, 0x02, 0x01, 0x02, //   HashedRekordRequestV002.digest = 1
        0x12, 0x0e, //   HashedRekordRequestV002.signature = 2, 14 bytes
        0x0a, 0x02, 0x03, 0x04, //     Signature.content = 1
        0x12, 0x08, //     Signature.verifier = 2, 8 bytes
        0x0a, 0x04, //       Verifier.public_key = 1, 4 bytes
        0x0a, 0x02, 0x05, 0x06, //         PublicKey.raw_bytes = 1
        0x18, 0x08, //       Verifier.key_details = 3, varint PKIX_ED25519_PH (8)
    ];
    assert_eq!(request.encode_to_vec(), expected);
    assert_eq!(CreateEntryRequest::decode(expected).unwrap(), request);
}
