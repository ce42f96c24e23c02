//! Search terms derived from logged entries, against values computed outside the code under
//! test: the goldens come from gen_golden.py, and every expected term in
//! testdata/search_terms.txt from openssl and sha256sum (testdata/make_search_fixtures.sh).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use rekor_entries::SigningAlgorithm;
use rekor_entries::search::{SearchTerm, TermError, TermKind, search_terms};

/// The term openssl computed for `file`.
fn expected(file: &str) -> SearchTerm {
    let text = String::from_utf8(read("search_terms.txt")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{file} ")))
        .unwrap_or_else(|| panic!("{file} missing from search_terms.txt"));
    let mut parts = line.split(' ').skip(1);
    let kind = match parts.next().unwrap() {
        "digest" => TermKind::Digest,
        "key" => TermKind::Key,
        other => panic!("kind {other}"),
    };
    SearchTerm::parse(kind, parts.next().unwrap()).unwrap()
}

fn sorted(mut terms: Vec<SearchTerm>) -> Vec<SearchTerm> {
    terms.sort();
    terms.dedup();
    terms
}

#[test]
fn a_hashedrekord_is_found_by_its_digest_and_its_key() {
    let want = sorted(vec![expected("artifact.txt"), expected("p256.pub.der")]);
    assert_eq!(
        search_terms(&read("golden_hashedrekord_p256_pubkey.json")),
        want
    );
    // A certificate verifier gives its SubjectPublicKeyInfo's hash: the same key, so the same term.
    assert_eq!(
        search_terms(&read("golden_hashedrekord_p256_cert.json")),
        want
    );
}

#[test]
fn a_dsse_entry_is_found_by_its_payload_digest_and_every_signer() {
    let want = sorted(vec![
        expected("dsse_payload.json"),
        expected("p256.pub.der"),
        expected("p384.pub.der"),
        expected("rsa2048.pub.der"),
    ]);
    assert_eq!(
        search_terms(&read("golden_dsse_p256_p384_rsa2048.json")),
        want
    );
}

#[test]
fn certificate_emails_and_uris_are_identities_and_dns_names_are_not() {
    let golden = String::from_utf8(read("golden_hashedrekord_p256_cert.json")).unwrap();
    let p256_cert = STANDARD.encode(read("p256.crt.der"));
    assert!(golden.contains(&p256_cert));
    let body = golden.replace(&p256_cert, &STANDARD.encode(read("search.crt.der")));
    let want = sorted(vec![
        expected("artifact.txt"),
        expected("search.crt.der"),
        SearchTerm::identity("alice@example.com").unwrap(),
        SearchTerm::identity(
            "https://github.com/example/repo/.github/workflows/release.yml@refs/heads/main",
        )
        .unwrap(),
    ]);
    assert_eq!(search_terms(body.as_bytes()), want);
}

#[test]
fn what_does_not_decode_gives_no_terms_for_that_part() {
    assert!(search_terms(b"not json").is_empty());
    assert!(search_terms(br#"{"spec":{"somethingNew":{}}}"#).is_empty());
    // A certificate that does not parse loses its terms; the digest stays.
    let golden = String::from_utf8(read("golden_hashedrekord_p256_cert.json")).unwrap();
    let body = golden.replace(&STANDARD.encode(read("p256.crt.der")), "AAEC");
    assert_eq!(
        search_terms(body.as_bytes()),
        vec![expected("artifact.txt")]
    );
}

#[test]
fn queries_are_normalised_and_refused_precisely() {
    let lower = SearchTerm::digest(&format!("sha256:{}", "ab".repeat(32))).unwrap();
    let upper = SearchTerm::digest(&format!("SHA256:{}", "AB".repeat(32))).unwrap();
    assert_eq!(lower, upper);
    assert_eq!(lower.value(), format!("sha256:{}", "ab".repeat(32)));
    assert!(SearchTerm::digest(&format!("sha512:{}", "00".repeat(64))).is_ok());

    assert_eq!(
        SearchTerm::digest("e56c55a9").unwrap_err(),
        TermError::NotAlgorithmHex { kind: "digest" }
    );
    assert!(matches!(
        SearchTerm::digest(&format!("md5:{}", "00".repeat(16))).unwrap_err(),
        TermError::UnsupportedAlgorithm { .. }
    ));
    // Keys are SHA-256 of the SubjectPublicKeyInfo only.
    assert!(matches!(
        SearchTerm::key(&format!("sha384:{}", "00".repeat(48))).unwrap_err(),
        TermError::UnsupportedAlgorithm { .. }
    ));
    assert_eq!(
        SearchTerm::digest(&format!("sha256:{}", "0".repeat(63))).unwrap_err(),
        TermError::BadHex {
            kind: "digest",
            algorithm: "sha256",
            expected: 64
        }
    );
    assert!(SearchTerm::digest(&format!("sha256:{}g", "0".repeat(63))).is_err());
    assert_eq!(
        SearchTerm::identity("").unwrap_err(),
        TermError::BadIdentity
    );
    assert!(SearchTerm::identity("a\nb").is_err());
    assert!(SearchTerm::identity(&"a".repeat(1025)).is_err());
}

#[test]
fn index_keys_separate_kinds() {
    let value = format!("sha256:{}", "ab".repeat(32));
    let digest = SearchTerm::digest(&value).unwrap();
    let key = SearchTerm::key(&value).unwrap();
    assert_ne!(digest.index_key(), key.index_key());
    assert_eq!(
        digest.index_key(),
        SearchTerm::digest(&value.to_uppercase().replace("SHA", "sha"))
            .unwrap()
            .index_key()
    );
}

/// What a full decode of the certificate (x509-cert) gives: the terms as the index took them
/// before it walked only the certificate's structure.
fn fully_decoded_terms(der: &[u8]) -> Option<Vec<SearchTerm>> {
    use der::{Decode as _, Encode as _};
    use x509_cert::ext::pkix::SubjectAltName;
    use x509_cert::ext::pkix::name::GeneralName;

    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let tbs = cert.tbs_certificate();
    let spki = tbs.subject_public_key_info().to_der().unwrap();
    let mut terms = vec![
        SearchTerm::key(&format!(
            "sha256:{}",
            hex(&digest_of(SigningAlgorithm::EcdsaP256Sha256, &spki))
        ))
        .unwrap(),
    ];
    for extension in tbs.extensions().into_iter().flatten() {
        if extension.extn_id != <SubjectAltName as der::oid::AssociatedOid>::OID {
            continue;
        }
        let Ok(names) = SubjectAltName::from_der(extension.extn_value.as_bytes()) else {
            continue;
        };
        for name in names.0 {
            if let GeneralName::Rfc822Name(s) | GeneralName::UniformResourceIdentifier(s) = &name
                && let Ok(term) = SearchTerm::identity(s.as_str())
            {
                terms.push(term);
            }
        }
    }
    Some(terms)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn walking_a_certificate_finds_what_a_full_decode_finds() {
    use rekor_entries::search::certificate_search_terms;
    for file in ["p256.crt.der", "rsa2048.crt.der", "search.crt.der"] {
        let der = read(file);
        let full = fully_decoded_terms(&der).unwrap();
        assert_eq!(certificate_search_terms(&der), full, "{file}");
        // Cut short anywhere, or with anything after it, a certificate gives nothing.
        for len in 0..der.len() {
            assert!(
                certificate_search_terms(&der[..len]).is_empty(),
                "{file} cut at {len}"
            );
        }
        let mut longer = der.clone();
        longer.push(0);
        assert!(certificate_search_terms(&longer).is_empty(), "{file} + 1");
        // Any byte changed: whatever a full decode still accepts, the walk reads alike (the
        // walk checks structure, not every value, so it may accept more).
        let mut agreed = 0;
        for at in 0..der.len() {
            let mut changed = der.clone();
            changed[at] ^= 0x41;
            if let Some(full) = fully_decoded_terms(&changed) {
                assert_eq!(certificate_search_terms(&changed), full, "{file} byte {at}");
                agreed += 1;
            }
        }
        // Most changes fall in values a decode does not check (names, key bits, signature).
        assert!(agreed > der.len() / 2, "{file}: {agreed} of {}", der.len());
    }
}

#[test]
fn strings_written_with_escapes_give_the_same_terms() {
    // JSON may write any character as \uXXXX: a body written so carries the same values. A
    // canonical body has no escapes in these fields, but a followed log's bodies may.
    let golden = String::from_utf8(read("golden_hashedrekord_p256_cert.json")).unwrap();
    let escape_first_of = |text: &str, field: &str| -> String {
        let at = text.find(field).unwrap() + field.len();
        let c = text[at..].chars().next().unwrap();
        format!(
            "{}\\u{:04x}{}",
            &text[..at],
            u32::from(c),
            &text[at + c.len_utf8()..]
        )
    };
    let escaped = escape_first_of(
        &escape_first_of(&golden, r#""digest":""#),
        r#""rawBytes":""#,
    );
    assert_ne!(escaped, golden);
    assert_eq!(
        search_terms(escaped.as_bytes()),
        search_terms(golden.as_bytes())
    );
    assert_eq!(search_terms(escaped.as_bytes()).len(), 2);
}
