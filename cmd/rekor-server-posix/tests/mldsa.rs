//! Dual-signed checkpoints (`--signer-mldsa-filepath`): every checkpoint, served and returned
//! with an entry, carries the log's Ed25519 line and an ML-DSA-44 line (c2sp.org/tlog-cosignature
//! type 0x06). The ML-DSA-44 line is checked here by hand, with the `ml-dsa` crate over the
//! `cosigned_message` bytes the spec defines, not through `rekor-note`; `info` prints its vkey.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ml_dsa::{KeyExport as _, Keypair as _, MlDsa44};
use rekor_testkit::fixtures::{artifact, random_bytes};
use rekor_testkit::{ClientKey, KeyKind, ServerConfig, TestLog, verify_entry};
use sha2::{Digest as _, Sha256};

/// The hand-written parts of the ML-DSA-44 key the log is given.
struct MlDsaKey {
    public: Vec<u8>,
    key_id: [u8; 4],
    vkey: String,
}

impl MlDsaKey {
    /// Writes a fresh key as PKCS#8 PEM (ml-dsa's own encoder, RFC 9881 seed form), mode 0600.
    fn generate(path: &std::path::Path, origin: &str) -> anyhow::Result<Self> {
        let seed: [u8; 32] = random_bytes()?;
        let key = ml_dsa::SigningKey::<MlDsa44>::from_seed(&seed.into());
        let pem =
            ml_dsa::pkcs8::EncodePrivateKey::to_pkcs8_pem(&key, ml_dsa::pkcs8::LineEnding::LF)
                .context("encoding the ML-DSA-44 key")?;
        std::fs::write(path, pem.as_bytes())?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
        let public = key.verifying_key().to_bytes().to_vec();
        ensure!(public.len() == 1312);
        // signed-note key ID: SHA-256(name || 0x0A || 0x06 || key)[:4].
        let mut h = Sha256::new();
        h.update(origin.as_bytes());
        h.update([b'\n', 0x06]);
        h.update(&public);
        let digest = h.finalize();
        let key_id: [u8; 4] = digest[..4].try_into()?;
        let mut typed = vec![0x06];
        typed.extend_from_slice(&public);
        let vkey = format!(
            "{origin}+{}+{}",
            key_id
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            STANDARD.encode(typed)
        );
        Ok(Self {
            public,
            key_id,
            vkey,
        })
    }

    /// Checks `note` by hand: a three-line body, exactly two signature lines named `origin`,
    /// the second from this key, whose timestamp lies in `[not_before, now]` and whose ML-DSA-44
    /// signature verifies over the `cosigned_message`. Returns the timestamp.
    fn check(&self, note: &str, origin: &str, not_before: u64) -> anyhow::Result<u64> {
        let (body, signatures) = note.split_once("\n\n").context("no blank line")?;
        let lines: Vec<&str> = body.split('\n').collect();
        let [line_origin, size, root] = lines[..] else {
            bail!("body is not three lines: {body:?}");
        };
        ensure!(line_origin == origin);
        let size: u64 = size.parse()?;
        let root = STANDARD.decode(root)?;
        ensure!(root.len() == 32);

        let prefix = format!("\u{2014} {origin} ");
        let blobs = signatures
            .lines()
            .map(|line| {
                let encoded = line
                    .strip_prefix(&prefix)
                    .context("line from another key")?;
                Ok(STANDARD.decode(encoded)?)
            })
            .collect::<anyhow::Result<Vec<Vec<u8>>>>()?;
        ensure!(blobs.len() == 2, "{} signature lines:\n{note}", blobs.len());
        ensure!(blobs[0][..4] != self.key_id, "the primary line comes first");
        let blob = &blobs[1];
        ensure!(blob[..4] == self.key_id, "second line has another key ID");
        ensure!(
            blob.len() == 4 + 8 + 2420,
            "ML-DSA-44 line is {} bytes",
            blob.len()
        );
        let timestamp = u64::from_be_bytes(blob[4..12].try_into()?);
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        ensure!(
            (not_before..=now).contains(&timestamp),
            "timestamp {timestamp} outside [{not_before}, {now}]"
        );

        // tlog-cosignature `cosigned_message` for a checkpoint: start 0, end = size.
        let mut message = b"subtree/v1\n\x00".to_vec();
        message.push(u8::try_from(origin.len())?);
        message.extend_from_slice(origin.as_bytes());
        message.extend_from_slice(&timestamp.to_be_bytes());
        message.push(u8::try_from(origin.len())?);
        message.extend_from_slice(origin.as_bytes());
        message.extend_from_slice(&0u64.to_be_bytes());
        message.extend_from_slice(&size.to_be_bytes());
        message.extend_from_slice(&root);

        let key = ml_dsa::VerifyingKey::<MlDsa44>::decode(
            &self
                .public
                .as_slice()
                .try_into()
                .context("public key size")?,
        );
        let signature = ml_dsa::Signature::<MlDsa44>::try_from(&blob[12..])
            .map_err(|_| anyhow::anyhow!("ML-DSA-44 signature does not decode"))?;
        ensure!(
            key.verify_with_context(&message, &[], &signature),
            "ML-DSA-44 signature does not verify over the cosigned_message"
        );
        // And it is over that message, not the note text.
        ensure!(!key.verify_with_context(format!("{body}\n").as_bytes(), &[], &signature));
        Ok(timestamp)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_dual_signed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key_path = dir.path().join("mldsa.pem");
    let config = ServerConfig::new(
        env!("CARGO_BIN_EXE_rekor-server-posix"),
        dir.path().join("log"),
    );
    let origin = config.hostname.clone();
    let mldsa = MlDsaKey::generate(&key_path, &origin)?;
    let config = config.with_args([
        "--signer-mldsa-filepath".to_owned(),
        key_path.display().to_string(),
    ]);
    let started = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();

    let log = TestLog::start(&config).await?;
    let key = ClientKey::generate(KeyKind::EcdsaP256)?;
    for n in 0..2 {
        let submission = key.hashed_rekord(&artifact("mldsa", n)?)?;
        let entry = if n == 0 {
            log.http.create_entry(&submission).await?
        } else {
            log.grpc.create_entry_for(&submission).await?
        };
        // The Ed25519 line, through rekor-note and by hand (the testkit skips the other line).
        verify_entry(&log.trust, &submission, &entry)?;
        let returned = entry.proof.context("no inclusion proof")?.checkpoint;
        mldsa
            .check(&returned, &origin, started)
            .context("checkpoint returned with the entry")?;
    }
    let served = String::from_utf8(log.http.checkpoint().await?.to_vec())?;
    rekor_testkit::assertions::verify_checkpoint(&log.trust, served.as_bytes())?;
    mldsa
        .check(&served, &origin, started)
        .context("checkpoint served at /checkpoint")?;
    let primary = log
        .trust
        .verifier
        .to_vkey()
        .context("an Ed25519 log has a vkey")?;
    log.stop().await?;

    // `info` prints both verifier keys.
    let info = config.run_subcommand("info")?;
    ensure!(
        info.contains(&primary),
        "info lacks the Ed25519 vkey:\n{info}"
    );
    ensure!(
        info.contains(&format!("ML-DSA-44 verifier key: {}\n", mldsa.vkey)),
        "info lacks the ML-DSA-44 vkey:\n{info}"
    );
    Ok(())
}
