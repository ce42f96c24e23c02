//! Verifier keys (c2sp.org/signed-note, "Verifier keys") and key hashes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest as _, Sha256};

use crate::{KeyName, NoteError};

/// Signature type byte of plain Ed25519 note signatures (c2sp.org/signed-note).
pub const SIG_TYPE_ED25519: u8 = 0x01;
/// Signature type byte of ECDSA note signatures "as implemented by transparency-dev/witness"
/// (signed-note). Its vkeys carry the DER SPKI and imply SHA-256.
pub const SIG_TYPE_ECDSA: u8 = 0x02;
/// Signature type byte of timestamped Ed25519 cosignatures (c2sp.org/tlog-cosignature).
pub const SIG_TYPE_COSIGNATURE_V1: u8 = 0x04;
/// Signature type byte of timestamped ML-DSA-44 (sub)tree cosignatures
/// (c2sp.org/tlog-cosignature), the signature tlog-checkpoint recommends for logs.
pub const SIG_TYPE_MLDSA44_COSIGNATURE: u8 = 0x06;

/// SHA-256(name || 0x0A || sig_type || public_key): the signed-note recommended key hash.
///
/// Its first 4 bytes are the key ID; for a Rekor v2 Ed25519 log all 32 bytes are the log ID.
#[must_use]
pub fn key_hash(name: &KeyName, sig_type: u8, public_key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(name.as_str().as_bytes());
    h.update([b'\n', sig_type]);
    h.update(public_key);
    h.finalize().into()
}

/// The first four bytes of a 32-byte hash.
#[must_use]
pub fn key_id_of(hash: &[u8; 32]) -> [u8; 4] {
    let [a, b, c, d, ..] = *hash;
    [a, b, c, d]
}

/// A parsed `name+hex8+base64(type || key)` string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Vkey {
    pub(crate) name: KeyName,
    pub(crate) key_id: [u8; 4],
    pub(crate) sig_type: u8,
    pub(crate) key: Vec<u8>,
}

impl Vkey {
    /// Splits and decodes a vkey. The key ID is not checked here (it depends on the type).
    pub(crate) fn parse(vkey: &str) -> Result<Self, NoteError> {
        let (name, rest) = vkey.split_once('+').ok_or(NoteError::MalformedVkey)?;
        let (hex, b64) = rest.split_once('+').ok_or(NoteError::MalformedVkey)?;
        let name = KeyName::new(name)?;
        let key_id = parse_hex8(hex)?;
        let raw = STANDARD.decode(b64).map_err(|_| NoteError::VkeyBase64)?;
        let (&sig_type, key) = raw.split_first().ok_or(NoteError::VkeyBase64)?;
        if key.is_empty() {
            return Err(NoteError::InvalidPublicKey);
        }
        Ok(Self {
            name,
            key_id,
            sig_type,
            key: key.to_vec(),
        })
    }

    /// Fails unless the stated key ID equals `computed`.
    pub(crate) fn expect_key_id(&self, computed: [u8; 4]) -> Result<(), NoteError> {
        if self.key_id == computed {
            Ok(())
        } else {
            Err(NoteError::VkeyKeyIdMismatch {
                stated: self.key_id,
                computed,
            })
        }
    }
}

/// Encodes `name+hex8(key_id)+base64(sig_type || key)`.
pub(crate) fn format_vkey(name: &KeyName, key_id: [u8; 4], sig_type: u8, key: &[u8]) -> String {
    let mut raw = Vec::with_capacity(1 + key.len());
    raw.push(sig_type);
    raw.extend_from_slice(key);
    let mut out = String::new();
    out.push_str(name.as_str());
    out.push('+');
    for b in key_id {
        out.push(hex_digit(b >> 4));
        out.push(hex_digit(b & 0x0f));
    }
    out.push('+');
    out.push_str(&STANDARD.encode(raw));
    out
}

fn hex_digit(n: u8) -> char {
    char::from_digit(u32::from(n), 16).unwrap_or('0')
}

/// Parses exactly 8 hex digits (either case, as Go's `strconv.ParseUint` does).
fn parse_hex8(s: &str) -> Result<[u8; 4], NoteError> {
    if s.len() != 8 {
        return Err(NoteError::VkeyKeyIdHex);
    }
    let n = u32::from_str_radix(s, 16).map_err(|_| NoteError::VkeyKeyIdHex)?;
    if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NoteError::VkeyKeyIdHex);
    }
    Ok(n.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_rules() {
        assert_eq!(parse_hex8("530d903a"), Ok([0x53, 0x0d, 0x90, 0x3a]));
        assert_eq!(parse_hex8("530D903A"), Ok([0x53, 0x0d, 0x90, 0x3a]));
        assert_eq!(parse_hex8("530d903"), Err(NoteError::VkeyKeyIdHex));
        assert_eq!(parse_hex8("+30d903a"), Err(NoteError::VkeyKeyIdHex));
        assert_eq!(parse_hex8("530d903g"), Err(NoteError::VkeyKeyIdHex));
    }

    #[test]
    fn vkey_shape_errors() {
        assert_eq!(Vkey::parse("name"), Err(NoteError::MalformedVkey));
        assert_eq!(Vkey::parse("name+530d903a"), Err(NoteError::MalformedVkey));
        assert_eq!(
            Vkey::parse("name+530d903a+not base64"),
            Err(NoteError::VkeyBase64)
        );
        assert_eq!(Vkey::parse("name+530d903a+"), Err(NoteError::VkeyBase64));
        assert_eq!(
            Vkey::parse("na me+530d903a+AQ=="),
            Err(NoteError::KeyNameInvalidChar { ch: ' ' })
        );
    }
}
