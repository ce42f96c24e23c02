//! `--witness-policy FILE`: a checkpoint counts only if the witnesses of the policy's quorum
//! cosigned it (c2sp.org/tlog-policy, the format the log's `--witness-policy-path` reads; each
//! cosignature checked as c2sp.org/tlog-cosignature `cosignature/v1`).

use std::path::Path;

use anyhow::Context as _;
use rekor_note::Note;
use rekor_witnessing::{Policy, verify_cosignatures};

use crate::util::read;

/// The quorum of the policy was not met: a verification failure (exit status 2), like a bad
/// log signature.
#[derive(Debug, thiserror::Error)]
#[error("checkpoint of size {size} lacks the witness quorum {quorum:?}: cosigned by {cosigned:?}")]
pub(crate) struct QuorumMissing {
    size: u64,
    quorum: String,
    cosigned: Vec<String>,
}

/// The witness policy a checkpoint must satisfy.
#[derive(Debug)]
pub(crate) struct WitnessPolicy {
    policy: Policy,
}

impl WitnessPolicy {
    /// Reads and parses the policy file.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let policy = Policy::parse(&read(path)?)
            .with_context(|| format!("--witness-policy {}", path.display()))?;
        Ok(WitnessPolicy { policy })
    }

    /// Checks `note` (a checkpoint whose log signature is already verified, of tree size `size`)
    /// and returns the names of the witnesses whose cosignature verified.
    ///
    /// # Errors
    ///
    /// [`QuorumMissing`] if those witnesses do not satisfy the quorum; a cosignature line from a
    /// policy witness's key that does not verify counts as missing, never as present.
    pub(crate) fn check(&self, note: &str, size: u64) -> anyhow::Result<Vec<String>> {
        let parsed = Note::parse(note.as_bytes()).context("checkpoint note")?;
        let cosigned: Vec<String> = self
            .policy
            .witnesses()
            .iter()
            .filter(|witness| {
                verify_cosignatures(witness.verifier(), parsed.text(), parsed.signatures())
                    .is_ok_and(|verified| !verified.is_empty())
            })
            .map(|witness| witness.name().to_owned())
            .collect();
        if self.policy.satisfied(cosigned.iter().map(String::as_str)) {
            Ok(cosigned)
        } else {
            Err(QuorumMissing {
                size,
                quorum: self.policy.quorum_name().to_owned(),
                cosigned,
            }
            .into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekor_note::{Checkpoint, CosignatureSigner, KeyName, LogSigner, Origin};

    fn policy(text: &str) -> WitnessPolicy {
        WitnessPolicy {
            policy: Policy::parse(text.as_bytes()).unwrap(),
        }
    }

    #[test]
    fn the_quorum_counts_only_verifying_cosignatures() {
        let name = |s: &str| KeyName::new(s).unwrap();
        let log = LogSigner::from_ed25519_seed([1; 32], name("log.example"));
        let w1 = CosignatureSigner::from_ed25519_seed([2; 32], name("w1.example"));
        let w2 = CosignatureSigner::from_ed25519_seed([3; 32], name("w2.example"));
        let impostor = CosignatureSigner::from_ed25519_seed([4; 32], name("w2.example"));
        let both = policy(&format!(
            "witness w1 {} https://w1.example/\nwitness w2 {} https://w2.example/\n\
             group both all w1 w2\nquorum both\n",
            w1.verifier().to_vkey(),
            w2.verifier().to_vkey()
        ));
        let note = log
            .sign_checkpoint(&Checkpoint::new(
                Origin::from(name("log.example")),
                3,
                [7; 32],
            ))
            .unwrap();
        let note = String::from_utf8(note).unwrap();
        let text = Note::parse(note.as_bytes()).unwrap().text().to_owned();
        let with = |signers: &[&CosignatureSigner]| {
            let mut out = note.clone();
            for signer in signers {
                out.push_str(&signer.cosign(&text, 1_700_000_000).unwrap().to_line());
            }
            out
        };

        assert_eq!(
            both.check(&with(&[&w1, &w2]), 3).unwrap(),
            vec!["w1".to_owned(), "w2".to_owned()]
        );
        let missing = both.check(&with(&[&w1]), 3).unwrap_err();
        assert!(
            missing.downcast_ref::<QuorumMissing>().is_some(),
            "{missing}"
        );
        // A line under w2's name and key ID but by another key does not count.
        assert!(both.check(&with(&[&w1, &impostor]), 3).is_err());
        assert!(both.check(&note, 3).is_err());
        let any = policy(&format!(
            "witness w1 {} https://w1.example/\nwitness w2 {} https://w2.example/\n\
             group one any w1 w2\nquorum one\n",
            w1.verifier().to_vkey(),
            w2.verifier().to_vkey()
        ));
        assert_eq!(any.check(&with(&[&w2]), 3).unwrap(), vec!["w2".to_owned()]);
    }
}
