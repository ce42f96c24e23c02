//! The JSON answer of `CreateEntry` over HTTP: a `TransparencyLogEntry`, encoded once here, next
//! to the decoder in `json.rs`, for the server to send and for tests to compare against.

use crate::rekor::v1::TransparencyLogEntry;

/// Encodes a `TransparencyLogEntry` as rekor-tiles does (protojson with `EmitUnpopulated`): zero
/// values are written, not omitted, because clients such as sigstore-python require `logIndex`,
/// `inclusionProof.logIndex` and `inclusionProof.hashes` even for entry 0 of a new log; an unset
/// message is `null`. 64-bit integers are decimal strings and bytes standard base64, as protojson
/// has them.
///
/// Written directly rather than through the generic protojson encoder and a `serde_json::Value`
/// to add the zero fields: that round trip was about a tenth of the server's CPU per write.
pub fn transparency_log_entry_to_json(entry: &TransparencyLogEntry) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = Vec::with_capacity(
        2 * entry.canonicalized_body.len()
            + entry.inclusion_proof.as_ref().map_or(0, |p| {
                48 * p.hashes.len() + 2 * p.checkpoint.as_ref().map_or(0, |c| c.envelope.len())
            })
            + 256,
    );
    // Writes into a Vec cannot fail.
    let _ = write!(out, r#"{{"logIndex":"{}","logId":"#, entry.log_index);
    message(&mut out, entry.log_id.as_ref(), |out, id| {
        out.extend_from_slice(br#""keyId":"#);
        base64_string(out, &id.key_id);
    });
    out.extend_from_slice(br#","kindVersion":"#);
    message(&mut out, entry.kind_version.as_ref(), |out, kind| {
        out.extend_from_slice(br#""kind":"#);
        json_string(out, &kind.kind);
        out.extend_from_slice(br#","version":"#);
        json_string(out, &kind.version);
    });
    let _ = write!(
        out,
        r#","integratedTime":"{}","inclusionPromise":"#,
        entry.integrated_time
    );
    message(
        &mut out,
        entry.inclusion_promise.as_ref(),
        |out, promise| {
            out.extend_from_slice(br#""signedEntryTimestamp":"#);
            base64_string(out, &promise.signed_entry_timestamp);
        },
    );
    out.extend_from_slice(br#","inclusionProof":"#);
    message(&mut out, entry.inclusion_proof.as_ref(), |out, proof| {
        let _ = write!(out, r#""logIndex":"{}","rootHash":"#, proof.log_index);
        base64_string(out, &proof.root_hash);
        let _ = write!(out, r#","treeSize":"{}","hashes":["#, proof.tree_size);
        for (i, hash) in proof.hashes.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            base64_string(out, hash);
        }
        out.extend_from_slice(br#"],"checkpoint":"#);
        message(out, proof.checkpoint.as_ref(), |out, checkpoint| {
            out.extend_from_slice(br#""envelope":"#);
            json_string(out, &checkpoint.envelope);
        });
    });
    out.extend_from_slice(br#","canonicalizedBody":"#);
    base64_string(&mut out, &entry.canonicalized_body);
    out.push(b'}');
    out
}

/// Appends a message as `{<fields>}`, or `null` when it is unset (protojson's
/// `EmitUnpopulated`).
fn message<T>(out: &mut Vec<u8>, value: Option<&T>, fields: impl FnOnce(&mut Vec<u8>, &T)) {
    match value {
        Some(value) => {
            out.push(b'{');
            fields(out, value);
            out.push(b'}');
        }
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends `bytes` as a quoted standard-base64 JSON string (no escaping needed).
fn base64_string(out: &mut Vec<u8>, bytes: &[u8]) {
    use base64::Engine as _;
    out.push(b'"');
    let start = out.len();
    out.resize(start + bytes.len().div_ceil(3) * 4, 0);
    let written = out.get_mut(start..).map_or(0, |room| {
        base64::engine::general_purpose::STANDARD
            .encode_slice(bytes, room)
            .unwrap_or(0)
    });
    out.truncate(start + written);
    out.push(b'"');
}

/// Appends `text` as a quoted, escaped JSON string.
fn json_string(out: &mut Vec<u8>, text: &str) {
    // Serializing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::v1::LogId;
    use crate::rekor::v1::{Checkpoint, InclusionPromise, InclusionProof, KindVersion};

    fn parse(json: &[u8]) -> serde_json::Value {
        serde_json::from_slice(json).unwrap()
    }

    /// The generic protojson encoding, with every unpopulated field added as `EmitUnpopulated`
    /// writes it: what `transparency_log_entry_to_json` must equal.
    fn reference(entry: &TransparencyLogEntry) -> serde_json::Value {
        let mut value: serde_json::Value =
            serde_json::from_str(&crate::to_json(entry).unwrap()).unwrap();
        let object = value.as_object_mut().unwrap();
        for (key, default) in [
            ("logIndex", serde_json::json!("0")),
            ("logId", serde_json::Value::Null),
            ("kindVersion", serde_json::Value::Null),
            ("integratedTime", serde_json::json!("0")),
            ("inclusionPromise", serde_json::Value::Null),
            ("inclusionProof", serde_json::Value::Null),
            ("canonicalizedBody", serde_json::json!("")),
        ] {
            object.entry(key).or_insert(default);
        }
        if let Some(proof) = object
            .get_mut("inclusionProof")
            .and_then(serde_json::Value::as_object_mut)
        {
            for (key, default) in [
                ("logIndex", serde_json::json!("0")),
                ("rootHash", serde_json::json!("")),
                ("treeSize", serde_json::json!("0")),
                ("hashes", serde_json::json!([])),
                ("checkpoint", serde_json::Value::Null),
            ] {
                proof.entry(key).or_insert(default);
            }
        }
        value
    }

    fn full_entry() -> TransparencyLogEntry {
        TransparencyLogEntry {
            log_index: 1_234_567_890_123,
            log_id: Some(LogId {
                key_id: (0..32).collect(),
            }),
            kind_version: Some(KindVersion {
                kind: "hashedrekord".into(),
                version: "0.0.2".into(),
            }),
            integrated_time: 17,
            inclusion_promise: Some(InclusionPromise {
                signed_entry_timestamp: vec![0xff, 0xfe, 0x00, 0x01],
            }),
            inclusion_proof: Some(InclusionProof {
                log_index: 1_234_567_890_123,
                root_hash: vec![7; 32],
                tree_size: 9_000_000_000_000,
                hashes: vec![vec![1; 32], vec![2; 32], vec![0xfb; 32]],
                checkpoint: Some(Checkpoint {
                    envelope: "log.example \"quoted\"\n42\nroot=\n\n\u{2014} log.example sig\n"
                        .into(),
                }),
            }),
            canonicalized_body: br#"{"apiVersion":"0.0.2","kind":"hashedrekord"}"#.to_vec(),
        }
    }

    #[test]
    fn entries_are_written_as_the_protojson_encoder_writes_them() {
        let zero = TransparencyLogEntry {
            inclusion_proof: Some(InclusionProof {
                tree_size: 1,
                root_hash: vec![1; 32],
                ..InclusionProof::default()
            }),
            canonicalized_body: b"{}".to_vec(),
            ..TransparencyLogEntry::default()
        };
        // Body lengths 1, 2 and 3 modulo 3 exercise every base64 padding.
        let mut entries = vec![full_entry(), zero, TransparencyLogEntry::default()];
        for extra in 1..=3 {
            let mut entry = full_entry();
            entry
                .canonicalized_body
                .extend(std::iter::repeat_n(b'x', extra));
            entry.inclusion_proof = None;
            entries.push(entry);
        }
        for entry in &entries {
            let json = transparency_log_entry_to_json(entry);
            assert_eq!(
                parse(&json),
                reference(entry),
                "{}",
                String::from_utf8_lossy(&json)
            );
            // And a strict protojson reader gets the same message back.
            let parsed: TransparencyLogEntry =
                crate::from_json(&json, crate::JsonLimits::default()).unwrap();
            assert_eq!(&parsed, entry);
        }
    }

    #[test]
    fn entry_zero_keeps_its_zero_fields() {
        let entry = TransparencyLogEntry {
            inclusion_proof: Some(InclusionProof {
                tree_size: 1,
                root_hash: vec![1; 32],
                ..InclusionProof::default()
            }),
            canonicalized_body: b"{}".to_vec(),
            ..TransparencyLogEntry::default()
        };
        let json = parse(&transparency_log_entry_to_json(&entry));
        assert_eq!(json["logIndex"], "0");
        assert_eq!(json["integratedTime"], "0");
        assert!(json["inclusionPromise"].is_null());
        assert_eq!(json["inclusionProof"]["logIndex"], "0");
        assert_eq!(json["inclusionProof"]["treeSize"], "1");
        assert_eq!(json["inclusionProof"]["hashes"], serde_json::json!([]));
    }
}
