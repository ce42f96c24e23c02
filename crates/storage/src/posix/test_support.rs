//! Helpers the POSIX backend's unit tests share.

use std::fs::{self, File};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use rekor_tlog::{BundleId, TileIndex, TileWidth, encode_bundle};

use super::PosixCoordinator;
use crate::{SequenceLeaf, dedup_key};

/// Entries per dedup run in these tests.
pub(super) const UNIT: u64 = 512;

/// Opens a coordinator whose private directory is also the log root, with runs of [`UNIT`]
/// entries and no background sync.
pub(super) fn open_coordinator(dir: &Path) -> crate::Result<PosixCoordinator> {
    let lock = Arc::new(File::create(dir.join("lock")).unwrap());
    let (coordinator, _) =
        PosixCoordinator::open(dir, dir, lock, std::time::Duration::from_secs(3600), UNIT)?;
    Ok(coordinator)
}

/// The bytes of test entry `n`.
pub(super) fn entry(n: u64) -> Vec<u8> {
    format!("{{\"entry\":{n}}}").into_bytes()
}

/// Test entry `n`, to sequence.
pub(super) fn leaf(n: u64) -> SequenceLeaf {
    let data = entry(n);
    SequenceLeaf {
        dedup_key: dedup_key(&data),
        data: Bytes::from(data),
    }
}

/// The names of the files in `dir`, sorted.
pub(super) fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Writes `entries` (from index 0) as entry bundles under `root`, as the integrator would: full
/// bundles, then the partial one.
pub(super) fn write_bundles(root: &Path, entries: &[Vec<u8>]) {
    for (bundle, chunk) in (0u64..).zip(entries.chunks(256)) {
        let width = TileWidth::new(u16::try_from(chunk.len()).unwrap()).unwrap();
        let path = root.join(BundleId::new(TileIndex::new(bundle), width).path());
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(
            path,
            encode_bundle(chunk.iter().map(Vec::as_slice)).unwrap(),
        )
        .unwrap();
    }
}
