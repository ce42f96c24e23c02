//! SHA-256 Merkle tree hashing (RFC 6962 §2.1, RFC 9162 §2.1.1).

use std::fmt;

use sha2::{Digest, Sha256};

/// Size in bytes of every hash in the tree (SHA-256).
pub const HASH_SIZE: usize = 32;

/// A SHA-256 Merkle tree hash: a leaf hash, an interior node hash or a root.
///
/// `Display` and `Debug` print lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; HASH_SIZE]);

impl Hash {
    /// The all-zero hash. It is not the hash of anything; used as a placeholder.
    pub const ZERO: Hash = Hash([0; HASH_SIZE]);

    /// Copies a hash out of a slice, or returns `None` if the slice is not exactly 32 bytes.
    #[must_use]
    pub fn from_slice(bytes: &[u8]) -> Option<Hash> {
        <[u8; HASH_SIZE]>::try_from(bytes).ok().map(Hash)
    }

    /// Parses 64 hex digits (either case), or returns `None`.
    #[must_use]
    pub fn from_hex(text: &str) -> Option<Hash> {
        let digits = text.as_bytes();
        if digits.len() != 2 * HASH_SIZE {
            return None;
        }
        let mut out = [0u8; HASH_SIZE];
        for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            let (hi, lo) = match pair {
                [hi, lo] => (hex_value(*hi)?, hex_value(*lo)?),
                _ => return None,
            };
            *byte = (hi << 4) | lo;
        }
        Some(Hash(out))
    }

    /// The 32 bytes of the hash.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; HASH_SIZE] {
        &self.0
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

impl From<[u8; HASH_SIZE]> for Hash {
    fn from(bytes: [u8; HASH_SIZE]) -> Self {
        Hash(bytes)
    }
}

impl From<Hash> for [u8; HASH_SIZE] {
    fn from(hash: Hash) -> Self {
        hash.0
    }
}

impl AsRef<[u8]> for Hash {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The hash of a log entry: SHA-256(0x00 ‖ entry) (RFC 6962 §2.1).
#[must_use]
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(entry);
    Hash(hasher.finalize().into())
}

/// The hash of an interior node: SHA-256(0x01 ‖ left ‖ right) (RFC 6962 §2.1).
///
/// The 65-byte input always pads to the same two blocks, so they are laid out directly and fed
/// to the SHA-256 compression function, skipping the streaming hasher's buffering.
#[must_use]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut blocks = [[0u8; 64]; 2];
    let [first, second] = &mut blocks;
    // Block 1: the prefix byte, the left hash and all but the last byte of the right hash.
    let (prefix, rest) = first.split_at_mut(1);
    let (left_part, right_part) = rest.split_at_mut(HASH_SIZE);
    prefix.copy_from_slice(&[0x01]);
    left_part.copy_from_slice(&left.0);
    let (right_head, right_tail) = right.0.split_at(HASH_SIZE - 1);
    right_part.copy_from_slice(right_head);
    // Block 2: the last byte, the 0x80 terminator, zeros, and the bit length 520 (big-endian).
    let (message_end, length) = second.split_at_mut(56);
    if let [last, terminator, ..] = message_end {
        *last = right_tail.first().copied().unwrap_or_default();
        *terminator = 0x80;
    }
    length.copy_from_slice(&NODE_INPUT_BITS.to_be_bytes());

    let mut state = SHA256_INITIAL_STATE;
    sha2::block_api::compress256(&mut state, &blocks);
    let mut out = [0u8; HASH_SIZE];
    for (bytes, word) in out.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    Hash(out)
}

/// Length in bits of a node hash input: 1 + 32 + 32 bytes.
const NODE_INPUT_BITS: u64 = 520;

/// The SHA-256 initial hash value (FIPS 180-4 §5.3.3).
const SHA256_INITIAL_STATE: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// The root of the empty tree: SHA-256 of the empty string (RFC 6962 §2.1).
#[must_use]
pub fn empty_root() -> Hash {
    Hash(Sha256::digest([]).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Digests of well-known inputs, as published with RFC 6962 test suites
    // (certificate-transparency and transparency-dev/merkle `rfc6962_test.go`).
    #[test]
    fn known_digests() {
        assert_eq!(
            empty_root().to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            leaf_hash(b"").to_string(),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert_eq!(
            leaf_hash(b"L123456").to_string(),
            "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
        );
    }

    #[test]
    fn node_hash_matches_streaming_sha256() {
        let mut left = Hash([0; 32]);
        for i in 0..200u8 {
            let right = leaf_hash(&[i]);
            let mut hasher = Sha256::new();
            hasher.update([0x01]);
            hasher.update(left.0);
            hasher.update(right.0);
            let want = Hash(hasher.finalize().into());
            assert_eq!(node_hash(&left, &right), want);
            left = want;
        }
        // Reference node from the RFC 6962 test tree: MTH of the first two reference entries.
        assert_eq!(
            node_hash(&leaf_hash(b""), &leaf_hash(&[0])).to_string(),
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"
        );
    }

    #[test]
    fn hex_round_trip_and_rejections() {
        let h = leaf_hash(b"x");
        assert_eq!(Hash::from_hex(&h.to_string()), Some(h));
        assert_eq!(Hash::from_hex(&h.to_string().to_uppercase()), Some(h));
        assert_eq!(format!("{h:?}"), h.to_string());
        assert_eq!(Hash::from_hex(""), None);
        assert_eq!(Hash::from_hex(&"0".repeat(63)), None);
        assert_eq!(Hash::from_hex(&"0".repeat(65)), None);
        assert_eq!(Hash::from_hex(&format!("g{}", "0".repeat(63))), None);
        assert_eq!(Hash::from_slice(&[1; 31]), None);
        assert_eq!(Hash::from_slice(&[1; 32]), Some(Hash([1; 32])));
    }
}
