//! The config file of known logs.
//!
//! A text file, one directive a line; `#` starts a comment line, blank lines are skipped:
//!
//! ```text
//! # log [<origin>] <key>
//! log rekor.example.dev rekor.example.dev+8f3c1a2b+AYz...     (Ed25519 vkey, type 0x01)
//! log rekor.example.dev+8f3c1a2b+AYz...                       (origin = the vkey's key name)
//! log ecdsa.example.dev ecdsa.example.dev+1a2b3c4d+AjBZ...    (ECDSA P-256 vkey, type 0x02)
//! log p384.example.dev spki:MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAE...  (DER SPKI, base64)
//! ```
//!
//! `<key>` is the last word of the line; everything between `log` and it is the origin, so an
//! origin may contain spaces. A vkey is the C2SP signed-note verifier key that
//! `rekor-server-* info` prints as `verifier key:`. `spki:` takes the base64 DER
//! SubjectPublicKeyInfo (`public key:` in the same output) of an Ed25519, P-256 or P-384 key,
//! with the origin as key name; it is the only way to name a P-384 log, which has no vkey type.
//! Several lines for one origin give it several trusted keys (key rotation).

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rekor_note::{KeyName, LogVerifier, NoteVerifier as _, Origin};

use crate::error::ConfigError;

/// One known log: its origin and the keys trusted to sign its checkpoints.
#[derive(Debug, Clone)]
pub(crate) struct KnownLog {
    /// The checkpoint origin line.
    pub(crate) origin: Origin,
    /// The trusted keys, at least one.
    pub(crate) verifiers: Vec<LogVerifier>,
}

/// Reads and parses the config file at `path`.
///
/// # Errors
/// [`ConfigError::Io`] or any parse error of [`parse`].
pub(crate) fn load(path: &Path) -> Result<Vec<KnownLog>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text)
}

/// Parses a config text (see the module docs), in origin order.
///
/// # Errors
/// The [`ConfigError`] of the first bad line, or [`ConfigError::NoLogs`].
pub(crate) fn parse(text: &str) -> Result<Vec<KnownLog>, ConfigError> {
    let mut logs: BTreeMap<Origin, Vec<LogVerifier>> = BTreeMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let content = raw.trim();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let (word, rest) = content
            .split_once(char::is_whitespace)
            .unwrap_or((content, ""));
        if word != "log" {
            return Err(ConfigError::UnknownDirective {
                line,
                word: word.to_owned(),
            });
        }
        let rest = rest.trim();
        if rest.is_empty() {
            return Err(ConfigError::MissingKey { line });
        }
        let (origin, key) = match rest.rsplit_once(char::is_whitespace) {
            Some((origin, key)) => (Some(origin.trim_end()), key),
            None => (None, rest),
        };
        let verifier = parse_key(key, origin, line)?;
        let origin = match origin {
            Some(origin) => {
                Origin::new(origin).map_err(|source| ConfigError::Origin { line, source })?
            }
            None => Origin::from(verifier.name().clone()),
        };
        let keys = logs.entry(origin.clone()).or_default();
        if keys
            .iter()
            .any(|k| k.name() == verifier.name() && k.key_id() == verifier.key_id())
        {
            return Err(ConfigError::DuplicateKey {
                line,
                origin: origin.as_str().to_owned(),
            });
        }
        keys.push(verifier);
    }
    if logs.is_empty() {
        return Err(ConfigError::NoLogs);
    }
    Ok(logs
        .into_iter()
        .map(|(origin, verifiers)| KnownLog { origin, verifiers })
        .collect())
}

fn parse_key(key: &str, origin: Option<&str>, line: usize) -> Result<LogVerifier, ConfigError> {
    let Some(b64) = key.strip_prefix("spki:") else {
        return LogVerifier::from_vkey(key).map_err(|source| ConfigError::Key { line, source });
    };
    let origin = origin.ok_or(ConfigError::MissingKey { line })?;
    let name = KeyName::new(origin).map_err(|source| ConfigError::Origin { line, source })?;
    let der = STANDARD
        .decode(b64)
        .map_err(|_| ConfigError::SpkiBase64 { line })?;
    LogVerifier::from_spki_der(name, &der).map_err(|source| ConfigError::Key { line, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekor_note::LogSigner;

    fn signer(name: &str, seed: u8) -> LogSigner {
        LogSigner::from_ed25519_seed([seed; 32], KeyName::new(name).unwrap())
    }

    #[test]
    fn parses_vkeys_origins_comments_and_rotation() {
        let a = signer("a.example", 1).verifier().to_vkey().unwrap();
        let a2 = signer("a.example", 2).verifier().to_vkey().unwrap();
        let b = signer("b.example", 3).verifier().to_vkey().unwrap();
        let text = format!(
            "# known logs\n\nlog {a}\r\n  log a.example {a2}  \nlog my log with spaces {b}\n"
        );
        let logs = parse(&text).unwrap();
        assert_eq!(logs.len(), 2);
        assert_eq!(logs[0].origin.as_str(), "a.example");
        assert_eq!(logs[0].verifiers.len(), 2);
        assert_eq!(logs[1].origin.as_str(), "my log with spaces");
        assert_eq!(logs[1].verifiers[0].name().as_str(), "b.example");
    }

    #[test]
    fn parses_ecdsa_vkeys_and_spki_keys() {
        let name = KeyName::new("p.example").unwrap();
        let p256 = LogSigner::from_p256_scalar([7; 32], name.clone()).unwrap();
        let p384 = LogSigner::from_p384_scalar([7; 48], name).unwrap();
        let text = format!(
            "log {}\nlog p.example spki:{}\n",
            p256.verifier().to_vkey().unwrap(),
            STANDARD.encode(p384.public_key_der())
        );
        let logs = parse(&text).unwrap();
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].verifiers[0], p256.verifier());
        assert_eq!(logs[0].verifiers[1], p384.verifier());
    }

    #[test]
    fn rejects_bad_lines_with_their_number() {
        let a = signer("a.example", 1).verifier().to_vkey().unwrap();
        let cases = [
            ("witness x\n", 1),
            ("\nlog\n", 2),
            ("log a.example not-a-vkey\n", 1),
            ("log spki:AAAA\n", 1),
            ("log a.example spki:!!\n", 1),
            (&format!("log {a}\nlog a.example {a}\n"), 2),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err();
            let line = match err {
                ConfigError::UnknownDirective { line, .. }
                | ConfigError::MissingKey { line }
                | ConfigError::Origin { line, .. }
                | ConfigError::Key { line, .. }
                | ConfigError::SpkiBase64 { line }
                | ConfigError::DuplicateKey { line, .. } => line,
                other => panic!("{text:?}: unexpected {other:?}"),
            };
            assert_eq!(line, want, "{text:?}");
        }
        assert!(matches!(parse("# nothing\n"), Err(ConfigError::NoLogs)));
    }
}
