//! Witness policies: the text format rekor-tiles reads with `--witness-policy-path`
//! (c2sp.org/tlog-policy, as parsed by transparency-dev/tessera), and quorum evaluation.
//!
//! ```text
//! # comment lines, blank lines, and items starting with `#` are ignored
//! log <vkey> [<url>]                 accepted and ignored: the log knows itself
//! witness <name> <vkey> <url>        vkey of type 0x04 (cosignature/v1); url is the
//!                                    submission prefix, requests go to <url>/add-checkpoint
//! group <name> any|all|<k> <member>...
//! quorum <name>|none                 exactly one
//! ```
//!
//! Items are separated by spaces and tabs. Names are case-sensitive and share one namespace;
//! group members and the quorum must be defined on earlier lines; a name is a group member at
//! most once; `1 <= k <= members`; no two witnesses share a key. A witness URL is optional in
//! the spec but required here: a log must reach every witness it names.

use std::collections::HashMap;

use rekor_note::CosignatureVerifier;

use crate::WitnessError;

/// Largest policy file accepted, in bytes.
pub const MAX_POLICY_SIZE: usize = 1 << 20;

/// Most witnesses plus groups in one policy (the spec asks for at least 32 of each).
pub const MAX_POLICY_ENTRIES: usize = 1024;

/// One witness of a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyWitness {
    name: String,
    verifier: CosignatureVerifier,
    url: String,
    line: usize,
}

impl PolicyWitness {
    /// Its name in the policy (which need not be its key name).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier of its Ed25519 `cosignature/v1` signatures.
    #[must_use]
    pub fn verifier(&self) -> &CosignatureVerifier {
        &self.verifier
    }

    /// The submission prefix, as written in the policy.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `<submission prefix>/add-checkpoint`, with one slash between them.
    #[must_use]
    pub fn add_checkpoint_url(&self) -> String {
        format!("{}/add-checkpoint", self.url.trim_end_matches('/'))
    }

    /// The policy line that defines it.
    #[must_use]
    pub fn line(&self) -> usize {
        self.line
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Component {
    Witness(usize),
    Group(usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Group {
    name: String,
    threshold: usize,
    members: Vec<Component>,
}

/// A parsed witness policy: its witnesses, groups and quorum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    witnesses: Vec<PolicyWitness>,
    groups: Vec<Group>,
    /// `None` for `quorum none`.
    quorum: Option<Component>,
}

impl Policy {
    /// Parses a policy file.
    ///
    /// # Errors
    ///
    /// The policy variants of [`WitnessError`], each naming the line and rule that failed.
    pub fn parse(text: &[u8]) -> Result<Policy, WitnessError> {
        if text.len() > MAX_POLICY_SIZE {
            return Err(WitnessError::PolicyTooLarge {
                size: text.len(),
                max: MAX_POLICY_SIZE,
            });
        }
        let mut parser = Parser::default();
        for (index, raw) in text.split(|&b| b == b'\n').enumerate() {
            let line = index + 1;
            // Tessera reads lines with Go's bufio scanner, which drops a CR before the LF.
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if let Some(&byte) = raw.iter().find(|&&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                return Err(WitnessError::PolicyControlCharacter { line, byte });
            }
            let raw = std::str::from_utf8(raw).map_err(|_| WitnessError::PolicyNotUtf8 { line })?;
            let fields: Vec<&str> = raw
                .split([' ', '\t'])
                .filter(|f| !f.is_empty())
                .take_while(|f| !f.starts_with('#'))
                .collect();
            parser.line(line, &fields)?;
        }
        parser.finish()
    }

    /// Every witness the policy defines, in order.
    #[must_use]
    pub fn witnesses(&self) -> &[PolicyWitness] {
        &self.witnesses
    }

    /// The witnesses that can count towards the quorum: the ones to ask for cosignatures.
    /// Empty for `quorum none`.
    #[must_use]
    pub fn quorum_witnesses(&self) -> Vec<&PolicyWitness> {
        let mut reachable = vec![false; self.witnesses.len()];
        let mut stack: Vec<Component> = self.quorum.into_iter().collect();
        while let Some(component) = stack.pop() {
            match component {
                Component::Witness(w) => {
                    if let Some(slot) = reachable.get_mut(w) {
                        *slot = true;
                    }
                }
                Component::Group(g) => {
                    if let Some(group) = self.groups.get(g) {
                        stack.extend(group.members.iter().copied());
                    }
                }
            }
        }
        self.witnesses
            .iter()
            .zip(reachable)
            .filter_map(|(w, r)| r.then_some(w))
            .collect()
    }

    /// The quorum's name (`none` when no cosignature is required).
    #[must_use]
    pub fn quorum_name(&self) -> &str {
        match self.quorum {
            None => "none",
            Some(Component::Witness(w)) => self.witnesses.get(w).map_or("", |w| w.name.as_str()),
            Some(Component::Group(g)) => self.groups.get(g).map_or("", |g| g.name.as_str()),
        }
    }

    /// Whether a checkpoint cosigned by the witnesses named `cosigned` (policy names, each
    /// with a verified cosignature) satisfies the quorum. Unknown names are ignored.
    #[must_use]
    pub fn satisfied<'a>(&self, cosigned: impl IntoIterator<Item = &'a str>) -> bool {
        let mut signed = vec![false; self.witnesses.len()];
        for name in cosigned {
            if let Some(index) = self.witnesses.iter().position(|w| w.name == name)
                && let Some(slot) = signed.get_mut(index)
            {
                *slot = true;
            }
        }
        // Groups name only earlier groups, so one pass in definition order settles them all.
        let mut groups = Vec::with_capacity(self.groups.len());
        for group in &self.groups {
            let count = group
                .members
                .iter()
                .filter(|&&m| holds(m, &signed, &groups))
                .count();
            groups.push(count >= group.threshold);
        }
        self.quorum.is_none_or(|q| holds(q, &signed, &groups))
    }
}

fn holds(component: Component, witnesses: &[bool], groups: &[bool]) -> bool {
    match component {
        Component::Witness(w) => witnesses.get(w).copied().unwrap_or(false),
        Component::Group(g) => groups.get(g).copied().unwrap_or(false),
    }
}

#[derive(Default)]
struct Parser {
    witnesses: Vec<PolicyWitness>,
    groups: Vec<Group>,
    /// Each defined name, what it is and its line.
    names: HashMap<String, (Component, usize)>,
    /// Names listed as group members, with the line that listed them.
    members: HashMap<String, usize>,
    /// The quorum and its line; `Some((None, _))` for `quorum none`.
    quorum: Option<(Option<Component>, usize)>,
}

impl Parser {
    fn line(&mut self, line: usize, fields: &[&str]) -> Result<(), WitnessError> {
        let Some((&keyword, args)) = fields.split_first() else {
            return Ok(());
        };
        match keyword {
            "log" => {
                if args.is_empty() || args.len() > 2 {
                    return Err(field_count(line, "log", "a vkey and an optional URL", args));
                }
                Ok(())
            }
            "witness" => self.witness(line, args),
            "group" => self.group(line, args),
            "quorum" => self.quorum(line, args),
            other => Err(WitnessError::UnknownKeyword {
                line,
                keyword: other.to_string(),
            }),
        }
    }

    fn define(
        &mut self,
        line: usize,
        name: &str,
        component: Component,
    ) -> Result<(), WitnessError> {
        if name == "none" {
            return Err(WitnessError::ReservedName { line });
        }
        if let Some(&(_, first_line)) = self.names.get(name) {
            return Err(WitnessError::DuplicateName {
                line,
                name: name.to_string(),
                first_line,
            });
        }
        if self.names.len() >= MAX_POLICY_ENTRIES {
            return Err(WitnessError::TooManyEntries {
                line,
                max: MAX_POLICY_ENTRIES,
            });
        }
        self.names.insert(name.to_string(), (component, line));
        Ok(())
    }

    fn witness(&mut self, line: usize, args: &[&str]) -> Result<(), WitnessError> {
        let (name, vkey, url) = match *args {
            [name, vkey, url] => (name, vkey, url),
            [name, _] => {
                return Err(WitnessError::MissingWitnessUrl {
                    line,
                    name: name.to_string(),
                });
            }
            _ => {
                return Err(field_count(
                    line,
                    "witness",
                    "a name, a vkey and a URL",
                    args,
                ));
            }
        };
        let verifier =
            CosignatureVerifier::from_vkey(vkey).map_err(|source| WitnessError::WitnessKey {
                line,
                name: name.to_string(),
                source,
            })?;
        if let Some(other) = self
            .witnesses
            .iter()
            .find(|w| w.verifier.public_key() == verifier.public_key())
        {
            return Err(WitnessError::DuplicateWitnessKey {
                line,
                name: name.to_string(),
                other: other.name.clone(),
            });
        }
        if !is_http_url(url) {
            return Err(WitnessError::WitnessUrl {
                line,
                name: name.to_string(),
                url: url.to_string(),
            });
        }
        self.define(line, name, Component::Witness(self.witnesses.len()))?;
        self.witnesses.push(PolicyWitness {
            name: name.to_string(),
            verifier,
            url: url.to_string(),
            line,
        });
        Ok(())
    }

    fn group(&mut self, line: usize, args: &[&str]) -> Result<(), WitnessError> {
        let [name, threshold, members @ ..] = args else {
            return Err(field_count(
                line,
                "group",
                "a name, a threshold and at least one member",
                args,
            ));
        };
        if members.is_empty() {
            return Err(field_count(
                line,
                "group",
                "a name, a threshold and at least one member",
                args,
            ));
        }
        let threshold = match *threshold {
            "any" => 1,
            "all" => members.len(),
            number => {
                let k = parse_decimal(number).ok_or_else(|| WitnessError::Threshold {
                    line,
                    group: name.to_string(),
                    threshold: number.to_string(),
                })?;
                match usize::try_from(k) {
                    Ok(k) if (1..=members.len()).contains(&k) => k,
                    _ => {
                        return Err(WitnessError::ThresholdRange {
                            line,
                            group: name.to_string(),
                            threshold: k,
                            members: members.len(),
                        });
                    }
                }
            }
        };
        let mut resolved = Vec::with_capacity(members.len());
        for &member in members {
            let &(component, _) =
                self.names
                    .get(member)
                    .ok_or_else(|| WitnessError::Undefined {
                        line,
                        name: member.to_string(),
                    })?;
            if let Some(&first_line) = self.members.get(member) {
                return Err(WitnessError::RepeatedMember {
                    line,
                    name: member.to_string(),
                    first_line,
                });
            }
            self.members.insert(member.to_string(), line);
            resolved.push(component);
        }
        self.define(line, name, Component::Group(self.groups.len()))?;
        self.groups.push(Group {
            name: name.to_string(),
            threshold,
            members: resolved,
        });
        Ok(())
    }

    fn quorum(&mut self, line: usize, args: &[&str]) -> Result<(), WitnessError> {
        let [name] = *args else {
            return Err(field_count(line, "quorum", "one name", args));
        };
        if let Some((_, first_line)) = self.quorum {
            return Err(WitnessError::SecondQuorum { line, first_line });
        }
        let component = if name == "none" {
            None
        } else {
            let &(component, _) = self
                .names
                .get(name)
                .ok_or_else(|| WitnessError::Undefined {
                    line,
                    name: name.to_string(),
                })?;
            Some(component)
        };
        self.quorum = Some((component, line));
        Ok(())
    }

    fn finish(self) -> Result<Policy, WitnessError> {
        let (quorum, _) = self.quorum.ok_or(WitnessError::NoQuorum)?;
        Ok(Policy {
            witnesses: self.witnesses,
            groups: self.groups,
            quorum,
        })
    }
}

fn field_count(
    line: usize,
    keyword: &'static str,
    expected: &'static str,
    args: &[&str],
) -> WitnessError {
    WitnessError::FieldCount {
        line,
        keyword,
        expected,
        found: args.len(),
    }
}

/// `http://` or `https://`, a non-empty host part, no query and no fragment.
fn is_http_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or("");
    !host.is_empty() && !url.contains(['?', '#'])
}

/// A decimal without sign or leading zeros (`0` itself is allowed), as tlog specs write sizes.
pub(crate) fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty()
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use rekor_note::{CosignatureSigner, KeyName, NoteError};

    use super::*;

    fn vkey(seed: u8, name: &str) -> String {
        CosignatureSigner::from_ed25519_seed([seed; 32], KeyName::new(name).unwrap())
            .verifier()
            .to_vkey()
    }

    fn parse(text: &str) -> Result<Policy, WitnessError> {
        Policy::parse(text.as_bytes())
    }

    fn two_level() -> String {
        format!(
            "# Two organisations.\n\
             log example.com/log+01234567+AQ==\n\
             \n\
             witness X1 {} https://x1.example/\n\
             witness X2 {} https://x2.example/w\n\
             witness X3 {} http://x3.example:8080\n\
             group X-witnesses 2 X1 X2 X3\n\
             \t  # indented comment\n\
             witness Y1 {} https://y1.example\n\
             witness\tY2\t{}   https://y2.example   # trailing comment\n\
             group Y-witnesses any Y1 Y2\n\
             group X-and-Y all X-witnesses Y-witnesses\n\
             quorum X-and-Y\n",
            vkey(1, "x1.example"),
            vkey(2, "x2.example"),
            vkey(3, "x3.example"),
            vkey(4, "y1.example"),
            vkey(5, "y2.example"),
        )
    }

    #[test]
    fn the_spec_example_parses_and_evaluates() {
        let policy = parse(&two_level()).unwrap();
        let names: Vec<&str> = policy.witnesses().iter().map(PolicyWitness::name).collect();
        assert_eq!(names, ["X1", "X2", "X3", "Y1", "Y2"]);
        assert_eq!(policy.quorum_name(), "X-and-Y");
        assert_eq!(policy.quorum_witnesses().len(), 5);
        assert_eq!(policy.witnesses()[4].line(), 10);

        assert!(!policy.satisfied([]));
        assert!(!policy.satisfied(["X1", "X2"]));
        assert!(!policy.satisfied(["X1", "Y1"]));
        assert!(policy.satisfied(["X1", "X3", "Y2"]));
        assert!(policy.satisfied(["X1", "X2", "X3", "Y1", "Y2"]));
        // Group names and unknown names do not count as cosigners.
        assert!(!policy.satisfied(["X-witnesses", "Y-witnesses", "X-and-Y", "nobody"]));
    }

    #[test]
    fn urls_join_with_one_slash() {
        let policy = parse(&two_level()).unwrap();
        let urls: Vec<String> = policy
            .witnesses()
            .iter()
            .map(PolicyWitness::add_checkpoint_url)
            .collect();
        assert_eq!(
            urls,
            [
                "https://x1.example/add-checkpoint",
                "https://x2.example/w/add-checkpoint",
                "http://x3.example:8080/add-checkpoint",
                "https://y1.example/add-checkpoint",
                "https://y2.example/add-checkpoint",
            ]
        );
    }

    #[test]
    fn a_single_witness_quorum_and_quorum_none() {
        let text = format!(
            "witness A {} https://a.example\nwitness B {} https://b.example\nquorum A\n",
            vkey(1, "a"),
            vkey(2, "b")
        );
        let policy = parse(&text).unwrap();
        assert!(policy.satisfied(["A"]));
        assert!(!policy.satisfied(["B"]));
        let asked: Vec<&str> = policy.quorum_witnesses().iter().map(|w| w.name()).collect();
        assert_eq!(asked, ["A"], "B cannot count towards the quorum");

        let none = parse(&format!(
            "witness A {} https://a.example\nquorum none\n",
            vkey(1, "a")
        ))
        .unwrap();
        assert!(none.satisfied([]));
        assert!(none.quorum_witnesses().is_empty());
        assert_eq!(none.quorum_name(), "none");
        // CRLF line endings, as Go's line scanner accepts them.
        assert!(parse("quorum none\r\n").is_ok());
    }

    #[test]
    fn errors_name_the_line_and_rule() {
        let a = vkey(1, "a");
        let b = vkey(2, "b");
        let cases: Vec<(String, WitnessError)> = vec![
            ("# nothing\n".into(), WitnessError::NoQuorum),
            (
                "\nwitnesses A x y\n".into(),
                WitnessError::UnknownKeyword {
                    line: 2,
                    keyword: "witnesses".into(),
                },
            ),
            (
                format!("witness A {a}\nquorum A\n"),
                WitnessError::MissingWitnessUrl {
                    line: 1,
                    name: "A".into(),
                },
            ),
            (
                format!("witness A {a} https://a extra\n"),
                WitnessError::FieldCount {
                    line: 1,
                    keyword: "witness",
                    expected: "a name, a vkey and a URL",
                    found: 4,
                },
            ),
            (
                format!("witness none {a} https://a\n"),
                WitnessError::ReservedName { line: 1 },
            ),
            (
                format!("witness A {a} https://a\nwitness A {b} https://b\n"),
                WitnessError::DuplicateName {
                    line: 2,
                    name: "A".into(),
                    first_line: 1,
                },
            ),
            (
                format!(
                    "witness A {a} https://a\nwitness B {} https://b\n",
                    vkey(1, "b")
                ),
                WitnessError::DuplicateWitnessKey {
                    line: 2,
                    name: "B".into(),
                    other: "A".into(),
                },
            ),
            (
                format!("witness A {a} ftp://a\n"),
                WitnessError::WitnessUrl {
                    line: 1,
                    name: "A".into(),
                    url: "ftp://a".into(),
                },
            ),
            (
                format!("witness A {a} https://a/?x=1\n"),
                WitnessError::WitnessUrl {
                    line: 1,
                    name: "A".into(),
                    url: "https://a/?x=1".into(),
                },
            ),
            (
                format!("witness A {a} https://a\ngroup G most A\n"),
                WitnessError::Threshold {
                    line: 2,
                    group: "G".into(),
                    threshold: "most".into(),
                },
            ),
            (
                format!("witness A {a} https://a\ngroup G 0 A\n"),
                WitnessError::ThresholdRange {
                    line: 2,
                    group: "G".into(),
                    threshold: 0,
                    members: 1,
                },
            ),
            (
                format!("witness A {a} https://a\ngroup G 2 A\n"),
                WitnessError::ThresholdRange {
                    line: 2,
                    group: "G".into(),
                    threshold: 2,
                    members: 1,
                },
            ),
            (
                format!("witness A {a} https://a\ngroup G 01 A\n"),
                WitnessError::Threshold {
                    line: 2,
                    group: "G".into(),
                    threshold: "01".into(),
                },
            ),
            (
                format!("witness A {a} https://a\ngroup G any\n"),
                WitnessError::FieldCount {
                    line: 2,
                    keyword: "group",
                    expected: "a name, a threshold and at least one member",
                    found: 2,
                },
            ),
            (
                format!("group G any A\nwitness A {a} https://a\n"),
                WitnessError::Undefined {
                    line: 1,
                    name: "A".into(),
                },
            ),
            (
                format!("witness A {a} https://a\ngroup G any A\ngroup H any A\n"),
                WitnessError::RepeatedMember {
                    line: 3,
                    name: "A".into(),
                    first_line: 2,
                },
            ),
            (
                "quorum X\n".into(),
                WitnessError::Undefined {
                    line: 1,
                    name: "X".into(),
                },
            ),
            (
                "quorum none\nquorum none\n".into(),
                WitnessError::SecondQuorum {
                    line: 2,
                    first_line: 1,
                },
            ),
            (
                "quorum\n".into(),
                WitnessError::FieldCount {
                    line: 1,
                    keyword: "quorum",
                    expected: "one name",
                    found: 0,
                },
            ),
            (
                "quorum none\n\u{1}\n".into(),
                WitnessError::PolicyControlCharacter { line: 2, byte: 1 },
            ),
            (
                "log\nquorum none\n".into(),
                WitnessError::FieldCount {
                    line: 1,
                    keyword: "log",
                    expected: "a vkey and an optional URL",
                    found: 0,
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(&text), Err(expected), "policy {text:?}");
        }
    }

    #[test]
    fn witness_keys_must_be_cosignature_v1() {
        // A plain Ed25519 note vkey (type 0x01) is a log key, not a witness key.
        let log_key = rekor_note::LogSigner::from_ed25519_seed([7; 32], KeyName::new("w").unwrap())
            .verifier()
            .to_vkey()
            .unwrap();
        let error = parse(&format!("witness W {log_key} https://w\n")).unwrap_err();
        assert_eq!(
            error,
            WitnessError::WitnessKey {
                line: 1,
                name: "W".into(),
                source: NoteError::UnsupportedVkeyType { sig_type: 1 },
            }
        );
        assert!(matches!(
            parse("witness W not-a-vkey https://w\n"),
            Err(WitnessError::WitnessKey { line: 1, .. })
        ));
    }

    #[test]
    fn size_limit_and_non_utf8() {
        let big = vec![b'#'; MAX_POLICY_SIZE + 1];
        assert!(matches!(
            Policy::parse(&big),
            Err(WitnessError::PolicyTooLarge { .. })
        ));
        assert_eq!(
            Policy::parse(b"quorum none\n# \xff\n"),
            Err(WitnessError::PolicyNotUtf8 { line: 2 })
        );
    }

    #[test]
    fn decimals_have_no_leading_zeros() {
        assert_eq!(parse_decimal("0"), Some(0));
        assert_eq!(parse_decimal("20852014"), Some(20_852_014));
        assert_eq!(parse_decimal("007"), None);
        assert_eq!(parse_decimal("+7"), None);
        assert_eq!(parse_decimal(""), None);
        assert_eq!(parse_decimal("18446744073709551616"), None);
    }
}
