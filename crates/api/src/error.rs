//! The error type of this crate.

/// Why a Rekor API message could not be decoded or encoded.
///
/// Decoding errors are the client's fault (a server answers 400 /
/// `InvalidArgument`); [`ApiError::Serialize`] is an internal error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The input is larger than the allowed size.
    #[error("message is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        /// Size of the input in bytes.
        size: usize,
        /// The limit that was exceeded.
        limit: usize,
    },

    /// The JSON nests objects and arrays deeper than allowed.
    #[error("JSON nesting is deeper than the limit of {limit} levels")]
    TooDeep {
        /// The nesting limit that was exceeded.
        limit: usize,
    },

    /// The input is not valid protojson for the expected message: bad syntax,
    /// an unknown or repeated field, a wrong value type, bad base64, an
    /// unknown enum name, two members of one oneof, or data after the value.
    #[error("invalid JSON: {source}")]
    InvalidJson {
        /// 1-based line of the error, 0 if unknown.
        line: usize,
        /// 1-based column of the error, 0 if unknown.
        column: usize,
        /// The parser's description of the problem.
        #[source]
        source: serde_json::Error,
    },

    /// The input is not a valid protobuf encoding of the expected message.
    #[error("invalid protobuf: {source}")]
    InvalidProtobuf {
        /// The decoder's description of the problem.
        #[source]
        source: prost::DecodeError,
    },

    /// A message could not be written as JSON.
    #[error("cannot encode message as JSON: {source}")]
    Serialize {
        /// The serialiser's error.
        #[source]
        source: serde_json::Error,
    },
}
