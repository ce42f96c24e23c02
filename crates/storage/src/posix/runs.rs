//! What the two run-based POSIX indexes (dedup and search) share: how a run file is named, and
//! how two sorted runs merge. Each keeps its own record format and header.
//!
//! A run covers the entries `base..base + count` of the log. Its file is named
//! `run-<base>-<count>` (16 hex digits each), so a directory listing alone tells which runs
//! exist and whether they tile the log; a run is written under a `.tmp-` name first and renamed
//! into place once complete.

use std::io;

/// The prefix of a run file's name.
pub(super) const RUN_PREFIX: &str = "run-";
/// The prefix of a run file being written.
pub(super) const TEMP_PREFIX: &str = ".tmp-";

/// The name of the run of entries `base..base + count`.
pub(super) fn run_name(base: u64, count: u64) -> String {
    format!("{RUN_PREFIX}{base:016x}-{count:016x}")
}

/// The `(base, count)` a run file's name states; `None` for any other name.
pub(super) fn parse_run_name(name: &str) -> Option<(u64, u64)> {
    let (base, count) = name.strip_prefix(RUN_PREFIX)?.split_once('-')?;
    if base.len() != 16 || count.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(base, 16).ok()?,
        u64::from_str_radix(count, 16).ok()?,
    ))
}

/// An [`io::ErrorKind::InvalidData`] error: a run file that does not hold what it must.
pub(super) fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// The records of two ascending runs, merged in ascending order (the older run's first among
/// equals). A read error is passed on as soon as it is reached, so the writer stops there.
pub(super) fn merge_ascending<T: Ord>(
    older: impl Iterator<Item = io::Result<T>>,
    newer: impl Iterator<Item = io::Result<T>>,
) -> impl Iterator<Item = io::Result<T>> {
    let mut left = older.peekable();
    let mut right = newer.peekable();
    std::iter::from_fn(move || {
        let take_left = match (left.peek(), right.peek()) {
            (Some(Ok(a)), Some(Ok(b))) => a <= b,
            (Some(Err(_)), _) | (Some(_), None) => true,
            (None, Some(_)) | (_, Some(Err(_))) => false,
            (None, None) => return None,
        };
        if take_left { left.next() } else { right.next() }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail by panicking")]
    use super::*;

    #[test]
    fn run_names_round_trip_and_other_names_are_not_runs() {
        assert_eq!(
            run_name(0x100, 0x10000),
            "run-0000000000000100-0000000000010000"
        );
        assert_eq!(parse_run_name(&run_name(7, u64::MAX)), Some((7, u64::MAX)));
        for other in [
            "run-1-2",
            ".tmp-run-0000000000000100-0000000000010000",
            "lock",
            "run-",
        ] {
            assert_eq!(parse_run_name(other), None, "{other}");
        }
    }

    #[test]
    fn merging_keeps_order_and_stops_at_an_error() {
        let ok = |v: &[u32]| v.iter().map(|&x| Ok(x)).collect::<Vec<io::Result<u32>>>();
        let merged: Vec<u32> =
            merge_ascending(ok(&[1, 4, 4, 9]).into_iter(), ok(&[2, 4, 10]).into_iter())
                .map(Result::unwrap)
                .collect();
        assert_eq!(merged, [1, 2, 4, 4, 4, 9, 10]);
        let mut failing = ok(&[1, 5]);
        failing.insert(1, Err(invalid("torn")));
        let mut merged = merge_ascending(failing.into_iter(), ok(&[3]).into_iter());
        assert_eq!(merged.next().unwrap().unwrap(), 1);
        assert!(merged.next().unwrap().is_err());
    }
}
