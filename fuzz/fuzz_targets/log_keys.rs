//! The log's own keys: `LogSigner::from_pem` (the `--signer-filepath` file) and
//! `LogVerifier::from_spki_der` (a TrustedRoot log key). Never panic; a loaded signer's
//! verifier accepts the checkpoints it signs, and an SPKI verifier re-parses from its own DER.
//!
//! The first byte picks the parser; the rest is its input. Encrypted PEM is parsed without a
//! password: its key derivation cost comes from the file, which is operator configuration, and
//! a fuzzer would spend its time in PBKDF2 and scrypt.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rekor_note::{Checkpoint, KeyName, LogSigner, LogVerifier, Origin};

fuzz_target!(|data: &[u8]| {
    let Some((selector, input)) = data.split_first() else {
        return;
    };
    let name = KeyName::new("log.example.dev").unwrap_or_else(|e| panic!("key name: {e}"));
    if selector % 2 == 0 {
        let Ok(signer) = LogSigner::from_pem(input, None, name.clone()) else {
            return;
        };
        let checkpoint = Checkpoint::new(Origin::from(name), 1, [0x5a; 32]);
        let note = signer
            .sign_checkpoint(&checkpoint)
            .unwrap_or_else(|e| panic!("a loaded key cannot sign: {e}"));
        let verified = signer
            .verifier()
            .verify_checkpoint(&note)
            .unwrap_or_else(|e| panic!("a loaded key's signature does not verify: {e}"));
        assert_eq!(verified, checkpoint);
        assert_eq!(signer.log_id(), signer.verifier().log_id());
    } else {
        let Ok(verifier) = LogVerifier::from_spki_der(name.clone(), input) else {
            return;
        };
        let der = verifier.public_key_der();
        let again = LogVerifier::from_spki_der(name, &der)
            .unwrap_or_else(|e| panic!("a verifier's own DER does not parse: {e}"));
        assert_eq!(again.public_key_der(), der);
        assert_eq!(again.algorithm(), verifier.algorithm());
        if let Some(vkey) = verifier.to_vkey() {
            let from_vkey = LogVerifier::from_vkey(&vkey)
                .unwrap_or_else(|e| panic!("a verifier's own vkey does not parse: {e}"));
            assert_eq!(from_vkey.public_key_der(), der);
        }
    }
});
