//! c2sp.org/tlog-checkpoint: the note text of a transparency log tree head.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::{NoteError, Origin};

/// A checkpoint body: origin, tree size, root hash and optional extension lines.
///
/// Text form (c2sp.org/tlog-checkpoint, "Note text"):
///
/// ```text
/// <origin>\n<decimal size, no leading zeros>\n<base64 root hash>\n[<extension>\n]*
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log identity (for Rekor v2, its host name).
    pub origin: Origin,
    /// Number of leaves in the tree.
    pub size: u64,
    /// RFC 6962 Merkle tree root hash at `size`.
    pub root: [u8; 32],
    /// Extension lines, each non-empty and without newline. Not recommended by the spec.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    #[must_use]
    pub fn new(origin: Origin, size: u64, root: [u8; 32]) -> Self {
        Self {
            origin,
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// Parses a checkpoint note text (the `text()` of a note, final newline included).
    ///
    /// Stricter than Go's `transparency-dev/formats/log` in two spec-backed ways: the size must
    /// have no leading zeros, and the root hash must be exactly 32 bytes.
    ///
    /// # Errors
    /// [`NoteError::CheckpointNotNewlineTerminated`], [`NoteError::CheckpointTooFewLines`],
    /// [`NoteError::CheckpointEmptyLine`], [`NoteError::OriginInvalidChar`], the tree-size
    /// variants, [`NoteError::RootHashBase64`] or [`NoteError::RootHashLength`].
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(NoteError::CheckpointNotNewlineTerminated)?;
        let lines: Vec<&str> = body.split('\n').collect();
        if lines.len() < 3 {
            return Err(NoteError::CheckpointTooFewLines { lines: lines.len() });
        }
        if let Some(index) = lines.iter().position(|l| l.is_empty()) {
            return Err(NoteError::CheckpointEmptyLine { line: index + 1 });
        }
        let (head, extensions) = lines.split_at(3);
        let [origin, size, root] = head else {
            return Err(NoteError::CheckpointTooFewLines { lines: lines.len() });
        };
        let origin = Origin::new(origin)?;
        let size = parse_tree_size(size)?;
        let root = parse_root(root)?;
        if let Some(index) = extensions.iter().position(|l| l.bytes().any(|b| b < 0x20)) {
            return Err(NoteError::CheckpointExtensionInvalid { index });
        }
        Ok(Self {
            origin,
            size,
            root,
            extensions: extensions.iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    /// Checks the extension lines (the other fields are valid by construction).
    ///
    /// # Errors
    /// [`NoteError::CheckpointExtensionInvalid`] for an empty extension line or one containing a
    /// newline or another control character.
    pub fn validate(&self) -> Result<(), NoteError> {
        match self
            .extensions
            .iter()
            .position(|e| e.is_empty() || e.bytes().any(|b| b < 0x20))
        {
            Some(index) => Err(NoteError::CheckpointExtensionInvalid { index }),
            None => Ok(()),
        }
    }

    /// Encodes the checkpoint text. The result parses back to `self` when [`Checkpoint::validate`]
    /// passes.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(
            self.origin.as_str().len()
                + 66
                + self.extensions.iter().map(|e| e.len() + 1).sum::<usize>(),
        );
        out.push_str(self.origin.as_str());
        out.push('\n');
        out.push_str(&self.size.to_string());
        out.push('\n');
        out.push_str(&STANDARD.encode(self.root));
        out.push('\n');
        for ext in &self.extensions {
            out.push_str(ext);
            out.push('\n');
        }
        out
    }
}

fn parse_tree_size(s: &str) -> Result<u64, NoteError> {
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NoteError::TreeSizeNotDecimal);
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(NoteError::TreeSizeLeadingZero);
    }
    s.parse::<u64>().map_err(|_| NoteError::TreeSizeOverflow)
}

fn parse_root(s: &str) -> Result<[u8; 32], NoteError> {
    let raw = STANDARD.decode(s).map_err(|_| NoteError::RootHashBase64)?;
    <[u8; 32]>::try_from(raw.as_slice()).map_err(|_| NoteError::RootHashLength { len: raw.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_parses() {
        // c2sp.org/tlog-checkpoint example.
        let text =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let cp = Checkpoint::parse(text).unwrap();
        assert_eq!(cp.origin.as_str(), "example.com/behind-the-sofa");
        assert_eq!(cp.size, 20_852_163);
        assert_eq!(&cp.root[..3], &[0x0a, 0xc5, 0x18]);
        assert_eq!(cp.to_text(), text);
    }

    #[test]
    fn size_rules() {
        let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
        let p = |size: &str| Checkpoint::parse(&format!("o\n{size}\n{root}\n"));
        assert_eq!(p("0").unwrap().size, 0);
        assert_eq!(p("18446744073709551615").unwrap().size, u64::MAX);
        assert_eq!(p("18446744073709551616"), Err(NoteError::TreeSizeOverflow));
        assert_eq!(p("007"), Err(NoteError::TreeSizeLeadingZero));
        assert_eq!(p("00"), Err(NoteError::TreeSizeLeadingZero));
        assert_eq!(p("+7"), Err(NoteError::TreeSizeNotDecimal));
        assert_eq!(p("-1"), Err(NoteError::TreeSizeNotDecimal));
        assert_eq!(p(" 7"), Err(NoteError::TreeSizeNotDecimal));
        assert_eq!(p("7a"), Err(NoteError::TreeSizeNotDecimal));
        assert_eq!(p("٣"), Err(NoteError::TreeSizeNotDecimal));
    }
}
