//! The c2sp.org/tlog-witness `add-checkpoint` exchange, from the log's side: the request body,
//! the 200 body (cosignature lines, checked with c2sp.org/tlog-cosignature `cosignature/v1`), and
//! the 409 body (`text/x.tlog.size`).
//!
//! ```text
//! POST <submission prefix>/add-checkpoint
//! old <size>\n                   decimal, no leading zeros
//! <base64 hash>\n ...            0..=63 consistency proof lines from <size> (none from 0)
//! \n
//! <signed checkpoint note>
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rekor_note::{CosignatureVerifier, MAX_NOTE_SIGNATURES, MAX_NOTE_SIZE, Note, NoteSignature};
use rekor_tlog::{HASH_SIZE, Hash};

use crate::WitnessError;
use crate::policy::parse_decimal;

/// Most consistency proof lines a request may carry (tlog-witness).
pub const MAX_PROOF_LINES: usize = 63;

/// Largest `add-checkpoint` body [`parse_add_checkpoint`] accepts: the proof lines and a note.
pub const MAX_REQUEST_SIZE: usize = MAX_NOTE_SIZE + 4096;

/// Largest 200 or 409 body read from a witness.
pub const MAX_RESPONSE_SIZE: usize = 64 * 1024;

/// The media type of a 409 body that carries the witness's tree size.
pub const TLOG_SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// Encodes an `add-checkpoint` body: the old size, the consistency proof from it, a blank line
/// and the signed checkpoint `note`.
///
/// # Errors
///
/// [`WitnessError::ProofTooLong`] beyond [`MAX_PROOF_LINES`]; [`WitnessError::ProofFromZero`]
/// for a non-empty proof from size 0.
pub fn add_checkpoint_body(old: u64, proof: &[Hash], note: &[u8]) -> Result<Vec<u8>, WitnessError> {
    if proof.len() > MAX_PROOF_LINES {
        return Err(WitnessError::ProofTooLong {
            len: proof.len(),
            max: MAX_PROOF_LINES,
        });
    }
    if old == 0 && !proof.is_empty() {
        return Err(WitnessError::ProofFromZero);
    }
    let mut body = Vec::with_capacity(32 + proof.len() * 45 + note.len());
    body.extend_from_slice(format!("old {old}\n").as_bytes());
    for hash in proof {
        body.extend_from_slice(STANDARD.encode(hash.0).as_bytes());
        body.push(b'\n');
    }
    body.push(b'\n');
    body.extend_from_slice(note);
    Ok(body)
}

/// A parsed `add-checkpoint` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpoint<'a> {
    /// The size the client believes the witness has.
    pub old: u64,
    /// The consistency proof from `old` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, unparsed.
    pub checkpoint: &'a [u8],
}

/// Parses an `add-checkpoint` body (the inverse of [`add_checkpoint_body`]). The checkpoint
/// is returned as bytes; it is the witness's job to open it.
///
/// # Errors
///
/// [`WitnessError::RequestTooLarge`], [`WitnessError::OldSizeLine`],
/// [`WitnessError::ProofLine`], [`WitnessError::ProofTooLong`], [`WitnessError::ProofFromZero`]
/// or [`WitnessError::MissingBlankLine`].
pub fn parse_add_checkpoint(body: &[u8]) -> Result<AddCheckpoint<'_>, WitnessError> {
    if body.len() > MAX_REQUEST_SIZE {
        return Err(WitnessError::RequestTooLarge {
            size: body.len(),
            max: MAX_REQUEST_SIZE,
        });
    }
    let (first, mut rest) = split_line(body).ok_or(WitnessError::OldSizeLine)?;
    let old = std::str::from_utf8(first)
        .ok()
        .and_then(|line| line.strip_prefix("old "))
        .and_then(parse_decimal)
        .ok_or(WitnessError::OldSizeLine)?;
    let mut proof = Vec::new();
    loop {
        let (line, after) = split_line(rest).ok_or(WitnessError::MissingBlankLine)?;
        rest = after;
        if line.is_empty() {
            break;
        }
        if proof.len() == MAX_PROOF_LINES {
            return Err(WitnessError::ProofTooLong {
                len: MAX_PROOF_LINES + 1,
                max: MAX_PROOF_LINES,
            });
        }
        let number = proof.len() + 1;
        let hash = STANDARD
            .decode(line)
            .ok()
            .and_then(|raw| <[u8; HASH_SIZE]>::try_from(raw).ok())
            .ok_or(WitnessError::ProofLine { line: number })?;
        proof.push(Hash(hash));
    }
    if old == 0 && !proof.is_empty() {
        return Err(WitnessError::ProofFromZero);
    }
    Ok(AddCheckpoint {
        old,
        proof,
        checkpoint: rest,
    })
}

fn split_line(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = bytes.iter().position(|&b| b == b'\n')?;
    Some((bytes.get(..end)?, bytes.get(end + 1..)?))
}

/// Parses a 409 body: the witness's tree size in decimal and a newline.
///
/// # Errors
///
/// [`WitnessError::SizeBody`], or [`WitnessError::ResponseTooLarge`].
pub fn parse_tlog_size(body: &[u8]) -> Result<u64, WitnessError> {
    if body.len() > MAX_RESPONSE_SIZE {
        return Err(WitnessError::ResponseTooLarge {
            size: body.len(),
            max: MAX_RESPONSE_SIZE,
        });
    }
    std::str::from_utf8(body)
        .ok()
        .map(|text| text.strip_suffix('\n').unwrap_or(text))
        .and_then(parse_decimal)
        .ok_or_else(|| WitnessError::SizeBody {
            body: String::from_utf8_lossy(body.get(..64).unwrap_or(body)).into_owned(),
        })
}

/// Parses a 200 body: one or more note signature lines (`— <name> <base64>`), each ending in a
/// newline, at most [`MAX_NOTE_SIGNATURES`]. Says nothing about whose they are.
///
/// # Errors
///
/// [`WitnessError::ResponseTooLarge`], [`WitnessError::ResponseFraming`] or
/// [`WitnessError::ResponseLine`].
pub fn parse_cosignature_lines(body: &[u8]) -> Result<Vec<NoteSignature>, WitnessError> {
    if body.len() > MAX_RESPONSE_SIZE {
        return Err(WitnessError::ResponseTooLarge {
            size: body.len(),
            max: MAX_RESPONSE_SIZE,
        });
    }
    let text = std::str::from_utf8(body)
        .ok()
        .and_then(|t| t.strip_suffix('\n'))
        .filter(|t| !t.is_empty())
        .ok_or(WitnessError::ResponseFraming)?;
    let mut lines = Vec::new();
    for (index, line) in text.split('\n').enumerate() {
        if index == MAX_NOTE_SIGNATURES {
            return Err(WitnessError::ResponseLine {
                line: index + 1,
                source: rekor_note::NoteError::TooManySignatures {
                    max: MAX_NOTE_SIGNATURES,
                },
            });
        }
        let signature =
            NoteSignature::parse_line(line).map_err(|source| WitnessError::ResponseLine {
                line: index + 1,
                source,
            })?;
        lines.push(signature);
    }
    Ok(lines)
}

/// Picks the lines signed by `witness`'s key (same key name and key ID; the spec says to ignore
/// the others) and verifies each over `note_text`, the checkpoint body sent.
///
/// # Errors
///
/// [`WitnessError::NoCosignature`] if no line is from the key; [`WitnessError::BadCosignature`]
/// if one of them does not verify.
pub fn verify_cosignatures(
    witness: &CosignatureVerifier,
    note_text: &str,
    lines: &[NoteSignature],
) -> Result<Vec<NoteSignature>, WitnessError> {
    use rekor_note::NoteVerifier as _;
    let mut verified: Vec<NoteSignature> = Vec::new();
    for line in lines {
        if line.name != *witness.name() || line.key_id != witness.key_id() {
            continue;
        }
        witness
            .verify_cosignature(note_text, line)
            .map_err(|source| WitnessError::BadCosignature {
                name: witness.name().as_str().to_string(),
                source,
            })?;
        if !verified.contains(line) {
            verified.push(line.clone());
        }
    }
    if verified.is_empty() {
        return Err(WitnessError::NoCosignature {
            name: witness.name().as_str().to_string(),
        });
    }
    Ok(verified)
}

/// [`parse_cosignature_lines`] then [`verify_cosignatures`] against the text of `checkpoint`,
/// the signed note that was sent: the verified cosignatures of `witness` in a 200 body.
///
/// # Errors
///
/// [`WitnessError::Checkpoint`] if `checkpoint` is not a signed note; otherwise as the two
/// functions.
pub fn cosignatures_from_response(
    witness: &CosignatureVerifier,
    checkpoint: &[u8],
    body: &[u8],
) -> Result<Vec<NoteSignature>, WitnessError> {
    let note = Note::parse(checkpoint).map_err(WitnessError::Checkpoint)?;
    let lines = parse_cosignature_lines(body)?;
    verify_cosignatures(witness, note.text(), &lines)
}

#[cfg(test)]
mod tests {
    use rekor_note::{Checkpoint, CosignatureSigner, KeyName, LogSigner, NoteError, Origin};

    use super::*;

    /// The example body of tlog-witness, as bytes.
    const SPEC_BODY: &str = "old 20852014\n\
        PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n\
        jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n\
        5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n\
        /6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n\
        \n\
        example.com/behind-the-sofa\n\
        20852163\n\
        CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\
        \n\
        \u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";

    fn signed_note() -> Vec<u8> {
        let name = KeyName::new("log.example").unwrap();
        let signer = LogSigner::from_ed25519_seed([9; 32], name.clone());
        signer
            .sign_checkpoint(&Checkpoint::new(Origin::from(name), 5, [7; 32]))
            .unwrap()
    }

    fn witness(seed: u8) -> CosignatureSigner {
        CosignatureSigner::from_ed25519_seed([seed; 32], KeyName::new("w.example/1").unwrap())
    }

    #[test]
    fn the_spec_example_round_trips() {
        let parsed = parse_add_checkpoint(SPEC_BODY.as_bytes()).unwrap();
        assert_eq!(parsed.old, 20_852_014);
        assert_eq!(parsed.proof.len(), 4);
        assert!(
            parsed
                .checkpoint
                .starts_with(b"example.com/behind-the-sofa\n20852163\n")
        );
        let encoded = add_checkpoint_body(parsed.old, &parsed.proof, parsed.checkpoint).unwrap();
        assert_eq!(encoded, SPEC_BODY.as_bytes());
    }

    #[test]
    fn a_first_request_has_no_proof() {
        let note = signed_note();
        let body = add_checkpoint_body(0, &[], &note).unwrap();
        let mut expected = b"old 0\n\n".to_vec();
        expected.extend_from_slice(&note);
        assert_eq!(body, expected);
        assert_eq!(
            add_checkpoint_body(0, &[Hash([1; 32])], &note),
            Err(WitnessError::ProofFromZero)
        );
        assert_eq!(
            add_checkpoint_body(1, &[Hash([1; 32]); 64], &note),
            Err(WitnessError::ProofTooLong { len: 64, max: 63 })
        );
    }

    #[test]
    fn malformed_requests_are_named() {
        let cases: [(&[u8], WitnessError); 6] = [
            (b"old 01\n\nx", WitnessError::OldSizeLine),
            (b"new 1\n\nx", WitnessError::OldSizeLine),
            (b"old 1", WitnessError::OldSizeLine),
            (b"old 1\nAAAA\n\nx", WitnessError::ProofLine { line: 1 }),
            (b"old 1\n", WitnessError::MissingBlankLine),
            (
                b"old 0\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n\nx",
                WitnessError::ProofFromZero,
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(parse_add_checkpoint(body), Err(expected), "{body:?}");
        }
    }

    #[test]
    fn conflict_bodies() {
        assert_eq!(parse_tlog_size(b"20852014\n"), Ok(20_852_014));
        assert_eq!(parse_tlog_size(b"0\n"), Ok(0));
        assert_eq!(parse_tlog_size(b"7"), Ok(7));
        for bad in [&b""[..], b"\n", b"-1\n", b"12 \n", b"0x10\n", b"1\n\n"] {
            assert!(
                matches!(parse_tlog_size(bad), Err(WitnessError::SizeBody { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn cosignatures_are_verified_and_others_ignored() {
        let note = signed_note();
        let text = Note::parse(&note).unwrap().text().to_string();
        let w1 = witness(1);
        let w2 = CosignatureSigner::from_ed25519_seed([2; 32], KeyName::new("w2").unwrap());
        let mine = w1.cosign(&text, 1_700_000_000).unwrap();
        let other = w2.cosign(&text, 1_700_000_001).unwrap();
        let body = format!("{}{}", other.to_line(), mine.to_line());

        let verified = cosignatures_from_response(&w1.verifier(), &note, body.as_bytes()).unwrap();
        assert_eq!(verified, vec![mine.clone()]);

        // Only someone else's line: nothing from this witness.
        assert_eq!(
            cosignatures_from_response(&w1.verifier(), &note, other.to_line().as_bytes()),
            Err(WitnessError::NoCosignature {
                name: "w.example/1".into()
            })
        );

        // A line with this witness's name and key ID over another text does not verify.
        let elsewhere = w1.cosign("another\n1\nAAAA\n", 1_700_000_000).unwrap();
        assert!(matches!(
            cosignatures_from_response(&w1.verifier(), &note, elsewhere.to_line().as_bytes()),
            Err(WitnessError::BadCosignature {
                source: NoteError::SignatureVerificationFailed { .. },
                ..
            })
        ));
    }

    #[test]
    fn response_framing() {
        let line = witness(1).cosign("a\n", 1).unwrap().to_line();
        assert_eq!(parse_cosignature_lines(line.as_bytes()).unwrap().len(), 1);
        let unterminated = line.trim_end_matches('\n');
        for bad in [b"".as_slice(), b"\n", unterminated.as_bytes()] {
            assert_eq!(
                parse_cosignature_lines(bad),
                Err(WitnessError::ResponseFraming),
                "{bad:?}"
            );
        }
        let blank_between = format!("{line}\n{line}");
        assert!(matches!(
            parse_cosignature_lines(blank_between.as_bytes()),
            Err(WitnessError::ResponseLine { line: 2, .. })
        ));
        assert!(matches!(
            parse_cosignature_lines(b"- w AAAAAAA=\n"),
            Err(WitnessError::ResponseLine { line: 1, .. })
        ));
        let many = line.repeat(MAX_NOTE_SIGNATURES + 1);
        assert!(matches!(
            parse_cosignature_lines(many.as_bytes()),
            Err(WitnessError::ResponseLine { line: 101, .. })
        ));
    }
}
