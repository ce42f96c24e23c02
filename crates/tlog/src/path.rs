//! Parsing and printing tile and entry-bundle paths (C2SP tlog-tiles).

use std::{fmt, str::FromStr};

use crate::{
    BundleId, PathError, TileId, TileIndex, TileLevel, TileWidth,
    coords::{FULL_TILE_WIDTH, MAX_TILE_LEVEL},
};

/// The longest valid tile path, in bytes: `tile/entries/x018/x446/x744/x073/x709/x551/615.p/255`
/// (the index `u64::MAX`). Longer input is rejected before any other check.
pub const MAX_TILE_PATH_LEN: usize = 52;

/// A parsed tile path: either a hash tile or an entry bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TilePath {
    /// `tile/<L>/<N>[.p/<W>]`
    Hash(TileId),
    /// `tile/entries/<N>[.p/<W>]`
    Entries(BundleId),
}

impl TilePath {
    /// Parses the path below the log's URL prefix, such as `tile/0/x001/234` or
    /// `tile/entries/000.p/5`.
    ///
    /// The parser is strict and accepts exactly the canonical paths that [`TilePath::path`]
    /// prints: the level is a decimal 0..=63 without leading zeros; every index element is three
    /// digits, all but the last prefixed by `x`, with no redundant leading `x000`; the index fits
    /// in 64 bits; a partial width `.p/<W>` is a decimal 1..=255 without leading zeros (a full
    /// tile never has the suffix). Nothing may precede or follow.
    ///
    /// # Errors
    ///
    /// Returns a [`PathError`] naming the first rule the path breaks. The length limit
    /// [`MAX_TILE_PATH_LEN`] is checked first.
    pub fn parse(path: &str) -> Result<TilePath, PathError> {
        if path.len() > MAX_TILE_PATH_LEN {
            return Err(PathError::TooLong {
                len: path.len(),
                max: MAX_TILE_PATH_LEN,
            });
        }
        let rest = path.strip_prefix("tile/").ok_or(PathError::MissingPrefix)?;
        let (kind, rest) = rest.split_once('/').ok_or(PathError::MissingIndex)?;
        let level = if kind == "entries" {
            None
        } else {
            Some(parse_level(kind)?)
        };
        let (index_text, width) = match rest.split_once(".p/") {
            Some((index_text, width_text)) => (index_text, parse_width(width_text)?),
            None => (rest, TileWidth::FULL),
        };
        let index = parse_index(index_text)?;
        Ok(match level {
            Some(level) => TilePath::Hash(TileId::new(level, index, width)),
            None => TilePath::Entries(BundleId::new(index, width)),
        })
    }

    /// The canonical path, without a leading slash.
    #[must_use]
    pub fn path(&self) -> String {
        match self {
            TilePath::Hash(tile) => tile.path(),
            TilePath::Entries(bundle) => bundle.path(),
        }
    }
}

impl FromStr for TilePath {
    type Err = PathError;

    fn from_str(path: &str) -> Result<Self, Self::Err> {
        TilePath::parse(path)
    }
}

impl fmt::Display for TilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

impl From<TileId> for TilePath {
    fn from(tile: TileId) -> Self {
        TilePath::Hash(tile)
    }
}

impl From<BundleId> for TilePath {
    fn from(bundle: BundleId) -> Self {
        TilePath::Entries(bundle)
    }
}

/// Parses a decimal with 1 to `max_digits` digits and no leading zero (except "0" itself).
fn parse_canonical_decimal(text: &str, max_digits: usize) -> Option<u64> {
    let bytes = text.as_bytes();
    if bytes.is_empty() || bytes.len() > max_digits || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if bytes.len() > 1 && bytes.first() == Some(&b'0') {
        return None;
    }
    text.parse().ok()
}

fn parse_level(text: &str) -> Result<TileLevel, PathError> {
    parse_canonical_decimal(text, 2)
        .and_then(|value| u8::try_from(value).ok())
        .filter(|value| *value <= MAX_TILE_LEVEL)
        .and_then(TileLevel::new)
        .ok_or(PathError::InvalidLevel)
}

fn parse_width(text: &str) -> Result<TileWidth, PathError> {
    parse_canonical_decimal(text, 3)
        .and_then(|value| u16::try_from(value).ok())
        .filter(|value| *value < FULL_TILE_WIDTH)
        .and_then(TileWidth::new)
        .ok_or(PathError::InvalidWidth)
}

/// Parses exactly three ASCII digits.
fn parse_group(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    if bytes.len() == 3 && bytes.iter().all(u8::is_ascii_digit) {
        text.parse().ok()
    } else {
        None
    }
}

fn parse_index(text: &str) -> Result<TileIndex, PathError> {
    if text.is_empty() {
        return Err(PathError::MissingIndex);
    }
    let mut elements = text.split('/').enumerate().peekable();
    let mut value: u64 = 0;
    while let Some((position, element)) = elements.next() {
        let is_last = elements.peek().is_none();
        let digits = if is_last {
            Some(element)
        } else {
            element.strip_prefix('x')
        };
        let group = digits
            .and_then(parse_group)
            .ok_or(PathError::InvalidIndexElement { position })?;
        if position == 0 && !is_last && group == 0 {
            return Err(PathError::NonCanonicalIndex);
        }
        value = value
            .checked_mul(1000)
            .and_then(|v| v.checked_add(group))
            .ok_or(PathError::IndexOverflow)?;
    }
    Ok(TileIndex::new(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_tile(level: u8, index: u64, width: u16) -> TilePath {
        TilePath::Hash(TileId::new(
            TileLevel::new(level).unwrap(),
            TileIndex::new(index),
            TileWidth::new(width).unwrap(),
        ))
    }

    fn bundle(index: u64, width: u16) -> TilePath {
        TilePath::Entries(BundleId::new(
            TileIndex::new(index),
            TileWidth::new(width).unwrap(),
        ))
    }

    #[test]
    fn accepts_canonical_paths() {
        let cases = [
            ("tile/0/x001/234", hash_tile(0, 1234, 256)),
            ("tile/0/x001/x234/067", hash_tile(0, 1_234_067, 256)),
            ("tile/0/x001/x234/067.p/17", hash_tile(0, 1_234_067, 17)),
            ("tile/63/000", hash_tile(63, 0, 256)),
            ("tile/10/999.p/1", hash_tile(10, 999, 1)),
            ("tile/entries/000.p/5", bundle(0, 5)),
            ("tile/entries/x001/000", bundle(1000, 256)),
            ("tile/entries/x001/000.p/255", bundle(1000, 255)),
            (
                "tile/entries/x018/x446/x744/x073/x709/x551/615.p/255",
                bundle(u64::MAX, 255),
            ),
            (
                "tile/63/x018/x446/x744/x073/x709/x551/615",
                hash_tile(63, u64::MAX, 256),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(TilePath::parse(text), Ok(want), "{text}");
            assert_eq!(want.path(), text);
            assert_eq!(text.parse::<TilePath>(), Ok(want));
        }
        // The longest valid path is exactly the limit.
        assert_eq!(
            bundle(u64::MAX, 255).path().len(),
            MAX_TILE_PATH_LEN,
            "MAX_TILE_PATH_LEN must equal the longest valid path"
        );
    }

    #[test]
    fn rejection_table() {
        use PathError::*;
        let too_long = format!("tile/0/{}000", "x000/".repeat(10));
        let cases: Vec<(&str, PathError)> = vec![
            ("", MissingPrefix),
            ("tile", MissingPrefix),
            ("/tile/0/000", MissingPrefix),
            ("tiles/0/000", MissingPrefix),
            ("TILE/0/000", MissingPrefix),
            ("tile/0", MissingIndex),
            ("tile/0/", MissingIndex),
            ("tile/entries/", MissingIndex),
            ("tile//000", InvalidLevel),
            ("tile/64/000", InvalidLevel),
            ("tile/00/000", InvalidLevel),
            ("tile/01/000", InvalidLevel),
            ("tile/+1/000", InvalidLevel),
            ("tile/-0/000", InvalidLevel),
            ("tile/100/000", InvalidLevel),
            ("tile/data/000", InvalidLevel),
            ("tile/Entries/000", InvalidLevel),
            ("tile/8/0/000", InvalidIndexElement { position: 0 }),
            ("tile/0/1", InvalidIndexElement { position: 0 }),
            ("tile/0/01", InvalidIndexElement { position: 0 }),
            ("tile/0/0001", InvalidIndexElement { position: 0 }),
            ("tile/0/x001", InvalidIndexElement { position: 0 }),
            ("tile/0/001/002", InvalidIndexElement { position: 0 }),
            ("tile/0/x001/x002", InvalidIndexElement { position: 1 }),
            ("tile/0/x1/002", InvalidIndexElement { position: 0 }),
            ("tile/0/X001/002", InvalidIndexElement { position: 0 }),
            ("tile/0/x001//002", InvalidIndexElement { position: 1 }),
            ("tile/0/000/", InvalidIndexElement { position: 0 }),
            ("tile/0/x001/00a", InvalidIndexElement { position: 1 }),
            ("tile/0/+12", InvalidIndexElement { position: 0 }),
            ("tile/0/ 12", InvalidIndexElement { position: 0 }),
            ("tile/0/000 ", InvalidIndexElement { position: 0 }),
            ("tile/0/000?x=1", InvalidIndexElement { position: 0 }),
            ("tile/0/000.p", InvalidIndexElement { position: 0 }),
            ("tile/0/000.p/", InvalidWidth),
            ("tile/0/000.p/0", InvalidWidth),
            ("tile/0/000.p/256", InvalidWidth),
            ("tile/0/000.p/300", InvalidWidth),
            ("tile/0/000.p/017", InvalidWidth),
            ("tile/0/000.p/1/", InvalidWidth),
            ("tile/0/000.p/1.p/1", InvalidWidth),
            ("tile/0/000.p/+1", InvalidWidth),
            ("tile/0/000.q/1", InvalidIndexElement { position: 0 }),
            ("tile/0/x000/001", NonCanonicalIndex),
            ("tile/entries/x000/x001/002", NonCanonicalIndex),
            ("tile/0/x018/x446/x744/x073/x709/x551/616", IndexOverflow),
            (
                "tile/0/x001/x000/x000/x000/x000/x000/x000/000",
                IndexOverflow,
            ),
            (
                too_long.as_str(),
                TooLong {
                    len: too_long.len(),
                    max: MAX_TILE_PATH_LEN,
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(TilePath::parse(text), Err(want.clone()), "{text:?}");
        }
    }

    #[test]
    fn length_limit_is_checked_first() {
        // An otherwise malformed path of 53 bytes reports the length, not the malformation.
        let text = "x".repeat(MAX_TILE_PATH_LEN + 1);
        assert_eq!(
            TilePath::parse(&text),
            Err(PathError::TooLong {
                len: MAX_TILE_PATH_LEN + 1,
                max: MAX_TILE_PATH_LEN
            })
        );
    }

    #[test]
    fn round_trips_many_indices() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..2000_u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mix magnitudes: shift right by a varying amount.
            let index = x >> (i % 64);
            let width = u16::try_from(i % 256).unwrap() + 1;
            for tile in [
                hash_tile(u8::try_from(i % 64).unwrap(), index, width),
                bundle(index, width),
            ] {
                assert_eq!(TilePath::parse(&tile.path()), Ok(tile));
            }
        }
    }
}
