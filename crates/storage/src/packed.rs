//! How the cloud coordinators store a run of sequenced leaves in one database cell: each leaf as
//! its length (`u32`, big-endian) followed by its bytes, one after another. One cell per batch
//! keeps `sequence` to a single row write and `read_sequenced` to a few row reads.

use bytes::Bytes;

use crate::{Error, Result, SequenceState};

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

/// Gathers the leaves `from..to` out of packed rows read in index order (rows may start before
/// `from` and end after `to`); a gap is [`Error::NotFound`] naming the first missing index.
pub(crate) struct LeafRange {
    from: u64,
    to: u64,
    leaves: Vec<Bytes>,
    backend: &'static str,
}

impl LeafRange {
    /// A range to read, checked against the sequencing state read in the same transaction:
    /// leaves below the integrated size are released, those at or past the sequenced size do
    /// not exist yet; either is [`Error::NotFound`].
    pub(crate) fn new(
        from: u64,
        to: u64,
        state: SequenceState,
        backend: &'static str,
    ) -> Result<Self> {
        let range = LeafRange {
            from,
            to,
            leaves: Vec::new(),
            backend,
        };
        if from < state.integrated {
            return Err(range.missing());
        }
        if to > state.sequenced {
            return Err(Error::NotFound {
                path: format!("sequenced leaf {}", state.sequenced.max(from)),
            });
        }
        Ok(range)
    }

    fn next(&self) -> u64 {
        self.from + u64::try_from(self.leaves.len()).unwrap_or(u64::MAX)
    }

    fn missing(&self) -> Error {
        Error::NotFound {
            path: format!("sequenced leaf {}", self.next()),
        }
    }

    /// Takes the wanted leaves of the row holding `count` leaves from index `first`.
    pub(crate) fn push_row(&mut self, first: u64, count: u64, packed: &[u8]) -> Result<()> {
        for (index, leaf) in (first..).zip(unpack(packed, count, self.backend)?) {
            if index < self.from || index >= self.to {
                continue;
            }
            if index != self.next() {
                return Err(self.missing());
            }
            self.leaves.push(leaf);
        }
        Ok(())
    }

    /// The leaves, if every index in the range was found.
    pub(crate) fn finish(self) -> Result<Vec<Bytes>> {
        if self.next() != self.to {
            return Err(self.missing());
        }
        Ok(self.leaves)
    }
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

    const ALL: SequenceState = SequenceState {
        integrated: 0,
        sequenced: 10,
    };

    fn row(leaves: &[&[u8]]) -> Vec<u8> {
        let mut packed = Vec::new();
        for leaf in leaves {
            push(&mut packed, leaf, "test").unwrap();
        }
        packed
    }

    #[test]
    fn a_range_takes_what_it_wants_from_rows_and_names_the_first_gap() {
        let mut range = LeafRange::new(1, 4, ALL, "test").unwrap();
        range.push_row(0, 2, &row(&[b"a", b"b"])).unwrap();
        range.push_row(2, 3, &row(&[b"c", b"d", b"e"])).unwrap();
        let leaves = range.finish().unwrap();
        assert_eq!(
            leaves,
            vec![Bytes::from("b"), Bytes::from("c"), Bytes::from("d")]
        );

        let mut gap = LeafRange::new(0, 4, ALL, "test").unwrap();
        gap.push_row(0, 1, &row(&[b"a"])).unwrap();
        let error = gap.push_row(2, 1, &row(&[b"c"])).unwrap_err();
        assert!(matches!(error, Error::NotFound { path } if path == "sequenced leaf 1"));

        let mut short = LeafRange::new(0, 3, ALL, "test").unwrap();
        short.push_row(0, 2, &row(&[b"a", b"b"])).unwrap();
        let error = short.finish().unwrap_err();
        assert!(matches!(error, Error::NotFound { path } if path == "sequenced leaf 2"));

        let state = SequenceState {
            integrated: 2,
            sequenced: 5,
        };
        let released = LeafRange::new(1, 3, state, "test").err().unwrap();
        assert!(matches!(released, Error::NotFound { path } if path == "sequenced leaf 1"));
        let unsequenced = LeafRange::new(3, 6, state, "test").err().unwrap();
        assert!(matches!(unsequenced, Error::NotFound { path } if path == "sequenced leaf 5"));
        assert!(LeafRange::new(2, 5, state, "test").is_ok());
    }
}
