//! Strict decoding and encoding of API messages.
//!
//! The `serde` impls come from `pbjson` and follow the protobuf JSON mapping
//! (protojson): lowerCamelCase names out, lowerCamelCase or original proto
//! names in; 64-bit integers as strings out, strings or numbers in; bytes as
//! padded standard base64 out, standard or URL-safe, padded or not, in; enums
//! by name out, by name or number in; default values left out; unknown
//! fields refused. This module adds size and nesting limits in front of them.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::rekor::v2::CreateEntryRequest;

/// Default limit on an encoded message: 4 MiB, the default of rekor-tiles'
/// `--max-request-body-size`.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Default limit on JSON nesting (objects and arrays).
///
/// The deepest valid `CreateEntryRequest` nests five levels
/// (request, entry, signature, verifier, key), so 16 leaves room for
/// extensions while keeping hostile input shallow.
pub const MAX_JSON_DEPTH: usize = 16;

/// Limits applied before any JSON is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonLimits {
    /// Largest accepted input, in bytes.
    pub max_bytes: usize,
    /// Deepest accepted nesting of objects and arrays.
    pub max_depth: usize,
}

impl Default for JsonLimits {
    fn default() -> Self {
        Self {
            max_bytes: MAX_MESSAGE_BYTES,
            max_depth: MAX_JSON_DEPTH,
        }
    }
}

/// Parses the protojson body of `POST /api/v2/log/entries` with the default
/// [`JsonLimits`].
///
/// Only syntax is checked here; whether the request is a valid entry is up to
/// the entry validation layer.
///
/// # Errors
///
/// [`ApiError::TooLarge`] or [`ApiError::TooDeep`] if a limit is exceeded,
/// [`ApiError::InvalidJson`] if the input is not one protojson
/// `CreateEntryRequest` (including unknown fields and trailing data).
pub fn create_entry_request_from_json(bytes: &[u8]) -> Result<CreateEntryRequest, ApiError> {
    from_json(bytes, JsonLimits::default())
}

/// Parses the protobuf body of the gRPC `CreateEntry` call, refusing input
/// over [`MAX_MESSAGE_BYTES`].
///
/// # Errors
///
/// [`ApiError::TooLarge`] if the input is too big, [`ApiError::InvalidProtobuf`]
/// if it is not a valid encoding.
pub fn create_entry_request_from_protobuf(bytes: &[u8]) -> Result<CreateEntryRequest, ApiError> {
    from_protobuf(bytes, MAX_MESSAGE_BYTES)
}

/// Parses one protojson message strictly: the limits are checked first, then
/// the whole input must be exactly one value of type `T` (whitespace around
/// it is allowed).
///
/// # Errors
///
/// [`ApiError::TooLarge`], [`ApiError::TooDeep`] or [`ApiError::InvalidJson`].
pub fn from_json<T: DeserializeOwned>(bytes: &[u8], limits: JsonLimits) -> Result<T, ApiError> {
    check_size(bytes, limits.max_bytes)?;
    check_depth(bytes, limits.max_depth)?;
    serde_json::from_slice(bytes).map_err(|source| ApiError::InvalidJson {
        line: source.line(),
        column: source.column(),
        source,
    })
}

/// Decodes one protobuf message, refusing input over `max_bytes`.
///
/// # Errors
///
/// [`ApiError::TooLarge`] or [`ApiError::InvalidProtobuf`].
pub fn from_protobuf<T: prost::Message + Default>(
    bytes: &[u8],
    max_bytes: usize,
) -> Result<T, ApiError> {
    check_size(bytes, max_bytes)?;
    T::decode(bytes).map_err(|source| ApiError::InvalidProtobuf { source })
}

/// Writes a message as compact protojson.
///
/// # Errors
///
/// [`ApiError::Serialize`] if a field holds a value JSON cannot carry here:
/// an enum number the schema does not define, or a timestamp outside years
/// 1 to 9999. Messages built from validated input never contain either.
pub fn to_json<T: Serialize>(msg: &T) -> Result<String, ApiError> {
    serde_json::to_string(msg).map_err(|source| ApiError::Serialize { source })
}

fn check_size(bytes: &[u8], limit: usize) -> Result<(), ApiError> {
    if bytes.len() > limit {
        return Err(ApiError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    Ok(())
}

/// Refuses input whose objects and arrays nest deeper than `limit`, without
/// parsing it. Brackets inside strings are skipped; anything malformed is
/// left for the parser to reject.
fn check_depth(bytes: &[u8], limit: usize) -> Result<(), ApiError> {
    let mut depth = 0_usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth = depth.saturating_add(1);
                if depth > limit {
                    return Err(ApiError::TooDeep { limit });
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_nesting_outside_strings_only() {
        assert!(check_depth(br#"[[["a"]]]"#, 3).is_ok());
        assert!(matches!(
            check_depth(br#"[[[["a"]]]]"#, 3),
            Err(ApiError::TooDeep { limit: 3 })
        ));
        // Brackets in strings, including after an escaped quote, do not count.
        assert!(check_depth(br#"{"k":"[[[[\"{{{{"}"#, 1).is_ok());
        // An escaped backslash ends the escape: the next quote closes the string.
        assert!(matches!(
            check_depth(br#"{"k":"\\",[{}]}"#, 2),
            Err(ApiError::TooDeep { limit: 2 })
        ));
        // Siblings do not add up.
        assert!(check_depth(br"[[],[],[[]]]", 3).is_ok());
    }

    #[test]
    fn size_limit_is_inclusive() {
        assert!(check_size(&[0; 10], 10).is_ok());
        assert!(matches!(
            check_size(&[0; 11], 10),
            Err(ApiError::TooLarge {
                size: 11,
                limit: 10
            })
        ));
    }
}
