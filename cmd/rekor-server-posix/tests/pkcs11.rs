//! The log's key in a PKCS#11 token (`--signer-kmskey pkcs11:...`), against SoftHSM2.
//!
//! Each test makes its own SoftHSM2 token in a temporary directory (`SOFTHSM2_CONF` is set
//! only for the programs it starts), imports a key it generated with `softhsm2-util --import`,
//! so it knows the public key without asking the HSM, and checks every checkpoint by hand:
//! the signed-note key ID and the signature, with `p256`, `p384` or `ed25519-dalek` directly.
//!
//! Skipped with a message when SoftHSM2 is not installed (`apt-get install softhsm2`, which
//! `tests/emulators/setup.sh` does), unless `REKOR_REQUIRE_EMULATORS=1`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use rekor_testkit::fixtures::{artifact, random_bytes};
use rekor_testkit::{
    ClientKey, Error, HttpClient, KeyKind, ServerConfig, ServerProcess, TrustedLog, verify_entry,
};
use sha2::{Digest as _, Sha256};

const SO_PIN: &str = "87654321";
const PIN: &str = "1234";
const TOKEN: &str = "rekor test";

/// RFC 8410 PKCS#8 `PrivateKeyInfo` of an Ed25519 key, up to the 32-byte seed.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// RFC 8410 SubjectPublicKeyInfo of an Ed25519 key, up to the 32-byte key.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Where Debian and others put the SoftHSM2 module.
const MODULES: [&str; 3] = [
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

/// A SoftHSM2 installation with one initialized token in a temporary directory.
struct SoftHsm {
    module: PathBuf,
    util: PathBuf,
    conf: PathBuf,
    dir: tempfile::TempDir,
}

/// A key the test generated: its PKCS#8 PEM and its DER SubjectPublicKeyInfo.
struct GeneratedKey {
    pem: String,
    spki: Vec<u8>,
}

fn generate(kind: &str) -> anyhow::Result<GeneratedKey> {
    let scalar: [u8; 32] = random_bytes()?;
    match kind {
        "p256" => {
            let key = p256::SecretKey::from_slice(&scalar)?;
            Ok(GeneratedKey {
                pem: key.to_pkcs8_pem(LineEnding::LF)?.to_string(),
                spki: key.public_key().to_public_key_der()?.into_vec(),
            })
        }
        "p384" => {
            let wide: [u8; 48] = random_bytes()?;
            let key = p384::SecretKey::from_slice(&wide)?;
            Ok(GeneratedKey {
                pem: key.to_pkcs8_pem(LineEnding::LF)?.to_string(),
                spki: key.public_key().to_public_key_der()?.into_vec(),
            })
        }
        "ed25519" => {
            // RFC 8410 PKCS#8 and SPKI, written out by hand.
            let public = ed25519_dalek::SigningKey::from_bytes(&scalar).verifying_key();
            let mut pkcs8 = ED25519_PKCS8_PREFIX.to_vec();
            pkcs8.extend_from_slice(&scalar);
            let mut spki = ED25519_SPKI_PREFIX.to_vec();
            spki.extend_from_slice(public.as_bytes());
            Ok(GeneratedKey {
                pem: format!(
                    "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                    STANDARD.encode(pkcs8)
                ),
                spki,
            })
        }
        other => bail!("no key kind {other}"),
    }
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

impl SoftHsm {
    /// Finds SoftHSM2, or says (and returns `None`) that the test is skipped; panics instead
    /// when `REKOR_REQUIRE_EMULATORS=1`.
    #[allow(clippy::print_stderr, reason = "a skipped test says why on stderr")]
    fn find() -> Option<(PathBuf, PathBuf)> {
        let module = std::env::var_os("REKOR_SOFTHSM2_MODULE")
            .map(PathBuf::from)
            .into_iter()
            .chain(MODULES.iter().map(PathBuf::from))
            .find(|path| path.is_file());
        let util = on_path("softhsm2-util");
        if let (Some(module), Some(util)) = (module, util) {
            return Some((module, util));
        }
        let why = "SoftHSM2 is not installed (apt-get install softhsm2, or run \
                   tests/emulators/setup.sh)";
        let required = std::env::var("REKOR_REQUIRE_EMULATORS").is_ok_and(|v| v == "1");
        assert!(!required, "{why}, and REKOR_REQUIRE_EMULATORS=1");
        eprintln!("SKIPPED: {why} (set REKOR_REQUIRE_EMULATORS=1 to fail instead)");
        None
    }

    /// A fresh token [`TOKEN`] in a temporary directory.
    fn start() -> anyhow::Result<Option<Self>> {
        let Some((module, util)) = Self::find() else {
            return Ok(None);
        };
        let dir = tempfile::tempdir()?;
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens)?;
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )?;
        let hsm = SoftHsm {
            module,
            util,
            conf,
            dir,
        };
        hsm.util(&[
            "--init-token",
            "--free",
            "--label",
            TOKEN,
            "--so-pin",
            SO_PIN,
            "--pin",
            PIN,
        ])?;
        Ok(Some(hsm))
    }

    fn util(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.util)
            .args(args)
            .env("SOFTHSM2_CONF", &self.conf)
            .output()
            .context("running softhsm2-util")?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(
            out.status.success(),
            "softhsm2-util {args:?}: {}\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(stdout)
    }

    /// Generates a key of `kind` and imports it as `label` / `id` (hex).
    fn import(&self, kind: &str, label: &str, id: &str) -> anyhow::Result<GeneratedKey> {
        let key = generate(kind)?;
        let pem = self.dir.path().join(format!("{label}.pem"));
        std::fs::write(&pem, &key.pem)?;
        let pem_arg = pem.display().to_string();
        self.util(&[
            "--import", &pem_arg, "--label", label, "--id", id, "--token", TOKEN, "--pin", PIN,
        ])?;
        std::fs::remove_file(&pem)?;
        Ok(key)
    }

    /// A server config for `uri`, with this token's `SOFTHSM2_CONF`.
    fn server(&self, uri: &str) -> ServerConfig {
        ServerConfig::new(
            env!("CARGO_BIN_EXE_rekor-server-posix"),
            self.dir.path().join("log"),
        )
        .with_env("SOFTHSM2_CONF", self.conf.display().to_string())
        .with_args(["--signer-kmskey".to_owned(), uri.to_owned()])
    }

    fn module(&self) -> String {
        self.module.display().to_string()
    }
}

/// Checks a checkpoint note by hand against the imported key: one signature line named
/// `origin`, key ID = SHA-256(SPKI)[:4] (ECDSA, as rekor-tiles) or SHA-256(name || 0x0A ||
/// 0x01 || key)[:4] (Ed25519), and a signature over the note text that verifies.
fn check_note(note: &[u8], origin: &str, kind: &str, spki: &[u8]) -> anyhow::Result<()> {
    let note = std::str::from_utf8(note)?;
    let (body, signatures) = note.split_once("\n\n").context("no blank line")?;
    ensure!(
        body.starts_with(&format!("{origin}\n")),
        "origin line: {body:?}"
    );
    let text = format!("{body}\n");
    let lines: Vec<&str> = signatures.lines().collect();
    let [line] = lines[..] else {
        bail!("{} signature lines:\n{note}", lines.len());
    };
    let blob = STANDARD.decode(
        line.strip_prefix(&format!("\u{2014} {origin} "))
            .context("signature line from another key")?,
    )?;
    ensure!(blob.len() > 4, "signature line too short");
    let (key_id, signature) = blob.split_at(4);
    let expected_id: Vec<u8> = if kind == "ed25519" {
        let mut h = Sha256::new();
        h.update(origin.as_bytes());
        h.update([b'\n', 0x01]);
        h.update(&spki[12..]);
        h.finalize()[..4].to_vec()
    } else {
        Sha256::digest(spki)[..4].to_vec()
    };
    ensure!(
        key_id == expected_id,
        "key ID {key_id:02x?} != {expected_id:02x?}"
    );
    let verified = match kind {
        "p256" => {
            use p256::ecdsa::signature::Verifier as _;
            use p256::pkcs8::DecodePublicKey as _;
            let key = p256::ecdsa::VerifyingKey::from_public_key_der(spki)?;
            let sig = p256::ecdsa::DerSignature::from_bytes(signature)?;
            key.verify(text.as_bytes(), &sig).is_ok()
        }
        "p384" => {
            use p384::ecdsa::signature::Verifier as _;
            use p384::pkcs8::DecodePublicKey as _;
            let key = p384::ecdsa::VerifyingKey::from_public_key_der(spki)?;
            let sig = p384::ecdsa::DerSignature::from_bytes(signature)?;
            key.verify(text.as_bytes(), &sig).is_ok()
        }
        _ => {
            let key = ed25519_dalek::VerifyingKey::from_bytes(spki[12..].try_into()?)?;
            let sig = ed25519_dalek::Signature::from_slice(signature)?;
            key.verify_strict(text.as_bytes(), &sig).is_ok()
        }
    };
    ensure!(
        verified,
        "{kind} signature does not verify over the note text:\n{note}"
    );
    Ok(())
}

/// Starts the log on `uri`, writes entries over HTTP and gRPC, and checks every checkpoint and
/// the log ID by hand against `key`.
async fn serve_and_check(
    hsm: &SoftHsm,
    uri: &str,
    kind: &str,
    key: &GeneratedKey,
) -> anyhow::Result<()> {
    let config = hsm.server(uri);
    let origin = config.hostname.clone();
    let owned = config.clone();
    let mut server = tokio::task::spawn_blocking(move || ServerProcess::start(&owned)).await??;
    let trust = TrustedLog::from_public_key_der(&key.spki, &origin)?;
    let expected_log_id: [u8; 32] = if kind == "ed25519" {
        let mut h = Sha256::new();
        h.update(origin.as_bytes());
        h.update([b'\n', 0x01]);
        h.update(&key.spki[12..]);
        h.finalize().into()
    } else {
        Sha256::digest(&key.spki).into()
    };
    ensure!(trust.log_id == expected_log_id, "log ID rule");

    let http = HttpClient::new(server.listeners().http)?;
    let grpc = rekor_testkit::GrpcClient::connect(server.listeners().grpc).await?;
    let client = ClientKey::generate(KeyKind::EcdsaP256)?;
    for n in 0..3 {
        let submission = client.hashed_rekord(&artifact(&format!("pkcs11-{kind}"), n)?)?;
        let entry = if n == 1 {
            grpc.create_entry_for(&submission).await?
        } else {
            http.create_entry(&submission).await?
        };
        verify_entry(&trust, &submission, &entry)?;
        ensure!(entry.log_id == expected_log_id, "logId.keyId");
        let proof = entry.proof.context("no inclusion proof")?;
        check_note(proof.checkpoint.as_bytes(), &origin, kind, &key.spki)
            .context("checkpoint returned with an entry")?;
    }
    let served = http.checkpoint().await?;
    check_note(&served, &origin, kind, &key.spki).context("checkpoint at /checkpoint")?;
    ensure!(
        served.starts_with(format!("{origin}\n3\n").as_bytes()),
        "served checkpoint is not at size 3"
    );
    let status = tokio::task::spawn_blocking(move || server.stop()).await??;
    ensure!(status.success(), "server exit status {status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_p256_key_in_softhsm_signs_the_checkpoints() -> anyhow::Result<()> {
    let Some(hsm) = SoftHsm::start()? else {
        return Ok(());
    };
    let key = hsm.import("p256", "log key", "01")?;
    let uri = format!(
        "pkcs11:token=rekor%20test;object=log%20key?module-path={}&pin-value={PIN}",
        hsm.module()
    );
    serve_and_check(&hsm, &uri, "p256", &key).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ed25519_and_p384_keys_in_softhsm_sign_the_checkpoints() -> anyhow::Result<()> {
    let Some(hsm) = SoftHsm::start()? else {
        return Ok(());
    };
    let ed = hsm.import("ed25519", "ed", "a1")?;
    let p384 = hsm.import("p384", "p384", "b2")?;
    let pin_file = hsm.dir.path().join("pin");
    std::fs::write(&pin_file, format!("{PIN}\n"))?;
    // By ID alone, and with the PIN from a file.
    let uri = format!(
        "pkcs11:token=rekor%20test;id=%A1?module-path={}&pin-source=file:{}",
        hsm.module(),
        pin_file.display()
    );
    serve_and_check(&hsm, &uri, "ed25519", &ed)
        .await
        .context("Ed25519")?;
    std::fs::remove_dir_all(hsm.dir.path().join("log"))?;
    let uri = format!(
        "pkcs11:object=p384;id=%b2?pin-value={PIN}&module-path={}",
        hsm.module()
    );
    serve_and_check(&hsm, &uri, "p384", &p384)
        .await
        .context("P-384")
}

/// The server refuses to start, and its stderr names PKCS#11 and the `wanted` failure.
fn expect_refused(hsm: &SoftHsm, uri: &str, wanted: &[&str]) -> anyhow::Result<()> {
    match ServerProcess::start(&hsm.server(uri)) {
        Ok(_) => bail!("the server started with {uri}"),
        Err(Error::ExitedEarly { status, stderr }) => {
            ensure!(!status.contains("exit status: 0"), "exit status {status}");
            for want in ["pkcs11", "--signer-kmskey"].iter().chain(wanted) {
                ensure!(stderr.contains(want), "stderr lacks {want:?}:\n{stderr}");
            }
            ensure!(!stderr.contains("9999"), "the PIN is printed:\n{stderr}");
            Ok(())
        }
        Err(other) => bail!("{other}"),
    }
}

#[test]
fn a_wrong_pin_or_a_missing_key_stops_the_server_at_start() -> anyhow::Result<()> {
    let Some(hsm) = SoftHsm::start()? else {
        return Ok(());
    };
    hsm.import("p256", "k", "01")?;
    let module = hsm.module();
    expect_refused(
        &hsm,
        &format!("pkcs11:token=rekor%20test;object=k?module-path={module}&pin-value=9999"),
        &["logging in to token", "C_Login failed: PinIncorrect"],
    )?;
    expect_refused(
        &hsm,
        &format!("pkcs11:token=rekor%20test;object=nope?module-path={module}&pin-value={PIN}"),
        &["no private key object=\"nope\""],
    )?;
    expect_refused(
        &hsm,
        &format!("pkcs11:token=other;object=k?module-path={module}&pin-value={PIN}"),
        &["no token matches token=\"other\""],
    )?;
    expect_refused(
        &hsm,
        &format!("pkcs11:token=rekor%20test;objekt=k?module-path={module}&pin-value={PIN}"),
        &[
            "invalid pkcs11 key URI",
            "unknown path attribute \"objekt\"",
        ],
    )?;
    expect_refused(
        &hsm,
        &format!(
            "pkcs11:object=k?module-path={}/missing.so&pin-value={PIN}",
            hsm.dir.path().display()
        ),
        &["loading module"],
    )?;
    Ok(())
}
