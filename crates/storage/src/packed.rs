//! How the cloud coordinators store a run of sequenced leaves in one database cell: each leaf as
//! its length (`u32`, big-endian) followed by its bytes, one after another. One cell per batch
//! keeps `sequence` to a single row write and `read_sequenced` to a few row reads.

use bytes::Bytes;

use crate::{Error, Result};

/// The bytes one leaf takes in packed form.
pub(crate) fn packed_len(leaf: &[u8]) -> usize {
    leaf.len() + 4
}

/// Appends one leaf to `packed`.
pub(crate) fn push(packed: &mut Vec<u8>, leaf: &[u8], backend: &'static str) -> Result<()> {
    let length = u32::try_from(leaf.len()).map_err(|_| Error::Corrupt {
        backend,
        what: "a leaf longer than 4 GiB",
    })?;
    packed.extend_from_slice(&length.to_be_bytes());
    packed.extend_from_slice(leaf);
    Ok(())
}

/// Splits a packed cell into its leaves (slices of one copy of the cell); `count` must match.
pub(crate) fn unpack(packed: &[u8], count: u64, backend: &'static str) -> Result<Vec<Bytes>> {
    let corrupt = |what| Error::Corrupt { backend, what };
    let mut rest = Bytes::copy_from_slice(packed);
    let mut leaves = Vec::new();
    while !rest.is_empty() {
        let length = rest
            .first_chunk::<4>()
            .ok_or_else(|| corrupt("truncated sequenced leaf length"))?;
        let length = usize::try_from(u32::from_be_bytes(*length))
            .map_err(|_| corrupt("sequenced leaf length"))?;
        let end = length
            .checked_add(4)
            .filter(|end| *end <= rest.len())
            .ok_or_else(|| corrupt("truncated sequenced leaf"))?;
        leaves.push(rest.slice(4..end));
        rest = rest.slice(end..);
    }
    if u64::try_from(leaves.len()).ok() != Some(count) {
        return Err(corrupt("sequenced leaf count"));
    }
    Ok(leaves)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail by panicking")]
    use super::*;

    #[test]
    fn leaves_round_trip_and_corrupt_cells_are_refused() {
        let leaves: [&[u8]; 3] = [b"one", b"", &[7u8; 300]];
        let mut packed = Vec::new();
        for leaf in leaves {
            push(&mut packed, leaf, "test").unwrap();
        }
        assert_eq!(
            packed.len(),
            leaves.iter().map(|l| packed_len(l)).sum::<usize>()
        );
        let unpacked = unpack(&packed, 3, "test").unwrap();
        assert_eq!(unpacked, leaves.map(Bytes::copy_from_slice).to_vec());
        assert!(unpack(&packed, 2, "test").is_err(), "wrong count");
        assert!(
            unpack(&packed[..packed.len() - 1], 3, "test").is_err(),
            "truncated leaf"
        );
        assert!(unpack(&[0, 0], 1, "test").is_err(), "truncated length");
        assert_eq!(unpack(&[], 0, "test").unwrap(), Vec::<Bytes>::new());
    }
}
