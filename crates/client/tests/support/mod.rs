//! Test support shared by the client's and the CLI's end-to-end tests (the CLI includes this file
//! by path): in-process servers on a temporary POSIX log directory, a log filled straight
//! through `rekor_log::Log`, client keys, and a log directory written by independent code.
#![allow(
    dead_code,
    reason = "each test file uses a different part of the support module"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use clap::Parser;
use rekor_api::rekor::v2::{
    CreateEntryRequest, HashedRekordRequestV002, PublicKey, Signature, Verifier,
    create_entry_request, verifier,
};
use rekor_note::{Checkpoint, KeyName, LogSigner, LogVerifier, Origin};
use rekor_server::{Backend, RunningServer, ServerArgs};
use rekor_storage::posix::PosixBackend;
use rekor_tlog::{Hash, MemoryTree, TreeSize, leaf_hash};

/// The origin every test log uses.
pub(crate) const ORIGIN: &str = "localhost";

#[derive(Parser)]
struct ServerCli {
    #[command(flatten)]
    args: ServerArgs,
}

/// Server flags: loopback, any free port for all three listeners.
pub(crate) fn server_args(read_only: bool) -> ServerArgs {
    let mut argv = vec![
        "rekor-server",
        "--hostname",
        ORIGIN,
        "--http-port",
        "0",
        "--grpc-port",
        "0",
        "--http-metrics-port",
        "0",
        "--batch-max-age",
        "5ms",
        "--tlog-timeout",
        "10s",
        // The tests play a corrupt log by changing tiles on disk under the running server; a
        // cache of full tiles (correct for a real log, whose tiles never change) would hide that.
        "--tile-cache-size",
        "0",
    ];
    if read_only {
        argv.push("--read-only");
    }
    ServerCli::parse_from(argv).args
}

/// A server running in this process on a POSIX log directory.
pub(crate) struct TestServer {
    pub(crate) server: RunningServer,
    pub(crate) dir: PathBuf,
}

impl TestServer {
    /// Starts a server on `dir` (created if needed); its key is generated in `dir` once.
    pub(crate) async fn start(dir: &Path, read_only: bool) -> anyhow::Result<TestServer> {
        Self::start_with(dir, read_only, false).await
    }

    /// Starts a writable server on `dir` with `--search-index` (the index in `.rekor/search/`).
    pub(crate) async fn start_searchable(dir: &Path) -> anyhow::Result<TestServer> {
        Self::start_with(dir, false, true).await
    }

    async fn start_with(dir: &Path, read_only: bool, search: bool) -> anyhow::Result<TestServer> {
        let backend = PosixBackend::open(dir).context("opening the log directory")?;
        let search_index = match search {
            true => Some(Arc::new(
                backend
                    .open_search_index()
                    .context("opening the search index")?,
            ) as _),
            false => None,
        };
        let mut args = server_args(read_only);
        args.search_index = search;
        let server = rekor_server::start(
            args,
            Backend {
                generated_key_dir: Some(dir.to_path_buf()),
                search_index,
                ..Backend::new(backend.storage, backend.coordinator)
            },
        )
        .await
        .context("starting the server")?;
        Ok(TestServer {
            server,
            dir: dir.to_path_buf(),
        })
    }

    /// The base URL.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.server.http_address)
    }

    /// The log's verifier, from the identity the server reports.
    pub(crate) fn verifier(&self) -> anyhow::Result<LogVerifier> {
        Ok(LogVerifier::from_spki_der(
            KeyName::new(&self.server.identity.origin)?,
            &self.server.identity.public_key_der,
        )?)
    }

    /// The log's C2SP verifier key.
    pub(crate) fn vkey(&self) -> anyhow::Result<String> {
        self.server
            .identity
            .verifier_key
            .clone()
            .context("the generated key has a vkey")
    }

    /// Stops the server and releases the directory.
    pub(crate) async fn stop(self) {
        self.server.stop().await;
    }
}

/// The log's own signing key, as the server generated it in `dir`.
pub(crate) fn log_signer(dir: &Path) -> anyhow::Result<LogSigner> {
    Ok(rekor_server::keys::load_or_generate(dir, ORIGIN)?)
}

/// Appends `entries` (any bytes) straight through `rekor_log::Log` on `dir`, all at once, and
/// returns the new tree size. No server may hold the directory.
pub(crate) async fn fill(dir: &Path, entries: Vec<Vec<u8>>) -> anyhow::Result<u64> {
    let backend = PosixBackend::open(dir)?;
    let signer = log_signer(dir)?;
    let log = rekor_log::Log::open(
        backend.storage,
        backend.coordinator,
        Arc::new(signer),
        Origin::new(ORIGIN)?,
        rekor_log::LogConfig {
            batch_max_age: Duration::from_millis(5),
            batch_max_size: 1024,
            pushback_max_outstanding: entries.len() + 1,
            ..rekor_log::LogConfig::default()
        },
    )
    .await?;
    let adds = entries
        .into_iter()
        .map(|entry| log.add(bytes::Bytes::from(entry)));
    for result in futures::future::join_all(adds).await {
        result?;
    }
    let size = log.checkpoint().size;
    log.shutdown().await;
    Ok(size)
}

/// A client's ECDSA P-256 key.
pub(crate) struct ClientKey {
    pair: EcdsaKeyPair,
    pkcs8: Vec<u8>,
}

impl ClientKey {
    pub(crate) fn generate() -> anyhow::Result<ClientKey> {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new())
                .map_err(|_| anyhow::anyhow!("key generation failed"))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(ClientKey {
            pair,
            pkcs8: pkcs8.as_ref().to_vec(),
        })
    }

    /// The private key as PKCS#8 PEM.
    pub(crate) fn private_pem(&self) -> anyhow::Result<String> {
        Ok(der::pem::encode_string(
            "PRIVATE KEY",
            der::pem::LineEnding::LF,
            &self.pkcs8,
        )?)
    }

    /// The public key, DER SPKI.
    pub(crate) fn public_der(&self) -> anyhow::Result<Vec<u8>> {
        Ok(self
            .pair
            .public_key()
            .as_der()
            .map_err(|_| anyhow::anyhow!("encoding"))?
            .as_ref()
            .to_vec())
    }

    /// An ASN.1 ECDSA signature over SHA-256 of `artifact`.
    pub(crate) fn sign(&self, artifact: &[u8]) -> anyhow::Result<Vec<u8>> {
        Ok(self
            .pair
            .sign(&SystemRandom::new(), artifact)
            .map_err(|_| anyhow::anyhow!("signing failed"))?
            .as_ref()
            .to_vec())
    }

    /// A hashedrekord request for `artifact`, built field by field.
    pub(crate) fn request(&self, artifact: &[u8]) -> anyhow::Result<CreateEntryRequest> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, artifact);
        Ok(CreateEntryRequest {
            spec: Some(create_entry_request::Spec::HashedRekordRequestV002(
                HashedRekordRequestV002 {
                    digest: digest.as_ref().to_vec(),
                    signature: Some(Signature {
                        content: self.sign(artifact)?,
                        verifier: Some(Verifier {
                            // PKIX_ECDSA_P256_SHA_256 (protobuf-specs sigstore_common.proto).
                            key_details: 5,
                            verifier: Some(verifier::Verifier::PublicKey(PublicKey {
                                raw_bytes: self.public_der()?,
                            })),
                        }),
                    }),
                },
            )),
        })
    }
}

/// Writes a complete C2SP tlog-tiles directory for `entries` with code independent of the tile
/// builder: level-0 tiles are leaf hashes, each higher tile hash is the RFC 6962 root of its 256
/// children's leaves (from `MemoryTree`, the recursive definition), bundles are length-prefixed
/// by hand, and the checkpoint is signed with `signer`. Returns the root.
pub(crate) fn write_log_dir(
    dir: &Path,
    entries: &[Vec<u8>],
    signer: &LogSigner,
) -> anyhow::Result<Hash> {
    let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
    let size = u64::try_from(leaves.len())?;
    let tree: MemoryTree = leaves.iter().copied().collect();
    let root = tree.root(TreeSize::new(size))?;

    // Level 0 tiles and bundles.
    for (n, chunk) in entries.chunks(256).enumerate() {
        let mut bundle = Vec::new();
        for entry in chunk {
            bundle.extend_from_slice(&u16::try_from(entry.len())?.to_be_bytes());
            bundle.extend_from_slice(entry);
        }
        let mut tile = Vec::new();
        for leaf in &leaves[n * 256..n * 256 + chunk.len()] {
            tile.extend_from_slice(leaf.as_bytes());
        }
        write(dir, &tile_path("entries", n, chunk.len()), &bundle)?;
        write(dir, &tile_path("0", n, chunk.len()), &tile)?;
    }
    // Higher levels: hash i of level L is the root of leaves [i·256^L, (i+1)·256^L).
    let mut level = 1u32;
    loop {
        let span = 256usize.pow(level);
        let count = leaves.len() / span;
        if count == 0 {
            break;
        }
        let hashes: Vec<Hash> = (0..count)
            .map(|i| {
                let sub: MemoryTree = leaves[i * span..(i + 1) * span].iter().copied().collect();
                sub.root(TreeSize::new(u64::try_from(span).unwrap_or(u64::MAX)))
            })
            .collect::<Result<_, _>>()?;
        for (n, chunk) in hashes.chunks(256).enumerate() {
            let bytes: Vec<u8> = chunk.iter().flat_map(|h| h.0).collect();
            write(dir, &tile_path(&level.to_string(), n, chunk.len()), &bytes)?;
        }
        level += 1;
    }
    let note = signer.sign_checkpoint(&Checkpoint::new(Origin::new(ORIGIN)?, size, root.0))?;
    write(dir, "checkpoint", &note)?;
    Ok(root)
}

/// `tile/<level>/<N>[.p/<W>]` written by hand (C2SP tlog-tiles "x" groups).
pub(crate) fn tile_path(level: &str, index: usize, width: usize) -> String {
    let digits = format!("{index}");
    let padded = format!("{:0>width$}", digits, width = digits.len().div_ceil(3) * 3);
    let groups: Vec<&str> = padded
        .as_bytes()
        .chunks(3)
        .map(|g| std::str::from_utf8(g).unwrap_or("???"))
        .collect();
    let mut path = format!("tile/{level}/");
    for (i, group) in groups.iter().enumerate() {
        if i + 1 < groups.len() {
            path.push('x');
            path.push_str(group);
            path.push('/');
        } else {
            path.push_str(group);
        }
    }
    if width != 256 {
        path.push_str(&format!(".p/{width}"));
    }
    path
}

fn write(dir: &Path, path: &str, data: &[u8]) -> anyhow::Result<()> {
    let full = dir.join(path);
    if let Some(parent) = full.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&full, data).with_context(|| format!("writing {path}"))
}

/// Flips one bit of the byte at `offset` in `dir/path`, and returns a guard-less undo closure's
/// data (the original bytes).
pub(crate) fn flip_byte(dir: &Path, path: &str, offset: usize) -> anyhow::Result<Vec<u8>> {
    let full = dir.join(path);
    let original = std::fs::read(&full).with_context(|| format!("reading {path}"))?;
    ensure!(
        offset < original.len(),
        "{path} has only {} bytes",
        original.len()
    );
    let mut changed = original.clone();
    changed[offset] ^= 0x01;
    std::fs::write(&full, &changed)?;
    Ok(original)
}

/// Puts back what [`flip_byte`] changed.
pub(crate) fn restore(dir: &Path, path: &str, original: &[u8]) -> anyhow::Result<()> {
    Ok(std::fs::write(dir.join(path), original)?)
}

#[test]
fn tile_paths_follow_the_spec_example() {
    // C2SP tlog-tiles: index 1234067 is x001/x234/067.
    assert_eq!(tile_path("0", 1_234_067, 256), "tile/0/x001/x234/067");
    assert_eq!(tile_path("entries", 5, 17), "tile/entries/005.p/17");
    assert_eq!(tile_path("1", 1000, 3), "tile/1/x001/000.p/3");
}
