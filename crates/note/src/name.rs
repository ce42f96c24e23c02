//! Validated strings: signed-note key names and checkpoint origins.

use core::fmt;
use core::str::FromStr;

use crate::NoteError;

/// Longest accepted key name, in bytes.
///
/// The signed-note spec sets no limit; 255 matches the `opaque name<1..2^8-1>` field of the
/// ML-DSA cosignature format in tlog-cosignature and covers every DNS host name.
pub const MAX_KEY_NAME_LEN: usize = 255;

/// A signed-note key name (c2sp.org/signed-note, "Format").
///
/// Non-empty, at most [`MAX_KEY_NAME_LEN`] bytes, with no Unicode white space (the same set as
/// Go's `unicode.IsSpace`), no `+` and no control characters.
/// For a log, the key name is its checkpoint origin (rekor-tiles uses the `--hostname` value).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyName(String);

impl KeyName {
    /// Validates `name`.
    ///
    /// # Errors
    /// [`NoteError::EmptyKeyName`], [`NoteError::KeyNameTooLong`] or
    /// [`NoteError::KeyNameInvalidChar`].
    pub fn new(name: &str) -> Result<Self, NoteError> {
        if name.is_empty() {
            return Err(NoteError::EmptyKeyName);
        }
        if name.len() > MAX_KEY_NAME_LEN {
            return Err(NoteError::KeyNameTooLong {
                len: name.len(),
                max: MAX_KEY_NAME_LEN,
            });
        }
        if let Some(ch) = name
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || *c == '+')
        {
            return Err(NoteError::KeyNameInvalidChar { ch });
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for KeyName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for KeyName {
    type Err = NoteError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// The origin line of a checkpoint (c2sp.org/tlog-checkpoint, "Note text", line 1).
///
/// Non-empty, with no newline and no other control character (a signed note may not contain
/// them). The spec only recommends, and does not require, the key-name rules, so spaces and `+`
/// are accepted here; a log that signs its own checkpoints needs an origin that is also a valid
/// [`KeyName`], which [`crate::LogSigner::sign_checkpoint`] enforces.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin(String);

impl Origin {
    /// Validates `origin`.
    ///
    /// # Errors
    /// [`NoteError::EmptyOrigin`] or [`NoteError::OriginInvalidChar`].
    pub fn new(origin: &str) -> Result<Self, NoteError> {
        if origin.is_empty() {
            return Err(NoteError::EmptyOrigin);
        }
        if let Some(ch) = origin.chars().find(|c| c.is_control()) {
            return Err(NoteError::OriginInvalidChar { ch });
        }
        Ok(Self(origin.to_owned()))
    }

    /// The origin as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<KeyName> for Origin {
    /// Every key name is a valid origin.
    fn from(name: KeyName) -> Self {
        Self(name.0)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Origin {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for Origin {
    type Err = NoteError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_name_accepts_hostnames_and_ports() {
        for ok in [
            "log2025-1.rekor.sigstore.dev",
            "127.0.0.1:3000",
            "example.com/foo",
            "é",
        ] {
            assert_eq!(KeyName::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn key_name_rejects_spaces_plus_controls() {
        assert_eq!(KeyName::new(""), Err(NoteError::EmptyKeyName));
        for (bad, ch) in [
            ("a b", ' '),
            ("a+b", '+'),
            ("a\tb", '\t'),
            ("a\nb", '\n'),
            ("a\u{a0}b", '\u{a0}'),
            ("a\u{2003}b", '\u{2003}'),
            ("a\u{3000}b", '\u{3000}'),
            ("a\u{2028}b", '\u{2028}'),
            ("a\u{85}b", '\u{85}'),
            ("a\u{7f}b", '\u{7f}'),
        ] {
            assert_eq!(
                KeyName::new(bad),
                Err(NoteError::KeyNameInvalidChar { ch }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn key_name_length_cap() {
        let max = "a".repeat(MAX_KEY_NAME_LEN);
        assert!(KeyName::new(&max).is_ok());
        let over = "a".repeat(MAX_KEY_NAME_LEN + 1);
        assert_eq!(
            KeyName::new(&over),
            Err(NoteError::KeyNameTooLong {
                len: MAX_KEY_NAME_LEN + 1,
                max: MAX_KEY_NAME_LEN
            })
        );
    }

    #[test]
    fn origin_rules() {
        assert_eq!(Origin::new(""), Err(NoteError::EmptyOrigin));
        assert_eq!(
            Origin::new("a\nb"),
            Err(NoteError::OriginInvalidChar { ch: '\n' })
        );
        assert_eq!(
            Origin::new("a\rb"),
            Err(NoteError::OriginInvalidChar { ch: '\r' })
        );
        // Rekor v1 style origins contain spaces; the checkpoint spec allows them.
        assert!(Origin::new("rekor.sigstore.dev - 1193050959916656506").is_ok());
    }
}
