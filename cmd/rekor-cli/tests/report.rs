//! `rekor-cli report` against an in-process log with `--search-index` on loopback: one artifact
//! signed with a P-256 key, an Ed25519 key and an openssl-made certificate, reported in JSON and
//! Markdown with each signer named by a fingerprint computed here independently; a digest
//! nobody logged; `--require-complete`; and, through the tampering proxy, a flipped proof that
//! makes `search` and `report` exit 2 while the report still names the entry and the check.

#[path = "../../../crates/client/tests/support/mod.rs"]
mod support;
#[path = "../../../crates/client/tests/support/tamper.rs"]
mod tamper;

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, ensure};
use base64::Engine as _;
use ed25519_dalek::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use support::{ClientKey, TestServer};
use tamper::{Tamper, TamperProxy};

/// The result of one CLI run.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn exits(self, what: &str, code: i32) -> anyhow::Result<Run> {
        ensure!(
            self.code == Some(code),
            "{what}: expected exit {code}, got {:?}\nstdout: {}\nstderr: {}",
            self.code,
            self.stdout,
            self.stderr
        );
        Ok(self)
    }

    fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_str(&self.stdout).with_context(|| format!("not JSON: {}", self.stdout))
    }
}

/// Runs the CLI against `url` trusting `vkey`, off the async runtime.
async fn cli(url: &str, vkey: &str, args: &[&str]) -> anyhow::Result<Run> {
    let mut argv: Vec<String> = ["--url", url, "--vkey", vkey, "--timeout", "10s"]
        .iter()
        .map(|a| (*a).to_string())
        .collect();
    argv.extend(args.iter().map(|a| (*a).to_string()));
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_rekor-cli"))
            .args(&argv)
            .env_remove("REKOR_URL")
            .output()
    })
    .await??;
    Ok(Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Runs openssl in `dir`.
fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running openssl")?;
    ensure!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// The log index an `upload --out` file records (protojson leaves out a 0 and writes int64
/// as a string).
fn logged_index(file: &Path) -> anyhow::Result<u64> {
    let entry: Value = serde_json::from_slice(&std::fs::read(file)?)?;
    match &entry["logIndex"] {
        Value::Null => Ok(0),
        index => Ok(index.as_str().context("logIndex")?.parse::<u64>()?),
    }
}

/// The report's entry at `index`.
fn entry_at(report: &Value, index: u64) -> anyhow::Result<&Value> {
    report["entries"]
        .as_array()
        .context("entries")?
        .iter()
        .find(|e| e["logIndex"] == index)
        .with_context(|| format!("no entry {index} in {report}"))
}

fn result_of<'a>(entry: &'a Value, check: &str) -> &'a str {
    entry["checks"][check]["result"]
        .as_str()
        .unwrap_or("absent")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_names_every_signer_and_check() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let work = tempfile::tempdir()?;
    let server = TestServer::start_searchable(&dir.path().join("log")).await?;
    let (url, vkey) = (server.url(), server.vkey()?);
    let file = |name: &str| work.path().join(name);
    let artifact: &[u8] = b"release 1.0 of something worth a report";
    std::fs::write(file("artifact"), artifact)?;
    std::fs::write(file("other"), b"an artifact nobody asks about")?;
    let digest = format!("sha256:{}", sha256_hex(artifact));

    // Three signers of one artifact: P-256, Ed25519 (signing as Ed25519ph), and a certificate.
    let p256 = ClientKey::generate()?;
    std::fs::write(file("p256.pem"), p256.private_pem()?)?;
    let ed = ed25519_dalek::SigningKey::from_bytes(&[11; 32]);
    let ed_pem = der::pem::encode_string(
        "PRIVATE KEY",
        der::pem::LineEnding::LF,
        ed.to_pkcs8_der()?.as_bytes(),
    )?;
    std::fs::write(file("ed.pem"), ed_pem)?;
    for (key, out) in [("p256.pem", "e0.json"), ("ed.pem", "e1.json")] {
        cli(
            &url,
            &vkey,
            &[
                "upload",
                "--artifact",
                path(&file("artifact")),
                "--key",
                path(&file(key)),
                "--out",
                path(&file(out)),
            ],
        )
        .await?
        .exits(key, 0)?;
    }
    openssl(
        work.path(),
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "cert-key.pem",
            "-out",
            "cert.pem",
            "-subj",
            "/CN=report test",
            "-addext",
            "subjectAltName=email:alice@example.com,URI:https://ci.example.com/build",
            "-days",
            "2",
        ],
    )?;
    openssl(
        work.path(),
        &[
            "dgst",
            "-sha256",
            "-sign",
            "cert-key.pem",
            "-out",
            "artifact.sig",
            "artifact",
        ],
    )?;
    openssl(
        work.path(),
        &[
            "x509",
            "-in",
            "cert.pem",
            "-pubkey",
            "-noout",
            "-out",
            "cert-pub.pem",
        ],
    )?;
    openssl(
        work.path(),
        &[
            "pkey",
            "-pubin",
            "-in",
            "cert-pub.pem",
            "-outform",
            "DER",
            "-out",
            "cert-pub.der",
        ],
    )?;
    cli(
        &url,
        &vkey,
        &[
            "upload",
            "--artifact",
            path(&file("artifact")),
            "--signature",
            path(&file("artifact.sig")),
            "--certificate",
            path(&file("cert.pem")),
            "--out",
            path(&file("e2.json")),
        ],
    )
    .await?
    .exits("upload with a certificate", 0)?;
    // Something else, which the report must leave out.
    cli(
        &url,
        &vkey,
        &[
            "upload",
            "--artifact",
            path(&file("other")),
            "--key",
            path(&file("p256.pem")),
        ],
    )
    .await?
    .exits("upload other", 0)?;

    let indices = [
        logged_index(&file("e0.json"))?,
        logged_index(&file("e1.json"))?,
        logged_index(&file("e2.json"))?,
    ];
    let fingerprints = [
        format!("sha256:{}", sha256_hex(&p256.public_der()?)),
        format!(
            "sha256:{}",
            sha256_hex(ed.verifying_key().to_public_key_der()?.as_bytes())
        ),
        format!(
            "sha256:{}",
            sha256_hex(&std::fs::read(file("cert-pub.der"))?)
        ),
    ];

    // `search --artifact` asks for one digest of the file: SHA-256 by default (the P-256 and
    // certificate entries), SHA-512 for the Ed25519ph one, SHA-384 for none of them.
    for (algorithm, want) in [
        (None, vec![indices[0], indices[2]]),
        (Some("sha512"), vec![indices[1]]),
        (Some("sha384"), vec![]),
    ] {
        let artifact_path = file("artifact");
        let mut args = vec!["search", "--artifact", path(&artifact_path), "--json"];
        args.extend(
            algorithm
                .map(|a| ["--artifact-algorithm", a])
                .into_iter()
                .flatten(),
        );
        let answer = cli(&url, &vkey, &args)
            .await?
            .exits("search --artifact", 0)?
            .json()?;
        let found = answer["entries"]
            .as_array()
            .context("entries")?
            .iter()
            .map(|e| e["logIndex"].as_str().unwrap_or_default().parse::<u64>())
            .collect::<Result<Vec<_>, _>>()?;
        ensure!(found == want, "{algorithm:?}: {found:?} != {want:?}");
    }

    // JSON.
    let run = cli(
        &url,
        &vkey,
        &[
            "report",
            "--artifact",
            path(&file("artifact")),
            "--format",
            "json",
        ],
    )
    .await?
    .exits("report --format json", 0)?;
    let report = run.json()?;
    ensure!(report["schemaVersion"] == 1, "{report}");
    ensure!(report["artifact"]["digest"] == digest.as_str(), "{report}");
    ensure!(report["log"]["origin"] == support::ORIGIN, "{report}");
    ensure!(report["checkpoint"]["treeSize"] == 4, "{report}");
    ensure!(report["search"]["result"] == "pass", "{report}");
    ensure!(
        report["completeness"]["result"] == "pass"
            && report["completeness"]["reason"] == "all 3 searches passed",
        "{report}"
    );
    let listed: Vec<u64> = report["entries"]
        .as_array()
        .context("entries")?
        .iter()
        .filter_map(|e| e["logIndex"].as_u64())
        .collect();
    ensure!(listed == indices, "{listed:?} != {indices:?}");
    for (index, fingerprint) in indices.iter().zip(&fingerprints) {
        let entry = entry_at(&report, *index)?;
        ensure!(entry["kind"] == "hashedrekord", "{entry}");
        ensure!(
            entry["signers"][0]["keyFingerprint"] == fingerprint.as_str(),
            "entry {index}: {entry}"
        );
        ensure!(entry["integratedTime"].is_null(), "{entry}");
        ensure!(
            entry["provenInto"]["origin"] == support::ORIGIN
                && entry["provenInto"]["treeSize"] == 4,
            "{entry}"
        );
        for check in ["digest", "signature", "inclusion", "checkpointSignature"] {
            ensure!(
                result_of(entry, check) == "pass",
                "entry {index} {check}: {entry}"
            );
        }
        ensure!(result_of(entry, "completeness") == "pass");
    }
    ensure!(entry_at(&report, indices[0])?["signers"][0]["type"] == "publicKey");
    // Ed25519ph signs the SHA-512 digest, so that entry is found by the artifact's SHA-512.
    let sha512 = format!("sha512:{}", hex::encode(sha2::Sha512::digest(artifact)));
    ensure!(
        entry_at(&report, indices[1])?["foundBy"] == sha512.as_str(),
        "{report}"
    );
    ensure!(entry_at(&report, indices[0])?["foundBy"] == digest.as_str());
    ensure!(
        report["searches"].as_array().map(Vec::len) == Some(3)
            && report["artifact"]["digests"][2] == sha512.as_str(),
        "{report}"
    );
    let certificate = &entry_at(&report, indices[2])?["signers"][0];
    ensure!(certificate["type"] == "certificate", "{certificate}");
    ensure!(
        certificate["subjectAlternativeNames"]
            == serde_json::json!(["alice@example.com", "https://ci.example.com/build"]),
        "{certificate}"
    );
    ensure!(certificate["issuer"] == "CN=report test", "{certificate}");
    ensure!(
        report["summary"]["result"] == "pass"
            && report["summary"]["entries"] == 3
            && report["summary"]["failed"] == 0,
        "{report}"
    );

    // Markdown, to a file.
    cli(
        &url,
        &vkey,
        &[
            "report",
            "--artifact",
            path(&file("artifact")),
            "--output",
            path(&file("report.md")),
        ],
    )
    .await?
    .exits("report --format markdown", 0)?;
    let markdown = std::fs::read_to_string(file("report.md"))?;
    for expected in [
        format!("# Provenance report for {digest}"),
        format!("- **Digests searched:** `{digest}`, `sha384:"),
        format!("- **Log:** {} (", support::ORIGIN),
        "- **Checkpoint:** tree size 4, root hash `".to_string(),
        "- **Completeness:** pass".to_string(),
        format!(
            "| {} | hashedrekord/0.0.2 | key `{}` | localhost, size 4, root `",
            indices[0], fingerprints[0]
        ),
        "| pass | pass | pass | pass | pass |".to_string(),
        "SAN alice@example.com, https://ci.example.com/build, issuer CN=report test".to_string(),
        format!(
            "**Summary:** 3 entries for {digest} (also searched by its sha384 and sha512 digests): "
        ),
    ] {
        ensure!(markdown.contains(&expected), "{expected:?} in\n{markdown}");
    }

    // By digest alone: the file is not read, and the report says so.
    let run = cli(
        &url,
        &vkey,
        &["report", "--digest", &digest, "--format", "json"],
    )
    .await?
    .exits("report --digest", 0)?;
    let by_digest = run.json()?;
    let first = entry_at(&by_digest, indices[0])?;
    ensure!(result_of(first, "digest") == "pass", "{first}");
    ensure!(
        first["checks"]["digest"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("the artifact itself was not read")),
        "{first}"
    );
    ensure!(by_digest["artifact"]["path"].is_null());

    // --require-complete: the log signs commitments and the CLI reads the entries after the
    // latest, so completeness is proven and the report passes.
    let run = cli(
        &url,
        &vkey,
        &[
            "report",
            "--artifact",
            path(&file("artifact")),
            "--format",
            "json",
            "--require-complete",
        ],
    )
    .await?
    .exits("report --require-complete", 0)?;
    let strict = run.json()?;
    ensure!(strict["completeness"]["result"] == "pass", "{strict}");
    ensure!(strict["summary"]["result"] == "pass", "{strict}");

    // A digest nobody logged: a report that says none were found, exit 0.
    let nothing = format!("sha256:{}", "00".repeat(32));
    let run = cli(
        &url,
        &vkey,
        &["report", "--digest", &nothing, "--format", "json"],
    )
    .await?
    .exits("report for an unknown digest", 0)?;
    let empty = run.json()?;
    ensure!(
        empty["entries"].as_array().is_some_and(Vec::is_empty),
        "{empty}"
    );
    ensure!(
        empty["summary"]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with(&format!("No entries found for {nothing}"))),
        "{empty}"
    );
    let run = cli(&url, &vkey, &["report", "--digest", &nothing])
        .await?
        .exits("markdown report for an unknown digest", 0)?;
    ensure!(run.stdout.contains("No entries found."), "{}", run.stdout);

    // A malformed digest is a usage error.
    cli(&url, &vkey, &["report", "--digest", "sha256:abc"])
        .await?
        .exits("a malformed digest", 1)?;
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_answer_fails_search_and_report() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let work = tempfile::tempdir()?;
    let server = TestServer::start_searchable(&dir.path().join("log")).await?;
    let vkey = server.vkey()?;
    let verifier = server.verifier()?;
    let client = rekor_client::Client::new(&server.url(), Default::default())?;
    let key = ClientKey::generate()?;
    let artifact: &[u8] = b"an artifact whose log answer gets tampered with";
    let artifact_file = work.path().join("artifact");
    std::fs::write(&artifact_file, artifact)?;
    // ECDSA signatures are randomized: two signatures of one artifact are two entries.
    for bytes in [artifact, b"unrelated".as_slice(), artifact] {
        client
            .submit_verified(&key.request(bytes)?, &verifier)
            .await?;
    }

    // The proxy flips a proof hash of entry 2 in every search answer.
    let proxy = TamperProxy::start(vec![server.url()]).await?;
    proxy.set(Tamper::search(|_, mut answer| {
        if let Some(list) = answer["entries"].as_array_mut() {
            for entry in list.iter_mut().filter(|e| e["logIndex"] == "2") {
                let hash = &mut entry["inclusionProof"]["hashes"][0];
                let mut bytes = base64::engine::general_purpose::STANDARD
                    .decode(hash.as_str().unwrap_or_default())
                    .unwrap_or_default();
                if let Some(first) = bytes.first_mut() {
                    *first ^= 0x80;
                }
                *hash = Value::from(base64::engine::general_purpose::STANDARD.encode(bytes));
            }
        }
        answer
    }));
    let url = proxy.url().to_string();
    let artifact_arg = path(&artifact_file);

    let run = cli(&url, &vkey, &["search", "--artifact", artifact_arg])
        .await?
        .exits("search through the proxy", 2)?;
    ensure!(
        run.stderr
            .contains("inclusion proof of entry 2 in tree 3 fails"),
        "{}",
        run.stderr
    );

    let run = cli(
        &url,
        &vkey,
        &["report", "--artifact", artifact_arg, "--format", "json"],
    )
    .await?
    .exits("report through the proxy", 2)?;
    ensure!(
        run.stderr.contains("the report records 2 failed checks"),
        "{}",
        run.stderr
    );
    let report = run.json()?;
    ensure!(report["search"]["result"] == "fail", "{report}");
    ensure!(
        report["search"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("inclusion proof of entry 2 in tree 3 fails")),
        "{report}"
    );
    let honest = entry_at(&report, 0)?;
    let tampered = entry_at(&report, 2)?;
    for check in ["digest", "signature", "inclusion", "checkpointSignature"] {
        ensure!(
            result_of(honest, check) == "pass",
            "entry 0 {check}: {honest}"
        );
    }
    ensure!(result_of(tampered, "inclusion") == "fail", "{tampered}");
    for check in ["digest", "signature", "checkpointSignature"] {
        ensure!(
            result_of(tampered, check) == "pass",
            "entry 2 {check}: {tampered}"
        );
    }
    ensure!(report["summary"]["result"] == "fail", "{report}");
    ensure!(report["checkpoint"]["treeSize"] == 3, "{report}");

    // The Markdown report is written too, naming the entry and the check.
    let out = work.path().join("report.md");
    cli(
        &url,
        &vkey,
        &["report", "--artifact", artifact_arg, "--output", path(&out)],
    )
    .await?
    .exits("markdown report through the proxy", 2)?;
    let markdown = std::fs::read_to_string(&out)?;
    ensure!(
        markdown.contains("- entry 2, inclusion: fail: inclusion proof of entry 2 in tree 3 fails"),
        "{markdown}"
    );
    ensure!(markdown.contains("Result: fail."), "{markdown}");

    // Without the proxy the same report passes.
    cli(
        &server.url(),
        &vkey,
        &["report", "--artifact", artifact_arg],
    )
    .await?
    .exits("report from the log itself", 0)?;
    drop(proxy);
    server.stop().await;
    Ok(())
}
