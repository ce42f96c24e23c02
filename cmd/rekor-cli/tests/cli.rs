//! The `rekor-cli` binary against in-process servers on loopback: upload (three ways) and the
//! library's submit, verify, get, checkpoint, consistency; a full audit of a 10,000-entry log and
//! tampered tiles named exactly; monitor across growth and against forged checkpoints; tampered
//! entries and the wrong key refused.

#[path = "../../../crates/client/tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Output;

use anyhow::{Context as _, ensure};
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use rekor_client::{Client, ClientOptions};
use rekor_note::{Checkpoint, KeyName, LogSigner, Origin};
use support::{ClientKey, TestServer};

/// The result of one CLI run.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self, what: &str) -> anyhow::Result<Run> {
        ensure!(
            self.code == Some(0),
            "{what}: exit {:?}\nstdout: {}\nstderr: {}",
            self.code,
            self.stdout,
            self.stderr
        );
        Ok(self)
    }

    /// Fails unless the run exited with `code` and said `message` on stderr, on one line.
    fn fails(self, what: &str, code: i32, message: &str) -> anyhow::Result<Run> {
        ensure!(
            self.code == Some(code) && self.stderr.contains(message),
            "{what}: expected exit {code} saying {message:?}, got exit {:?}\nstdout: {}\nstderr: {}",
            self.code,
            self.stdout,
            self.stderr
        );
        let error_lines = self.stderr.lines().filter(|l| l.contains("error:")).count();
        ensure!(
            error_lines == 1,
            "{what}: error is not one line: {}",
            self.stderr
        );
        Ok(self)
    }
}

/// Runs the CLI against `url`, trusting `vkey`, off the async runtime.
async fn cli(url: &str, vkey: &str, args: &[&str]) -> anyhow::Result<Run> {
    let mut argv = vec!["--vkey", vkey];
    argv.extend_from_slice(args);
    cli_trusting(url, &argv).await
}

/// Runs the CLI against `url` with the trust flags in `args`.
async fn cli_trusting(url: &str, args: &[&str]) -> anyhow::Result<Run> {
    let mut argv: Vec<String> = vec![
        "--url".into(),
        url.into(),
        "--timeout".into(),
        "10s".into(),
        "--retries".into(),
        "1".into(),
    ];
    argv.extend(args.iter().map(|a| (*a).to_string()));
    let output: Output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_rekor-cli"))
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

fn client(url: &str) -> anyhow::Result<Client> {
    Ok(Client::new(url, ClientOptions::default())?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_verify_get_checkpoint_consistency() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let work = tempfile::tempdir()?;
    let server = TestServer::start(&dir.path().join("log"), false).await?;
    let (url, vkey) = (server.url(), server.vkey()?);
    let file = |name: &str| work.path().join(name);

    // 1. Sign with a P-256 key and upload.
    let ecdsa = ClientKey::generate()?;
    std::fs::write(file("p256.pem"), ecdsa.private_pem()?)?;
    std::fs::write(file("a0"), b"first artifact")?;
    let run = cli(
        &url,
        &vkey,
        &[
            "upload",
            "--artifact",
            path(&file("a0")),
            "--key",
            path(&file("p256.pem")),
            "--out",
            path(&file("e0.json")),
        ],
    )
    .await?
    .ok("upload P-256")?;
    ensure!(
        run.stderr.contains("Created entry at index 0"),
        "{}",
        run.stderr
    );

    // 2. Sign with an Ed25519 key (Ed25519ph).
    let ed = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let pkcs8 = ed.to_pkcs8_der()?;
    let pem = der::pem::encode_string("PRIVATE KEY", der::pem::LineEnding::LF, pkcs8.as_bytes())?;
    std::fs::write(file("ed.pem"), pem)?;
    std::fs::write(file("a1"), b"second artifact")?;
    cli(
        &url,
        &vkey,
        &[
            "upload",
            "--artifact",
            path(&file("a1")),
            "--key",
            path(&file("ed.pem")),
            "--out",
            path(&file("e1.json")),
        ],
    )
    .await?
    .ok("upload Ed25519")?;

    // Ed25519 signatures are deterministic, so the same upload again is a duplicate: the
    // existing entry is fetched from the tiles, checked and written.
    let run = cli(
        &url,
        &vkey,
        &[
            "upload",
            "--artifact",
            path(&file("a1")),
            "--key",
            path(&file("ed.pem")),
        ],
    )
    .await?
    .ok("duplicate upload")?;
    ensure!(
        run.stderr.contains("already in the log at index 1"),
        "{}",
        run.stderr
    );
    ensure!(
        run.stdout.contains("\"canonicalizedBody\""),
        "{}",
        run.stdout
    );

    // 3. A signature made elsewhere (base64 file) with a PEM public key.
    std::fs::write(file("a2"), b"third artifact")?;
    let signature = ecdsa.sign(b"third artifact")?;
    use base64::Engine as _;
    std::fs::write(
        file("a2.sig"),
        base64::engine::general_purpose::STANDARD.encode(signature),
    )?;
    let public =
        der::pem::encode_string("PUBLIC KEY", der::pem::LineEnding::LF, &ecdsa.public_der()?)?;
    std::fs::write(file("p256.pub"), public)?;
    let run = cli(
        &url,
        &vkey,
        &[
            "upload",
            "--artifact",
            path(&file("a2")),
            "--signature",
            path(&file("a2.sig")),
            "--public-key",
            path(&file("p256.pub")),
        ],
    )
    .await?
    .ok("upload with a signature")?;
    ensure!(run.stderr.contains("index 2"), "{}", run.stderr);
    // A signature over something else is refused by the client before anything is sent.
    cli(
        &url,
        &vkey,
        &[
            "upload",
            "--artifact",
            path(&file("a1")),
            "--signature",
            path(&file("a2.sig")),
            "--public-key",
            path(&file("p256.pub")),
        ],
    )
    .await?
    .fails("wrong signature", 2, "signature")?;

    // 4. Through the library.
    let verifier = server.verifier()?;
    let (_, verified) = client(&url)?
        .submit_verified(&ecdsa.request(b"fourth artifact")?, &verifier)
        .await?;
    ensure!(verified.index == 3);

    // Verify the saved entries, offline and against the log.
    let run = cli(
        &url,
        &vkey,
        &[
            "verify",
            "--entry",
            path(&file("e0.json")),
            "--artifact",
            path(&file("a0")),
        ],
    )
    .await?
    .ok("verify e0")?;
    ensure!(
        run.stdout.contains("Verified entry 0 of localhost"),
        "{}",
        run.stdout
    );
    ensure!(
        run.stdout
            .contains("consistency with the log's current checkpoint"),
        "{}",
        run.stdout
    );
    cli(
        &url,
        &vkey,
        &[
            "verify",
            "--offline",
            "--entry",
            path(&file("e1.json")),
            "--artifact",
            path(&file("a1")),
        ],
    )
    .await?
    .ok("verify e1")?;
    cli(
        &url,
        &vkey,
        &[
            "verify",
            "--entry",
            path(&file("e1.json")),
            "--artifact",
            path(&file("a0")),
        ],
    )
    .await?
    .fails(
        "verify with the wrong artifact",
        2,
        "does not match the entry's",
    )?;

    // Get: JSON that verify accepts, and the human form.
    cli(
        &url,
        &vkey,
        &["get", "3", "--json", "--out", path(&file("g3.json"))],
    )
    .await?
    .ok("get --json")?;
    std::fs::write(file("a3"), b"fourth artifact")?;
    cli(
        &url,
        &vkey,
        &[
            "verify",
            "--entry",
            path(&file("g3.json")),
            "--artifact",
            path(&file("a3")),
        ],
    )
    .await?
    .ok("verify the entry get wrote")?;
    let run = cli(&url, &vkey, &["get", "1"]).await?.ok("get")?;
    ensure!(run.stdout.contains("Index:     1"), "{}", run.stdout);
    ensure!(
        run.stdout.contains("Kind:      hashedrekord/0.0.2"),
        "{}",
        run.stdout
    );
    ensure!(run.stdout.contains("PKIX_ED25519_PH"), "{}", run.stdout);
    cli(&url, &vkey, &["get", "99"]).await?.fails(
        "get beyond the tree",
        1,
        "entry 99 is not in the log's tree of size 4",
    )?;

    // A Sigstore bundle wrapping the entry verifies too.
    let entry: serde_json::Value = serde_json::from_slice(&std::fs::read(file("e0.json"))?)?;
    let bundle = serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": "p256"}, "tlogEntries": [entry]},
    });
    std::fs::write(file("b0.json"), serde_json::to_vec(&bundle)?)?;
    cli(
        &url,
        &vkey,
        &[
            "verify",
            "--bundle",
            path(&file("b0.json")),
            "--artifact",
            path(&file("a0")),
        ],
    )
    .await?
    .ok("verify a bundle")?;

    // The other trust anchors: the log's public key file, and a TrustedRoot.
    let identity = &server.server.identity;
    let key_pem = der::pem::encode_string(
        "PUBLIC KEY",
        der::pem::LineEnding::LF,
        &identity.public_key_der,
    )?;
    std::fs::write(file("log.pub"), key_pem)?;
    let run = cli_trusting(
        &url,
        &[
            "--log-key",
            path(&file("log.pub")),
            "--origin",
            "localhost",
            "checkpoint",
        ],
    )
    .await?
    .ok("checkpoint with --log-key")?;
    ensure!(run.stdout.contains("Signature: verified"), "{}", run.stdout);
    // Without --origin the origin is the URL's host (127.0.0.1), which is not the log's.
    cli_trusting(&url, &["--log-key", path(&file("log.pub")), "checkpoint"])
        .await?
        .fails("checkpoint with the wrong origin", 2, "checkpoint rejected")?;
    let root = serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": [identity.trusted_root_tlog(std::time::SystemTime::now())],
    });
    std::fs::write(file("trusted_root.json"), serde_json::to_vec(&root)?)?;
    cli_trusting(
        &url,
        &[
            "--trusted-root",
            path(&file("trusted_root.json")),
            "verify",
            "--entry",
            path(&file("e0.json")),
            "--artifact",
            path(&file("a0")),
        ],
    )
    .await?
    .ok("verify with --trusted-root")?;

    // Checkpoint and consistency.
    let run = cli(&url, &vkey, &["checkpoint", "--out", path(&file("old.cp"))])
        .await?
        .ok("checkpoint")?;
    ensure!(run.stdout.contains("Tree size: 4"), "{}", run.stdout);
    std::fs::write(file("a5"), b"fifth artifact")?;
    cli(
        &url,
        &vkey,
        &[
            "upload",
            "--artifact",
            path(&file("a5")),
            "--key",
            path(&file("p256.pem")),
        ],
    )
    .await?
    .ok("upload 5")?;
    let run = cli(
        &url,
        &vkey,
        &["consistency", "--from-checkpoint", path(&file("old.cp"))],
    )
    .await?
    .ok("consistency from a checkpoint")?;
    ensure!(
        run.stdout.contains("size 4") && run.stdout.contains("size 5"),
        "{}",
        run.stdout
    );
    let run = cli(&url, &vkey, &["consistency", "--from", "2", "--json"])
        .await?
        .ok("consistency --from")?;
    let json: serde_json::Value = serde_json::from_str(&run.stdout)?;
    ensure!(
        json["old"]["size"] == 2 && json["new"]["size"] == 5,
        "{json}"
    );

    // 4. Tampered entries and the wrong key are refused.
    let mut tampered: serde_json::Value = serde_json::from_slice(&std::fs::read(file("g3.json"))?)?;
    let hash = tampered["inclusionProof"]["hashes"][0]
        .as_str()
        .context("a proof hash")?
        .to_string();
    let flipped = if hash.starts_with('A') {
        hash.replacen('A', "B", 1)
    } else {
        format!("A{}", &hash[1..])
    };
    tampered["inclusionProof"]["hashes"][0] = flipped.into();
    std::fs::write(file("bad.json"), serde_json::to_vec(&tampered)?)?;
    cli(
        &url,
        &vkey,
        &["verify", "--offline", "--entry", path(&file("bad.json"))],
    )
    .await?
    .fails(
        "tampered proof",
        2,
        "inclusion proof of entry 3 in tree 4 fails",
    )?;
    let other = LogSigner::from_ed25519_seed([9; 32], KeyName::new("localhost")?)
        .verifier()
        .to_vkey()
        .context("vkey")?;
    cli(
        &url,
        &other,
        &["verify", "--offline", "--entry", path(&file("g3.json"))],
    )
    .await?
    .fails("wrong log key", 2, "is not the trusted log's ID")?;
    cli(&url, &other, &["checkpoint"]).await?.fails(
        "checkpoint under the wrong key",
        2,
        "checkpoint rejected",
    )?;
    server.stop().await;
    Ok(())
}

/// A 10,000-entry log sequenced straight into storage, then served read-only: the audit passes,
/// resumes from its state, and names exactly the tile whose byte was flipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_ten_thousand_entries() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let work = tempfile::tempdir()?;
    let log_dir = dir.path().join("log");
    let entries: Vec<Vec<u8>> = (0..10_000u32)
        .map(|i| format!("{{\"entry\":{i}}}").into_bytes())
        .collect();
    let size = support::fill(&log_dir, entries).await?;
    ensure!(size == 10_000, "size {size}");
    let server = TestServer::start(&log_dir, true).await?;
    let (url, vkey) = (server.url(), server.vkey()?);
    let state = work.path().join("audit.json");

    let run = cli(
        &url,
        &vkey,
        &["audit", "--state", path(&state), "--no-progress"],
    )
    .await?
    .ok("audit")?;
    ensure!(run.stdout.contains("all 10000 entries"), "{}", run.stdout);
    let run = cli(&url, &vkey, &["audit", "--state", path(&state)])
        .await?
        .ok("resumed audit")?;
    ensure!(
        run.stdout
            .contains("0 entries and 2 tiles checked in this run"),
        "{}",
        run.stdout
    );

    // tile/0/005 holds leaf hashes 1280..1535; tile/1/000.p/39 the 39 level-0 tile roots.
    for (tile, offset, message) in [
        (
            "tile/0/005",
            32 * 9 + 5,
            "tile/0/005: hash 9 is not the leaf hash of entry 1289",
        ),
        ("tile/1/000.p/39", 32 * 38, "tile/1/000.p/39: hash 38 is"),
        (
            "tile/0/039.p/16",
            32 * 15 + 31,
            "tile/0/039.p/16: hash 15 is not the leaf hash",
        ),
    ] {
        let original = support::flip_byte(&log_dir, tile, offset)?;
        let run = cli(&url, &vkey, &["audit", "--no-progress"]).await?;
        support::restore(&log_dir, tile, &original)?;
        run.fails(tile, 2, message)?;
    }
    // A deleted tile is named too.
    let original = std::fs::read(log_dir.join("tile/0/012"))?;
    std::fs::remove_file(log_dir.join("tile/0/012"))?;
    let run = cli(&url, &vkey, &["audit", "--no-progress"]).await?;
    std::fs::write(log_dir.join("tile/0/012"), original)?;
    run.fails("missing tile", 2, "tile/0/012 is missing from the log")?;
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_follows_growth_and_catches_forks() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let work = tempfile::tempdir()?;
    let log_dir = dir.path().join("log");
    let server = TestServer::start(&log_dir, false).await?;
    let (url, vkey) = (server.url(), server.vkey()?);
    let client = client(&url)?;
    let key = ClientKey::generate()?;
    let add = |range: std::ops::Range<u32>| {
        let client = client.clone();
        let requests: anyhow::Result<Vec<_>> = range
            .map(|n| key.request(format!("monitored {n}").as_bytes()))
            .collect();
        async move {
            for request in requests? {
                client.submit(&request).await?;
            }
            anyhow::Ok(())
        }
    };
    let state = work.path().join("monitor.json");
    let monitor_args = ["monitor", "--state", path(&state), "--once"];
    let monitor = || cli(&url, &vkey, &monitor_args);

    add(0..3).await?;
    let run = monitor().await?.ok("first monitor")?;
    ensure!(
        run.stdout.contains("Trusting localhost at size 3"),
        "{}",
        run.stdout
    );
    add(3..6).await?;
    let run = monitor().await?.ok("monitor after growth")?;
    ensure!(
        run.stdout.contains("Grew from 3 to 6: consistent"),
        "{}",
        run.stdout
    );
    let run = monitor().await?.ok("monitor unchanged")?;
    ensure!(run.stdout.contains("Size 6 unchanged"), "{}", run.stdout);
    add(6..9).await?;

    // The log's own key signs a different tree at size 9 (its tiles exist): inconsistent.
    let signer = support::log_signer(&log_dir)?;
    let checkpoint_file = log_dir.join("checkpoint");
    let genuine = std::fs::read(&checkpoint_file)?;
    let forge = |size: u64, root: [u8; 32]| -> anyhow::Result<()> {
        let note =
            signer.sign_checkpoint(&Checkpoint::new(Origin::new("localhost")?, size, root))?;
        std::fs::write(&checkpoint_file, note)?;
        Ok(())
    };
    forge(9, [7; 32])?;
    monitor().await?.fails(
        "forged root",
        2,
        "checkpoint at size 9 is not consistent with the one at size 6",
    )?;
    // Beyond the tiles: the missing tile is named.
    forge(50, [7; 32])?;
    monitor()
        .await?
        .fails("forged size", 2, "tile/0/000.p/50 is missing from the log")?;
    // Signed by another key.
    let other = LogSigner::from_ed25519_seed([8; 32], KeyName::new("localhost")?);
    std::fs::write(
        &checkpoint_file,
        other.sign_checkpoint(&Checkpoint::new(Origin::new("localhost")?, 9, [7; 32]))?,
    )?;
    monitor()
        .await?
        .fails("foreign signature", 2, "checkpoint rejected")?;
    // The state was never advanced past what was proven; the genuine checkpoint still passes.
    std::fs::write(&checkpoint_file, genuine)?;
    let run = monitor().await?.ok("monitor after the forgeries")?;
    ensure!(
        run.stdout.contains("Grew from 6 to 9: consistent"),
        "{}",
        run.stdout
    );
    server.stop().await;
    Ok(())
}
