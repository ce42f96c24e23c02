//! Helpers the POSIX backend's unit tests share.

use std::fs;
use std::path::Path;

use rekor_tlog::{BundleId, TileIndex, TileWidth, encode_bundle};

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
