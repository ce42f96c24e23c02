//! Shared helpers for the fuzz targets: validation through the same request → entries mapping
//! as the server (`rekor_api::entries_input`), and the invariants every validated entry must hold.

use rekor_api::rekor::v2::create_entry_request::Spec;
use rekor_api::entries_input::{dsse, hashed_rekord};
use rekor_api::rekor::v2::CreateEntryRequest;
use rekor_entries::{AlgorithmRegistry, EntryKind, MAX_ENTRY_LEN, ValidatedEntry};

/// Validates a decoded request as the server's `create_entry` does, with the default algorithm
/// registry, and checks the invariants of an accepted entry. `None` when the request is refused.
///
/// # Panics
///
/// When an accepted entry breaks an invariant: its kind differs from the request's, its leaf is
/// over [`MAX_ENTRY_LEN`] bytes, is not JSON, or is not in canonical (sorted, compact) form.
pub fn validate(request: &CreateEntryRequest) -> Option<ValidatedEntry> {
    let registry = AlgorithmRegistry::default();
    let (expected_kind, result) = match request.spec.as_ref()? {
        Spec::HashedRekordRequestV002(hashed) => (
            EntryKind::HashedRekord,
            rekor_entries::validate_hashed_rekord(&hashed_rekord(hashed), &registry),
        ),
        Spec::DsseRequestV002(request) => (
            EntryKind::Dsse,
            rekor_entries::validate_dsse(&dsse(request), &registry),
        ),
    };
    // Error messages are what clients see: building them must not panic either.
    let entry = match result {
        Ok(entry) => entry,
        Err(error) => {
            let _ = error.to_string();
            return None;
        }
    };
    assert_eq!(entry.kind, expected_kind);
    assert!(
        entry.canonical.len() <= MAX_ENTRY_LEN,
        "leaf over the bundle limit"
    );
    let value: serde_json::Value = serde_json::from_slice(&entry.canonical)
        .unwrap_or_else(|e| panic!("leaf is not JSON: {e}"));
    // The leaf holds only objects and strings, for which RFC 8785 is sorted keys, no whitespace.
    let reencoded = serde_json::to_vec(&value).unwrap_or_else(|e| panic!("re-encoding: {e}"));
    assert_eq!(reencoded, entry.canonical, "leaf is not canonical JSON");
    assert_eq!(
        value.get("kind").and_then(serde_json::Value::as_str),
        Some(expected_kind.kind())
    );
    Some(entry)
}
