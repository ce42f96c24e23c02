//! c2sp.org/signed-note: parsing, encoding, signing and opening notes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::{KeyName, NoteError};

/// Largest accepted note, in bytes (text and signature lines together).
///
/// The spec asks verifiers to accept at least 16 signatures and warns that post-quantum signatures
/// approach 5 kB; 1 MiB holds [`MAX_NOTE_SIGNATURES`] such lines with room to spare.
pub const MAX_NOTE_SIZE: usize = 1 << 20;

/// Most signature lines accepted on one note (the spec's floor is 16; Go's `sumdb/note` uses 100).
pub const MAX_NOTE_SIGNATURES: usize = 100;

/// The em dash (U+2014) and space that start every signature line.
pub const SIGNATURE_LINE_PREFIX: &str = "\u{2014} ";

/// One signature line of a note: `— <name> base64(key_id || signature)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name on the line.
    pub name: KeyName,
    /// The 4-byte key ID (big-endian uint32 in the spec) that starts the decoded signature.
    pub key_id: [u8; 4],
    /// The signature proper, without the key ID.
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// Parses one signature line, with or without its final newline.
    ///
    /// This is also the wire format of a tlog-witness `add-checkpoint` response body line.
    ///
    /// # Errors
    /// [`NoteError::MalformedSignatureLine`], [`NoteError::SignatureLineKeyName`],
    /// [`NoteError::SignatureBase64`] or [`NoteError::SignatureTooShort`], with `line` 1.
    pub fn parse_line(line: &str) -> Result<Self, NoteError> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        if line.contains('\n') {
            return Err(NoteError::MalformedSignatureLine { line: 1 });
        }
        parse_signature_line(line, 1)
    }

    /// Encodes the line, including its final newline.
    #[must_use]
    pub fn to_line(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.signature.len());
        raw.extend_from_slice(&self.key_id);
        raw.extend_from_slice(&self.signature);
        let mut line = String::with_capacity(8 + self.name.as_str().len() + raw.len() * 4 / 3);
        line.push_str(SIGNATURE_LINE_PREFIX);
        line.push_str(self.name.as_str());
        line.push(' ');
        line.push_str(&STANDARD.encode(raw));
        line.push('\n');
        line
    }
}

/// A signed note: a text ending in a newline and one or more signature lines.
///
/// A `Note` returned by [`Note::parse`] is well-formed but **unverified**; use [`open_note`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    text: String,
    signatures: Vec<NoteSignature>,
}

impl Note {
    /// Builds a note from a text and its signatures, checking the same rules as [`Note::parse`].
    ///
    /// Use this to append cosignatures to a note that was already signed.
    ///
    /// # Errors
    /// [`NoteError::TextNotNewlineTerminated`], [`NoteError::ControlCharacter`],
    /// [`NoteError::NoSignatures`], [`NoteError::TooManySignatures`] or
    /// [`NoteError::NoteTooLarge`].
    pub fn new(text: &str, signatures: Vec<NoteSignature>) -> Result<Self, NoteError> {
        check_text(text)?;
        if signatures.is_empty() {
            return Err(NoteError::NoSignatures);
        }
        if signatures.len() > MAX_NOTE_SIGNATURES {
            return Err(NoteError::TooManySignatures {
                max: MAX_NOTE_SIGNATURES,
            });
        }
        let note = Self {
            text: text.to_owned(),
            signatures,
        };
        let size = note.encoded_len();
        if size > MAX_NOTE_SIZE {
            return Err(NoteError::NoteTooLarge {
                size,
                max: MAX_NOTE_SIZE,
            });
        }
        Ok(note)
    }

    /// Parses a signed note without verifying any signature.
    ///
    /// Rules (c2sp.org/signed-note, "Format"): at most [`MAX_NOTE_SIZE`] bytes; valid UTF-8 with no
    /// ASCII control character but newline; the text is everything up to and including the newline
    /// before the *last* blank line; every following line is a signature line ending in a newline;
    /// key names are valid [`KeyName`]s; signatures are canonical padded standard base64 of at
    /// least 5 bytes; at most [`MAX_NOTE_SIGNATURES`] lines. Signature lines are kept in order,
    /// duplicates included, so [`Note::to_bytes`] returns the input unchanged.
    ///
    /// # Errors
    /// The framing variants of [`NoteError`], naming the rule that failed.
    pub fn parse(bytes: &[u8]) -> Result<Self, NoteError> {
        if bytes.len() > MAX_NOTE_SIZE {
            return Err(NoteError::NoteTooLarge {
                size: bytes.len(),
                max: MAX_NOTE_SIZE,
            });
        }
        let msg = core::str::from_utf8(bytes).map_err(|_| NoteError::NotUtf8)?;
        check_controls(msg)?;
        let split = msg
            .rfind("\n\n")
            .ok_or(NoteError::MissingSignatureSeparator)?;
        let (text, rest) = msg.split_at(split + 1);
        let block = rest.get(1..).ok_or(NoteError::MissingSignatureSeparator)?;
        if block.is_empty() {
            return Err(NoteError::EmptySignatureBlock);
        }
        let block = block
            .strip_suffix('\n')
            .ok_or(NoteError::SignatureBlockNotTerminated)?;
        let mut signatures = Vec::new();
        for (index, line) in block.split('\n').enumerate() {
            if index >= MAX_NOTE_SIGNATURES {
                return Err(NoteError::TooManySignatures {
                    max: MAX_NOTE_SIGNATURES,
                });
            }
            signatures.push(parse_signature_line(line, index + 1)?);
        }
        Ok(Self {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The signed text, including its final newline.
    #[must_use]
    pub fn text(&self) -> &str {
        &self.text
    }

    /// All signature lines in order (verified or not).
    #[must_use]
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// Appends a signature line (for example a witness cosignature).
    ///
    /// # Errors
    /// [`NoteError::TooManySignatures`] or [`NoteError::NoteTooLarge`]; the note is unchanged then.
    pub fn push_signature(&mut self, signature: NoteSignature) -> Result<(), NoteError> {
        if self.signatures.len() >= MAX_NOTE_SIGNATURES {
            return Err(NoteError::TooManySignatures {
                max: MAX_NOTE_SIGNATURES,
            });
        }
        let size = self.encoded_len().saturating_add(signature.to_line().len());
        if size > MAX_NOTE_SIZE {
            return Err(NoteError::NoteTooLarge {
                size,
                max: MAX_NOTE_SIZE,
            });
        }
        self.signatures.push(signature);
        Ok(())
    }

    /// Encodes the note: text, blank line, signature lines.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(self.encoded_len());
        out.push_str(&self.text);
        out.push('\n');
        for sig in &self.signatures {
            out.push_str(&sig.to_line());
        }
        out.into_bytes()
    }

    fn encoded_len(&self) -> usize {
        self.signatures
            .iter()
            .fold(self.text.len().saturating_add(1), |acc, s| {
                acc.saturating_add(s.to_line().len())
            })
    }
}

/// Verifies note signatures of one key.
///
/// The pair ([`NoteVerifier::name`], [`NoteVerifier::key_id`]) identifies the key; a signature
/// line matching both is checked with [`NoteVerifier::verify`].
pub trait NoteVerifier: Send + Sync {
    /// The key name this verifier expects on signature lines.
    fn name(&self) -> &KeyName;
    /// The 4-byte key ID this verifier expects on signature lines.
    fn key_id(&self) -> [u8; 4];
    /// Reports whether `sig` (the signature bytes after the key ID) is valid over `msg` (the note
    /// text, final newline included).
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool;
}

/// Produces note signatures with one key.
pub trait NoteSigner: Send + Sync {
    /// The key name written on signature lines.
    fn name(&self) -> &KeyName;
    /// The 4-byte key ID written on signature lines.
    fn key_id(&self) -> [u8; 4];
    /// Signs `msg` (the note text, final newline included).
    ///
    /// # Errors
    /// Implementation specific; [`NoteError::SigningFailed`] is the usual choice.
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, NoteError>;
}

/// Signs `text` with every signer, in order, and returns the note.
///
/// # Errors
/// [`NoteError::TextNotNewlineTerminated`] or [`NoteError::ControlCharacter`] for a bad text,
/// [`NoteError::NoSignatures`] without signers, [`NoteError::TooManySignatures`],
/// [`NoteError::NoteTooLarge`], or the first signer error.
pub fn sign_note(text: &str, signers: &[&dyn NoteSigner]) -> Result<Note, NoteError> {
    check_text(text)?;
    if signers.is_empty() {
        return Err(NoteError::NoSignatures);
    }
    if signers.len() > MAX_NOTE_SIGNATURES {
        return Err(NoteError::TooManySignatures {
            max: MAX_NOTE_SIGNATURES,
        });
    }
    let mut signatures = Vec::with_capacity(signers.len());
    for signer in signers {
        let signature = signer.sign(text.as_bytes())?;
        signatures.push(NoteSignature {
            name: signer.name().clone(),
            key_id: signer.key_id(),
            signature,
        });
    }
    Note::new(text, signatures)
}

/// Parses and verifies a signed note (c2sp.org/signed-note, "Signatures").
///
/// - A signature line whose (name, key ID) matches no verifier is ignored.
/// - Every line that matches a verifier is verified, duplicates included; one failure rejects
///   the note. (Go's `sumdb/note` skips repeated lines of a known key without checking them; the
///   spec says a matching signature MUST be verified, so we check them all.)
/// - At least one line must verify.
///
/// Returns the note and its verified signatures, one per (name, key ID), in note order.
///
/// # Errors
/// Any [`Note::parse`] error, [`NoteError::SignatureVerificationFailed`] or
/// [`NoteError::NoVerifiedSignature`].
pub fn open_note(
    bytes: &[u8],
    verifiers: &[&dyn NoteVerifier],
) -> Result<(Note, Vec<NoteSignature>), NoteError> {
    let note = Note::parse(bytes)?;
    let mut verified: Vec<NoteSignature> = Vec::new();
    for sig in &note.signatures {
        let Some(verifier) = verifiers
            .iter()
            .find(|v| v.name() == &sig.name && v.key_id() == sig.key_id)
        else {
            continue;
        };
        if !verifier.verify(note.text.as_bytes(), &sig.signature) {
            return Err(NoteError::SignatureVerificationFailed {
                name: sig.name.as_str().to_owned(),
                key_id: sig.key_id,
            });
        }
        if !verified
            .iter()
            .any(|v| v.name == sig.name && v.key_id == sig.key_id)
        {
            verified.push(sig.clone());
        }
    }
    if verified.is_empty() {
        return Err(NoteError::NoVerifiedSignature);
    }
    Ok((note, verified))
}

/// Text rules shared by signing and building: newline-terminated, no control characters.
fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::TextNotNewlineTerminated);
    }
    check_controls(text)
}

fn check_controls(s: &str) -> Result<(), NoteError> {
    match s.bytes().position(|b| b < 0x20 && b != b'\n') {
        Some(offset) => Err(NoteError::ControlCharacter { offset }),
        None => Ok(()),
    }
}

/// Parses `— <name> <base64>` (no newline). `line` numbers errors.
fn parse_signature_line(text: &str, line: usize) -> Result<NoteSignature, NoteError> {
    let rest = text
        .strip_prefix(SIGNATURE_LINE_PREFIX)
        .ok_or(NoteError::MalformedSignatureLine { line })?;
    let (name, b64) = rest
        .split_once(' ')
        .ok_or(NoteError::MalformedSignatureLine { line })?;
    let name = KeyName::new(name).map_err(|_| NoteError::SignatureLineKeyName { line })?;
    if b64.is_empty() {
        return Err(NoteError::MalformedSignatureLine { line });
    }
    let raw = STANDARD
        .decode(b64)
        .map_err(|_| NoteError::SignatureBase64 { line })?;
    let (key_id, signature) = raw
        .split_first_chunk::<4>()
        .filter(|(_, sig)| !sig.is_empty())
        .ok_or(NoteError::SignatureTooShort {
            line,
            len: raw.len(),
        })?;
    Ok(NoteSignature {
        name,
        key_id: *key_id,
        signature: signature.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        name: KeyName,
        id: [u8; 4],
        ok: bool,
    }

    impl NoteVerifier for Fake {
        fn name(&self) -> &KeyName {
            &self.name
        }
        fn key_id(&self) -> [u8; 4] {
            self.id
        }
        fn verify(&self, _msg: &[u8], sig: &[u8]) -> bool {
            self.ok && sig == b"good"
        }
    }

    fn line(name: &str, id: [u8; 4], sig: &[u8]) -> String {
        NoteSignature {
            name: KeyName::new(name).unwrap(),
            key_id: id,
            signature: sig.to_vec(),
        }
        .to_line()
    }

    #[test]
    fn text_is_split_at_last_blank_line() {
        let raw = format!("a\n\nb\n\n{}", line("k", [1, 2, 3, 4], b"good"));
        let note = Note::parse(raw.as_bytes()).unwrap();
        assert_eq!(note.text(), "a\n\nb\n");
        assert_eq!(note.signatures().len(), 1);
        assert_eq!(note.to_bytes(), raw.as_bytes());
    }

    #[test]
    fn duplicate_known_signature_lines_are_all_checked() {
        let fake = Fake {
            name: KeyName::new("k").unwrap(),
            id: [1, 2, 3, 4],
            ok: true,
        };
        let good = line("k", [1, 2, 3, 4], b"good");
        let bad = line("k", [1, 2, 3, 4], b"bad!");
        let twice_good = format!("t\n\n{good}{good}");
        let (note, verified) = open_note(twice_good.as_bytes(), &[&fake]).unwrap();
        assert_eq!(note.signatures().len(), 2);
        assert_eq!(verified.len(), 1, "verified list is deduplicated");
        let good_then_bad = format!("t\n\n{good}{bad}");
        assert!(matches!(
            open_note(good_then_bad.as_bytes(), &[&fake]),
            Err(NoteError::SignatureVerificationFailed { .. })
        ));
    }

    #[test]
    fn unknown_keys_sharing_name_or_id_are_ignored() {
        let fake = Fake {
            name: KeyName::new("k").unwrap(),
            id: [1, 2, 3, 4],
            ok: true,
        };
        let raw = format!(
            "t\n\n{}{}{}",
            line("k", [9, 9, 9, 9], b"bad!"),
            line("other", [1, 2, 3, 4], b"bad!"),
            line("k", [1, 2, 3, 4], b"good"),
        );
        let (_, verified) = open_note(raw.as_bytes(), &[&fake]).unwrap();
        assert_eq!(verified.len(), 1);
        assert_eq!(verified[0].key_id, [1, 2, 3, 4]);
    }
}
