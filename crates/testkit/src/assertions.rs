//! Checks on what a server returns: the log identity, a `TransparencyLogEntry`, a checkpoint,
//! and a full audit of the published tiles and bundles.
//!
//! Where it can, each check is made twice: once with the workspace's own code (`rekor-note`,
//! `rekor-tlog`), as clients would, and once independently (hand-parsed notes verified with
//! aws-lc-rs, the RFC 6962 recursion in [`crate::merkle`], and the third-party `tlog_tiles`
//! crate), so a bug shared by our server and our verifier cannot pass unnoticed.

use std::collections::HashMap;
use std::path::Path;

use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rekor_note::{KeyName, LogSigner, LogVerifier};
use rekor_tlog::{Hash as TlogHash, LeafIndex, TreeSize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::client::{HttpClient, LogEntry};
use crate::error::{Error, Result, ensure_eq};
use crate::fixtures::Submission;
use crate::merkle;
use crate::process::generated_key_pem;

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410).
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// What a client trusts about the log under test.
#[derive(Clone, Debug)]
pub struct TrustedLog {
    /// The checkpoint origin and note key name (`--hostname`).
    pub origin: String,
    /// The checkpoint verifier.
    pub verifier: LogVerifier,
    /// The 32-byte log ID (`logId.keyId`).
    pub log_id: [u8; 32],
    /// The raw Ed25519 public key, when the log key is Ed25519 (checked independently).
    pub ed25519_public_key: Option<[u8; 32]>,
}

impl TrustedLog {
    /// Loads the key the server generated in `storage_dir` and derives the log's identity; for
    /// an Ed25519 key the log ID is also recomputed by hand (C2SP signed-note key ID:
    /// SHA-256(name ‖ 0x0A ‖ 0x01 ‖ key)) and must agree.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the key is missing, [`Error::Note`] if it does not load,
    /// [`Error::Mismatch`] if the independent log ID differs.
    pub fn from_storage_dir(storage_dir: &Path, hostname: &str) -> Result<Self> {
        Self::from_pem(&generated_key_pem(storage_dir)?, hostname)
    }

    /// Loads an unencrypted PEM signing key file (what `--signer-filepath` names), as
    /// [`TrustedLog::from_storage_dir`] does.
    ///
    /// # Errors
    ///
    /// As [`TrustedLog::from_storage_dir`].
    pub fn from_signer_file(path: &Path, hostname: &str) -> Result<Self> {
        let pem = std::fs::read(path).map_err(|e| Error::io("reading the signer file", e))?;
        Self::from_pem(&pem, hostname)
    }

    /// Trusts a log whose key is held outside the process (`--signer-kmskey`: an HSM or a
    /// KMS), from its DER SubjectPublicKeyInfo, as the KMS reports it.
    ///
    /// # Errors
    ///
    /// [`Error::Note`] if the name or the key does not load.
    pub fn from_public_key_der(spki_der: &[u8], hostname: &str) -> Result<Self> {
        let verifier = LogVerifier::from_spki_der(KeyName::new(hostname)?, spki_der)?;
        let ed25519_public_key = spki_der
            .strip_prefix(&ED25519_SPKI_PREFIX[..])
            .and_then(|key| <[u8; 32]>::try_from(key).ok());
        Ok(TrustedLog {
            origin: hostname.to_string(),
            log_id: verifier.log_id(),
            verifier,
            ed25519_public_key,
        })
    }

    fn from_pem(pem: &[u8], hostname: &str) -> Result<Self> {
        let signer = LogSigner::from_pem(pem, None, KeyName::new(hostname)?)?;
        let verifier = signer.verifier();
        let spki = verifier.public_key_der();
        let ed25519_public_key = spki
            .strip_prefix(&ED25519_SPKI_PREFIX[..])
            .and_then(|key| <[u8; 32]>::try_from(key).ok());
        if let Some(key) = ed25519_public_key {
            let mut hasher = Sha256::new();
            hasher.update(hostname.as_bytes());
            hasher.update([0x0a, 0x01]);
            hasher.update(key);
            let expected: [u8; 32] = hasher.finalize().into();
            ensure_eq(
                "Ed25519 log ID",
                hex::encode(expected),
                hex::encode(signer.log_id()),
            )?;
        }
        Ok(TrustedLog {
            origin: hostname.to_string(),
            verifier,
            log_id: signer.log_id(),
            ed25519_public_key,
        })
    }
}

/// A checkpoint that passed verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    /// The tree size.
    pub size: u64,
    /// The root hash.
    pub root: [u8; 32],
    /// The signed note, as served.
    pub note: Vec<u8>,
}

/// Verifies a signed checkpoint note with `rekor-note` and, for an Ed25519 log, again by hand:
/// the text before the blank line is `<origin>\n<size>\n<base64 root>\n`, and a signature line
/// `— <origin> <base64(key ID ‖ signature)>` carries the first four bytes of the log ID and a
/// valid Ed25519 signature over that text. Both readings must agree.
///
/// # Errors
///
/// [`Error::Note`] from `rekor-note`; [`Error::Malformed`] or [`Error::Mismatch`] from the
/// independent reading.
pub fn verify_checkpoint(log: &TrustedLog, note: &[u8]) -> Result<VerifiedCheckpoint> {
    let checkpoint = log.verifier.verify_checkpoint(note)?;
    ensure_eq(
        "checkpoint origin",
        log.origin.as_str(),
        checkpoint.origin.as_str(),
    )?;
    ensure_eq("checkpoint extension lines", 0, checkpoint.extensions.len())?;

    let text =
        std::str::from_utf8(note).map_err(|_| Error::malformed("checkpoint", "not UTF-8"))?;
    let (body, signatures) = text
        .split_once("\n\n")
        .ok_or_else(|| Error::malformed("checkpoint", "no blank line before the signatures"))?;
    let mut lines = body.split('\n');
    let (Some(origin), Some(size), Some(root), None) =
        (lines.next(), lines.next(), lines.next(), lines.next())
    else {
        return Err(Error::malformed(
            "checkpoint",
            format!("body is not three lines: {body:?}"),
        ));
    };
    ensure_eq("checkpoint line 1 (origin)", log.origin.as_str(), origin)?;
    let size: u64 = size
        .parse()
        .map_err(|_| Error::malformed("checkpoint line 2", format!("{size:?} is not a size")))?;
    let root: [u8; 32] = STANDARD
        .decode(root)
        .ok()
        .and_then(|r| r.try_into().ok())
        .ok_or_else(|| Error::malformed("checkpoint line 3", format!("{root:?} is not a hash")))?;
    ensure_eq(
        "checkpoint size (rekor-note vs by hand)",
        checkpoint.size,
        size,
    )?;
    ensure_eq(
        "checkpoint root (rekor-note vs by hand)",
        checkpoint.root,
        root,
    )?;

    if let Some(public_key) = log.ed25519_public_key {
        let signed = format!("{body}\n");
        let prefix = format!("\u{2014} {} ", log.origin);
        let mut verified = false;
        for line in signatures.lines() {
            let Some(encoded) = line.strip_prefix(&prefix) else {
                continue;
            };
            let blob = STANDARD
                .decode(encoded)
                .map_err(|e| Error::malformed("checkpoint signature line", e.to_string()))?;
            let (key_id, signature) = blob.split_at_checked(4).ok_or_else(|| {
                Error::malformed("checkpoint signature line", "shorter than a key ID")
            })?;
            if key_id != &log.log_id[..4] {
                continue;
            }
            UnparsedPublicKey::new(&ED25519, public_key)
                .verify(signed.as_bytes(), signature)
                .map_err(|_| Error::malformed("checkpoint", "Ed25519 signature does not verify"))?;
            verified = true;
        }
        if !verified {
            return Err(Error::malformed(
                "checkpoint",
                "no signature line from the log key (by hand)",
            ));
        }
    }
    Ok(VerifiedCheckpoint {
        size,
        root,
        note: note.to_vec(),
    })
}

/// An entry that passed [`verify_entry`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedEntry {
    /// Its index.
    pub index: u64,
    /// Its leaf hash, SHA-256(0x00 ‖ canonicalizedBody).
    pub leaf_hash: [u8; 32],
    /// The checkpoint that covers it.
    pub checkpoint: VerifiedCheckpoint,
}

/// Verifies one `CreateEntry` answer for `submission`, completely:
///
/// - the checkpoint note (see [`verify_checkpoint`]);
/// - `logId.keyId` is the log ID; `kindVersion` is `hashedrekord`/`0.0.2`;
///   `integratedTime` is 0 and there is no `inclusionPromise` (Rekor v2);
/// - `inclusionProof.logIndex == logIndex < treeSize`, and `rootHash`/`treeSize` are the
///   checkpoint's;
/// - the inclusion proof of SHA-256(0x00 ‖ canonicalizedBody) verifies against the checkpoint
///   root, with `rekor-tlog` and with `tlog_tiles`;
/// - `canonicalizedBody` is RFC 8785 canonical JSON (re-canonicalising gives the same bytes)
///   and is exactly the entry the submission must produce.
///
/// # Errors
///
/// The first check that fails.
pub fn verify_entry(
    log: &TrustedLog,
    submission: &Submission,
    entry: &LogEntry,
) -> Result<VerifiedEntry> {
    let proof = entry
        .proof
        .as_ref()
        .ok_or_else(|| Error::malformed("inclusionProof", "missing"))?;
    let checkpoint = verify_checkpoint(log, proof.checkpoint.as_bytes())?;

    ensure_eq(
        "logId.keyId",
        hex::encode(log.log_id),
        hex::encode(&entry.log_id),
    )?;
    ensure_eq("kindVersion.kind", "hashedrekord", entry.kind.as_str())?;
    ensure_eq("kindVersion.version", "0.0.2", entry.version.as_str())?;
    ensure_eq("integratedTime", 0, entry.integrated_time)?;
    ensure_eq(
        "inclusionPromise present",
        false,
        entry.has_inclusion_promise,
    )?;
    ensure_eq("inclusionProof.logIndex", entry.log_index, proof.log_index)?;
    ensure_eq("inclusionProof.treeSize", checkpoint.size, proof.tree_size)?;
    ensure_eq(
        "inclusionProof.rootHash",
        hex::encode(checkpoint.root),
        hex::encode(&proof.root_hash),
    )?;
    if entry.log_index >= checkpoint.size {
        return Err(Error::mismatch(
            "logIndex",
            format!("< tree size {}", checkpoint.size),
            entry.log_index,
        ));
    }

    let leaf_hash = merkle::leaf_hash(&entry.canonicalized_body);
    let hashes: Vec<[u8; 32]> = proof
        .hashes
        .iter()
        .map(|h| {
            <[u8; 32]>::try_from(h.as_slice()).map_err(|_| {
                Error::malformed("inclusionProof.hashes[]", format!("{} bytes", h.len()))
            })
        })
        .collect::<Result<_>>()?;
    rekor_tlog::verify_inclusion(
        &TlogHash(leaf_hash),
        LeafIndex::new(entry.log_index),
        TreeSize::new(checkpoint.size),
        &hashes.iter().map(|h| TlogHash(*h)).collect::<Vec<_>>(),
        &TlogHash(checkpoint.root),
    )?;
    tlog_tiles::check_record(
        &hashes.iter().map(|h| tlog_tiles::Hash(*h)).collect(),
        checkpoint.size,
        tlog_tiles::Hash(checkpoint.root),
        entry.log_index,
        tlog_tiles::Hash(leaf_hash),
    )
    .map_err(|source| Error::TlogTiles {
        what: "check_record",
        source,
    })?;

    verify_body(&entry.canonicalized_body, submission)?;
    Ok(VerifiedEntry {
        index: entry.log_index,
        leaf_hash,
        checkpoint,
    })
}

/// Checks that `body` is RFC 8785 canonical JSON equal to the submission's expected entry.
///
/// # Errors
///
/// [`Error::Json`], or [`Error::Mismatch`] showing both texts.
pub fn verify_body(body: &[u8], submission: &Submission) -> Result<()> {
    let value: Value = serde_json::from_slice(body).map_err(|source| Error::Json {
        what: "canonicalizedBody".into(),
        source,
    })?;
    let canonical = serde_json_canonicalizer::to_vec(&value).map_err(|source| Error::Json {
        what: "canonicalizedBody (re-canonicalising)".into(),
        source,
    })?;
    if canonical != body {
        return Err(Error::mismatch(
            "canonicalizedBody is RFC 8785 canonical",
            String::from_utf8_lossy(&canonical),
            String::from_utf8_lossy(body),
        ));
    }
    let expected = submission.expected_body();
    if value != expected {
        return Err(Error::mismatch("canonicalizedBody", expected, value));
    }
    Ok(())
}

/// One tile coordinate, computed here from the C2SP tlog-tiles rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TileCoord {
    /// The tile level (each level is 8 tree levels).
    pub level: u8,
    /// The index within the level.
    pub index: u64,
    /// Its width, 1..=256.
    pub width: u64,
}

impl TileCoord {
    /// `tile/<L>/<N>[.p/<W>]`.
    pub fn path(&self) -> String {
        format!(
            "tile/{}/{}",
            self.level,
            index_and_width(self.index, self.width)
        )
    }

    /// `tile/entries/<N>[.p/<W>]` (level 0 only).
    pub fn bundle_path(&self) -> String {
        format!("tile/entries/{}", index_and_width(self.index, self.width))
    }
}

/// `<N>[.p/<W>]`: N as 3-digit groups, every group but the last prefixed by `x`.
pub fn index_and_width(index: u64, width: u64) -> String {
    let digits = index.to_string();
    let padded = format!("{}{digits}", "0".repeat((3 - digits.len() % 3) % 3));
    let groups: Vec<&str> = padded
        .as_bytes()
        .chunks(3)
        .map(|g| std::str::from_utf8(g).unwrap_or("???"))
        .collect();
    let mut out = String::new();
    for (i, group) in groups.iter().enumerate() {
        if i + 1 < groups.len() {
            out.push('x');
            out.push_str(group);
            out.push('/');
        } else {
            out.push_str(group);
        }
    }
    if width != 256 {
        out.push_str(&format!(".p/{width}"));
    }
    out
}

/// Every hash tile of a tree of `size` leaves: at each level the row of stored hashes has
/// `size >> 8·L` entries, cut into full tiles of 256 and a partial tail.
pub fn tiles_for_size(size: u64) -> Vec<TileCoord> {
    let mut out = Vec::new();
    for level in 0u8..8 {
        let row = size >> (8 * u32::from(level));
        if row == 0 {
            break;
        }
        for index in 0..row / 256 {
            out.push(TileCoord {
                level,
                index,
                width: 256,
            });
        }
        if !row.is_multiple_of(256) {
            out.push(TileCoord {
                level,
                index: row / 256,
                width: row % 256,
            });
        }
    }
    out
}

/// Splits an entry bundle: each entry is a big-endian uint16 length and that many bytes.
///
/// # Errors
///
/// [`Error::Malformed`] for a truncated bundle.
pub fn split_bundle(what: &str, mut data: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut entries = Vec::new();
    while !data.is_empty() {
        let Some((len, rest)) = data.split_first_chunk::<2>() else {
            return Err(Error::malformed(what, "truncated length prefix"));
        };
        let len = usize::from(u16::from_be_bytes(*len));
        let (entry, rest) = rest
            .split_at_checked(len)
            .ok_or_else(|| Error::malformed(what, "truncated entry"))?;
        entries.push(entry.to_vec());
        data = rest;
    }
    Ok(entries)
}

/// What [`audit`] saw.
#[derive(Clone, Debug)]
pub struct AuditReport {
    /// The checkpoint audited.
    pub checkpoint: VerifiedCheckpoint,
    /// Hash tiles fetched and checked.
    pub tiles: usize,
    /// Entry bundles fetched and checked.
    pub bundles: usize,
    /// Every entry, by index.
    pub entries: Vec<Vec<u8>>,
    /// Every leaf hash, by index.
    pub leaf_hashes: Vec<[u8; 32]>,
}

/// Audits the whole log over HTTP against its current checkpoint:
///
/// 1. fetch and verify the checkpoint;
/// 2. fetch every hash tile and entry bundle for its size (paths computed here), with the
///    immutable headers and exact lengths;
/// 3. each entry's leaf hash must equal its level-0 tile hash, and every higher-level tile
///    hash must equal the RFC 6962 hash of the leaves below it ([`merkle::root`]);
/// 4. the root of all leaves must equal the checkpoint root, computed with [`merkle::root`],
///    with `tlog_tiles::tree_hash` over stored hashes built from the leaves, and with
///    `tlog_tiles`' tile reader, which authenticates the served tiles themselves.
///
/// # Errors
///
/// The first check that fails.
pub async fn audit(http: &HttpClient, log: &TrustedLog) -> Result<AuditReport> {
    let note = http.checkpoint().await?;
    let checkpoint = verify_checkpoint(log, &note)?;
    let size = checkpoint.size;
    let coords = tiles_for_size(size);

    let mut tiles: HashMap<(u8, u64), (u64, Vec<u8>)> = HashMap::new();
    for coord in &coords {
        let path = coord.path();
        let data = http.tile(&path).await?;
        ensure_eq(
            format!("{path} length"),
            coord.width * 32,
            data.len() as u64,
        )?;
        tiles.insert((coord.level, coord.index), (coord.width, data.to_vec()));
    }

    let mut entries = Vec::new();
    let mut leaf_hashes = Vec::new();
    let mut bundles = 0;
    for coord in coords.iter().filter(|c| c.level == 0) {
        let path = coord.bundle_path();
        let data = http.tile(&path).await?;
        let bundle = split_bundle(&path, &data)?;
        ensure_eq(
            format!("{path} entry count"),
            coord.width,
            bundle.len() as u64,
        )?;
        let (_, tile) = &tiles[&(0, coord.index)];
        for (k, entry) in bundle.into_iter().enumerate() {
            let leaf = merkle::leaf_hash(&entry);
            let offset = k * 32;
            ensure_eq(
                format!(
                    "leaf hash of entry {} vs {}",
                    coord.index * 256 + k as u64,
                    coord.path()
                ),
                hex::encode(&tile[offset..offset + 32]),
                hex::encode(leaf),
            )?;
            entries.push(entry);
            leaf_hashes.push(leaf);
        }
        bundles += 1;
    }
    ensure_eq("entries in bundles", size, entries.len() as u64)?;

    for coord in coords.iter().filter(|c| c.level > 0) {
        let (_, tile) = &tiles[&(coord.level, coord.index)];
        let span = 1usize << (8 * u32::from(coord.level));
        for k in 0..usize::try_from(coord.width).unwrap_or(0) {
            let start = (usize::try_from(coord.index).unwrap_or(usize::MAX) * 256 + k) * span;
            let expected = merkle::root(&leaf_hashes[start..start + span]);
            ensure_eq(
                format!("{} hash {k}", coord.path()),
                hex::encode(expected),
                hex::encode(&tile[k * 32..k * 32 + 32]),
            )?;
        }
    }

    ensure_eq(
        "checkpoint root vs RFC 6962 root of the bundles (testkit)",
        hex::encode(checkpoint.root),
        hex::encode(merkle::root(&leaf_hashes)),
    )?;
    if size > 0 {
        tlog_tiles_roots(size, checkpoint.root, &leaf_hashes, &tiles)?;
    }

    Ok(AuditReport {
        checkpoint,
        tiles: coords.len(),
        bundles,
        entries,
        leaf_hashes,
    })
}

/// Stored hashes in `tlog_tiles`' linear order, built from the leaves.
struct StoredHashes(Vec<tlog_tiles::Hash>);

impl tlog_tiles::HashReader for StoredHashes {
    fn read_hashes(
        &self,
        indexes: &[u64],
    ) -> std::result::Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.0.get(i).copied())
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

/// The served tiles, as `tlog_tiles` asks for them.
struct ServedTiles<'a>(&'a HashMap<(u8, u64), (u64, Vec<u8>)>);

impl tlog_tiles::TileReader for ServedTiles<'_> {
    fn height(&self) -> u8 {
        8
    }

    fn read_tiles(
        &self,
        tiles: &[tlog_tiles::Tile],
    ) -> std::result::Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        tiles
            .iter()
            .map(|t| match self.0.get(&(t.level(), t.level_index())) {
                Some((width, data)) if *width == u64::from(t.width()) => Ok(data.clone()),
                _ => Err(tlog_tiles::Error::InvalidTile),
            })
            .collect()
    }

    fn save_tiles(&self, _tiles: &[tlog_tiles::Tile], _data: &[Vec<u8>]) {}
}

fn tlog_tiles_roots(
    size: u64,
    root: [u8; 32],
    leaves: &[[u8; 32]],
    tiles: &HashMap<(u8, u64), (u64, Vec<u8>)>,
) -> Result<()> {
    let tt = |what| move |source| Error::TlogTiles { what, source };
    let mut stored = StoredHashes(Vec::new());
    for (n, leaf) in (0u64..).zip(leaves) {
        let new = tlog_tiles::stored_hashes_for_record_hash(n, tlog_tiles::Hash(*leaf), &stored)
            .map_err(tt("stored_hashes_for_record_hash"))?;
        stored.0.extend(new);
    }
    let from_leaves = tlog_tiles::tree_hash(size, &stored).map_err(tt("tree_hash over leaves"))?;
    ensure_eq(
        "checkpoint root vs tlog_tiles::tree_hash of the bundles",
        hex::encode(root),
        hex::encode(from_leaves.0),
    )?;

    // The tile reader authenticates every tile it loads against the root it is given.
    let served = ServedTiles(tiles);
    let reader = tlog_tiles::TileHashReader::new(size, tlog_tiles::Hash(root), &served);
    let from_tiles = tlog_tiles::tree_hash(size, &reader).map_err(tt("tree_hash over tiles"))?;
    ensure_eq(
        "checkpoint root vs tlog_tiles::tree_hash of the tiles",
        hex::encode(root),
        hex::encode(from_tiles.0),
    )?;
    let indexes: Vec<u64> = (0..size)
        .map(|i| tlog_tiles::stored_hash_index(0, i))
        .collect();
    let leaf_hashes = tlog_tiles::HashReader::read_hashes(&reader, &indexes)
        .map_err(tt("reading every leaf hash from the tiles"))?;
    for (i, (served, leaf)) in leaf_hashes.iter().zip(leaves).enumerate() {
        ensure_eq(
            format!("tlog_tiles leaf hash {i}"),
            hex::encode(leaf),
            hex::encode(served.0),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_paths_follow_the_spec_examples() {
        // c2sp.org/tlog-tiles: index 1234067 is x001/x234/067.
        assert_eq!(index_and_width(1_234_067, 256), "x001/x234/067");
        assert_eq!(index_and_width(0, 256), "000");
        assert_eq!(index_and_width(5, 17), "005.p/17");
        assert_eq!(index_and_width(1000, 256), "x001/000");
        assert_eq!(index_and_width(999, 1), "999.p/1");
    }

    #[test]
    fn tiles_for_size_covers_each_level() {
        let paths = |size| {
            tiles_for_size(size)
                .iter()
                .map(TileCoord::path)
                .collect::<Vec<_>>()
        };
        assert!(paths(0).is_empty());
        assert_eq!(paths(1), ["tile/0/000.p/1"]);
        assert_eq!(paths(256), ["tile/0/000", "tile/1/000.p/1"]);
        assert_eq!(
            paths(300),
            ["tile/0/000", "tile/0/001.p/44", "tile/1/000.p/1"]
        );
        let big = paths(65_536 + 3);
        assert_eq!(big.len(), 256 + 1 + 1 + 1);
        assert_eq!(big[255], "tile/0/255");
        assert_eq!(big[256], "tile/0/256.p/3");
        assert_eq!(big[257], "tile/1/000");
        assert_eq!(big[258], "tile/2/000.p/1");
    }

    #[test]
    fn bundles_split_and_refuse_truncation() {
        assert_eq!(
            split_bundle("b", &[0, 1, 7, 0, 2, 8, 9]).unwrap(),
            [vec![7], vec![8, 9]]
        );
        assert!(split_bundle("b", &[0, 3, 1]).is_err());
        assert!(split_bundle("b", &[0]).is_err());
        assert!(split_bundle("b", &[]).unwrap().is_empty());
    }
}
