//! Entry bundles: `tile/entries/<N>[.p/<W>]`, each entry prefixed by its big-endian `u16` length.

use crate::{
    BundleError, BundleId, TileIndex, TileWidth, TreeSize,
    coords::{FULL_TILE_WIDTH, low_byte},
};

/// Largest entry that fits in a bundle: its length must fit in the `u16` prefix.
pub const MAX_ENTRY_SIZE: usize = 65_535;

/// Most entries in one bundle.
const MAX_BUNDLE_ENTRIES: usize = 256;

/// Encodes 1 to 256 entries as one bundle.
///
/// # Errors
///
/// [`BundleError::EntryTooLarge`] for an entry over [`MAX_ENTRY_SIZE`] bytes,
/// [`BundleError::TooManyEntries`] for more than 256 entries, [`BundleError::Empty`] for none.
pub fn encode_bundle<'a>(
    entries: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<u8>, BundleError> {
    let mut out = Vec::new();
    let mut count = 0;
    for (index, entry) in entries.into_iter().enumerate() {
        if index >= MAX_BUNDLE_ENTRIES {
            return Err(BundleError::TooManyEntries {
                max: MAX_BUNDLE_ENTRIES,
            });
        }
        push_entry(&mut out, index, entry)?;
        count += 1;
    }
    if count == 0 {
        return Err(BundleError::Empty);
    }
    Ok(out)
}

fn push_entry(out: &mut Vec<u8>, index: usize, entry: &[u8]) -> Result<(), BundleError> {
    let len = u16::try_from(entry.len()).map_err(|_| BundleError::EntryTooLarge {
        index,
        len: entry.len(),
        max: MAX_ENTRY_SIZE,
    })?;
    out.reserve(2 + entry.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(entry);
    Ok(())
}

/// Decodes a bundle into its 1 to 256 entries, borrowing from `bytes`.
///
/// # Errors
///
/// [`BundleError::TruncatedLength`] or [`BundleError::TruncatedEntry`] if the bytes end inside a
/// prefix or an entry (so no trailing bytes are accepted), [`BundleError::TooManyEntries`] if
/// bytes remain after 256 entries, [`BundleError::Empty`] for empty input.
pub fn decode_bundle(bytes: &[u8]) -> Result<Vec<&[u8]>, BundleError> {
    let mut entries = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        if entries.len() == MAX_BUNDLE_ENTRIES {
            return Err(BundleError::TooManyEntries {
                max: MAX_BUNDLE_ENTRIES,
            });
        }
        let offset = bytes.len() - rest.len();
        let (prefix, after) = rest
            .split_first_chunk::<2>()
            .ok_or(BundleError::TruncatedLength { offset })?;
        let declared = usize::from(u16::from_be_bytes(*prefix));
        if after.len() < declared {
            return Err(BundleError::TruncatedEntry {
                index: entries.len(),
                declared,
                available: after.len(),
            });
        }
        let (entry, next) = after.split_at(declared);
        entries.push(entry);
        rest = next;
    }
    if entries.is_empty() {
        return Err(BundleError::Empty);
    }
    Ok(entries)
}

/// Decodes a bundle that must hold exactly `width` entries (as named by its path).
///
/// # Errors
///
/// As [`decode_bundle`], plus [`BundleError::WidthMismatch`] if the count differs.
pub fn decode_bundle_exact(bytes: &[u8], width: TileWidth) -> Result<Vec<&[u8]>, BundleError> {
    let entries = decode_bundle(bytes)?;
    if entries.len() != width.to_usize() {
        return Err(BundleError::WidthMismatch {
            expected: width.to_usize(),
            actual: entries.len(),
        });
    }
    Ok(entries)
}

/// Builds entry bundles incrementally: holds the encoded partial bundle at the end of the log.
#[derive(Debug, Clone, Default)]
pub struct BundleBuilder {
    /// Index of the bundle currently being filled.
    index: u64,
    /// Entries in it (0..=255).
    count: u16,
    /// Its encoding so far.
    buf: Vec<u8>,
}

impl BundleBuilder {
    /// A builder for an empty log.
    #[must_use]
    pub fn new() -> Self {
        BundleBuilder::default()
    }

    /// Resumes at a log of `size` entries, given the bytes of its partial bundle
    /// (`None` when `size` is a multiple of 256, since there is then no partial bundle).
    ///
    /// # Errors
    ///
    /// [`BundleError::WidthMismatch`] if the bundle does not hold exactly `size % 256` entries
    /// (or bytes are given when none are expected, or missing when some are), and any
    /// [`decode_bundle`] error.
    pub fn resume(size: TreeSize, partial_bundle: Option<&[u8]>) -> Result<Self, BundleError> {
        let expected = low_byte(size.get());
        let count = match partial_bundle {
            None => 0,
            Some(bytes) => decode_bundle(bytes)?.len(),
        };
        if count != usize::from(expected) {
            return Err(BundleError::WidthMismatch {
                expected: usize::from(expected),
                actual: count,
            });
        }
        let mut buf = Vec::new();
        if let Some(bytes) = partial_bundle {
            buf.extend_from_slice(bytes);
        }
        Ok(BundleBuilder {
            index: size.get() >> 8,
            count: u16::from(expected),
            buf,
        })
    }

    /// Number of entries in the log so far.
    #[must_use]
    pub fn size(&self) -> TreeSize {
        TreeSize::new((self.index << 8) | u64::from(self.count))
    }

    /// The current partial bundle and its encoding, if the size is not a multiple of 256.
    #[must_use]
    pub fn partial_bundle(&self) -> Option<(BundleId, &[u8])> {
        let width = TileWidth::new(self.count)?;
        if width.is_full() {
            return None;
        }
        Some((BundleId::new(TileIndex::new(self.index), width), &self.buf))
    }

    /// Appends entries and returns every bundle whose contents changed, with its full encoding:
    /// each bundle that became full, then the new partial bundle (if any), in index order.
    ///
    /// Nothing is appended if an error is returned.
    ///
    /// # Errors
    ///
    /// [`BundleError::EntryTooLarge`] if an entry is over [`MAX_ENTRY_SIZE`] bytes;
    /// [`BundleError::SizeOverflow`] if the log would exceed `u64::MAX` entries.
    pub fn append<E: AsRef<[u8]>>(
        &mut self,
        entries: &[E],
    ) -> Result<Vec<(BundleId, Vec<u8>)>, BundleError> {
        for (index, entry) in entries.iter().enumerate() {
            let len = entry.as_ref().len();
            if len > MAX_ENTRY_SIZE {
                return Err(BundleError::EntryTooLarge {
                    index,
                    len,
                    max: MAX_ENTRY_SIZE,
                });
            }
        }
        let added = u64::try_from(entries.len()).map_err(|_| BundleError::SizeOverflow)?;
        self.size()
            .get()
            .checked_add(added)
            .ok_or(BundleError::SizeOverflow)?;

        let mut out = Vec::new();
        let mut next = 0;
        while next < entries.len() {
            let room = usize::from(FULL_TILE_WIDTH - self.count);
            let chunk = &entries[next..entries.len().min(next + room)];
            // One allocation for what this bundle gains: a full bundle of typical entries is a
            // quarter MiB, and growing it by doubling cost a copy and fresh pages each time.
            self.buf
                .reserve(chunk.iter().map(|e| 2 + e.as_ref().len()).sum());
            for (offset, entry) in chunk.iter().enumerate() {
                push_entry(&mut self.buf, next + offset, entry.as_ref())?;
            }
            next += chunk.len();
            // `chunk` holds at most `room` entries, so this cannot pass 256.
            self.count += u16::try_from(chunk.len()).map_err(|_| BundleError::SizeOverflow)?;
            if self.count == FULL_TILE_WIDTH {
                let full = std::mem::take(&mut self.buf);
                out.push((
                    BundleId::new(TileIndex::new(self.index), TileWidth::FULL),
                    full,
                ));
                self.index += 1;
                self.count = 0;
            }
        }
        if !entries.is_empty()
            && let Some((id, bytes)) = self.partial_bundle()
        {
            out.push((id, bytes.to_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_layout() {
        let encoded = encode_bundle([b"ab".as_slice(), b"".as_slice(), &[7u8; 300]]).unwrap();
        let mut want = vec![0, 2, b'a', b'b', 0, 0, 0x01, 0x2c];
        want.extend_from_slice(&[7u8; 300]);
        assert_eq!(encoded, want);
        assert_eq!(
            decode_bundle(&encoded).unwrap(),
            vec![b"ab".as_slice(), b"".as_slice(), &[7u8; 300]]
        );
    }

    #[test]
    fn encode_limits() {
        let max = vec![1u8; MAX_ENTRY_SIZE];
        let encoded = encode_bundle([max.as_slice()]).unwrap();
        assert_eq!(&encoded[..2], &[0xff, 0xff]);
        assert_eq!(decode_bundle(&encoded).unwrap(), vec![max.as_slice()]);

        let big = vec![1u8; MAX_ENTRY_SIZE + 1];
        assert_eq!(
            encode_bundle([b"x".as_slice(), big.as_slice()]),
            Err(BundleError::EntryTooLarge {
                index: 1,
                len: 65_536,
                max: MAX_ENTRY_SIZE
            })
        );
        let many = vec![b"e".as_slice(); 257];
        assert_eq!(
            encode_bundle(many.iter().copied()),
            Err(BundleError::TooManyEntries { max: 256 })
        );
        assert!(encode_bundle(many.iter().copied().take(256)).is_ok());
        assert_eq!(encode_bundle(std::iter::empty()), Err(BundleError::Empty));
    }

    #[test]
    fn decode_rejections() {
        use BundleError::*;
        let full: Vec<u8> = (0..256).flat_map(|_| [0u8, 1, 9]).collect();
        let cases: Vec<(Vec<u8>, BundleError)> = vec![
            (vec![], Empty),
            (vec![0], TruncatedLength { offset: 0 }),
            (vec![0, 1, 5, 0], TruncatedLength { offset: 3 }),
            (
                vec![0, 3, 1, 2],
                TruncatedEntry {
                    index: 0,
                    declared: 3,
                    available: 2,
                },
            ),
            (
                vec![0, 0, 0xff, 0xff],
                TruncatedEntry {
                    index: 1,
                    declared: 65_535,
                    available: 0,
                },
            ),
            (
                [full.clone(), vec![0, 0]].concat(),
                TooManyEntries { max: 256 },
            ),
            (
                [full.clone(), vec![0]].concat(),
                TooManyEntries { max: 256 },
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(decode_bundle(&bytes), Err(want.clone()), "{bytes:?}");
        }
        assert_eq!(decode_bundle(&full).unwrap().len(), 256);
        assert_eq!(
            decode_bundle_exact(&[0, 1, 5], TileWidth::new(2).unwrap()),
            Err(WidthMismatch {
                expected: 2,
                actual: 1
            })
        );
        assert_eq!(
            decode_bundle_exact(&[0, 1, 5], TileWidth::new(1).unwrap()).unwrap(),
            vec![&[5u8][..]]
        );
    }

    fn entries(range: std::ops::Range<u32>) -> Vec<Vec<u8>> {
        range.map(|i| i.to_be_bytes().to_vec()).collect()
    }

    #[test]
    fn builder_emits_changed_bundles_and_resumes() {
        let all = entries(0..800);
        let mut builder = BundleBuilder::new();
        let out = builder.append(&all[..100]).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0.path(), "tile/entries/000.p/100");
        let out = builder.append(&all[100..600]).unwrap();
        let paths: Vec<String> = out.iter().map(|(id, _)| id.path()).collect();
        assert_eq!(
            paths,
            [
                "tile/entries/000",
                "tile/entries/001",
                "tile/entries/002.p/88"
            ]
        );
        let slices: Vec<&[u8]> = all[256..512].iter().map(Vec::as_slice).collect();
        assert_eq!(out[1].1, encode_bundle(slices).unwrap());
        let slices: Vec<&[u8]> = all[512..600].iter().map(Vec::as_slice).collect();
        assert_eq!(out[2].1, encode_bundle(slices).unwrap());
        assert_eq!(builder.size().get(), 600);
        assert!(builder.append::<Vec<u8>>(&[]).unwrap().is_empty());

        // Resume from the partial bundle and compare with a builder that never stopped.
        let (_, partial) = builder.partial_bundle().unwrap();
        let mut resumed = BundleBuilder::resume(TreeSize::new(600), Some(partial)).unwrap();
        let a = builder.append(&all[600..800]).unwrap();
        let b = resumed.append(&all[600..800]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].0.path(), "tile/entries/002");
        assert_eq!(a[1].0.path(), "tile/entries/003.p/32");
        let slices: Vec<&[u8]> = all[512..768].iter().map(Vec::as_slice).collect();
        assert_eq!(a[0].1, encode_bundle(slices).unwrap());

        // Exact multiple of 256: no partial bundle.
        let mut at_512 = BundleBuilder::resume(TreeSize::new(512), None).unwrap();
        assert!(at_512.partial_bundle().is_none());
        let out = at_512.append(&all[512..513]).unwrap();
        assert_eq!(out[0].0.path(), "tile/entries/002.p/1");
    }

    #[test]
    fn builder_rejections_leave_state_unchanged() {
        let mut builder = BundleBuilder::new();
        builder.append(&entries(0..3)).unwrap();
        let big = vec![vec![1u8], vec![0u8; MAX_ENTRY_SIZE + 1]];
        assert_eq!(
            builder.append(&big),
            Err(BundleError::EntryTooLarge {
                index: 1,
                len: MAX_ENTRY_SIZE + 1,
                max: MAX_ENTRY_SIZE
            })
        );
        assert_eq!(builder.size().get(), 3);
        assert_eq!(builder.partial_bundle().unwrap().0.width.get(), 3);

        let partial = encode_bundle([b"a".as_slice(), b"b".as_slice()]).unwrap();
        assert_eq!(
            BundleBuilder::resume(TreeSize::new(3), Some(&partial)).unwrap_err(),
            BundleError::WidthMismatch {
                expected: 3,
                actual: 2
            }
        );
        assert_eq!(
            BundleBuilder::resume(TreeSize::new(256), Some(&partial)).unwrap_err(),
            BundleError::WidthMismatch {
                expected: 0,
                actual: 2
            }
        );
        assert_eq!(
            BundleBuilder::resume(TreeSize::new(2), None).unwrap_err(),
            BundleError::WidthMismatch {
                expected: 2,
                actual: 0
            }
        );
        assert_eq!(
            BundleBuilder::resume(TreeSize::new(2), Some(&[0, 5])).unwrap_err(),
            BundleError::TruncatedEntry {
                index: 0,
                declared: 5,
                available: 0
            }
        );

        let mut near_max = BundleBuilder::resume(TreeSize::new(u64::MAX - 255), None).unwrap();
        assert_eq!(near_max.size().get(), u64::MAX - 255);
        assert_eq!(
            near_max.append(&entries(0..256)),
            Err(BundleError::SizeOverflow)
        );
    }
}
