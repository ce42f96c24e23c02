//! Printing, CPU time and latency percentiles.

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;

/// Prints one line on stdout (the report).
pub(crate) fn say(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.as_ref());
    let _ = out.flush();
}

/// A process's CPU time: all threads, user and system, as `getrusage(RUSAGE_SELF)` counts it
/// (read from `/proc/<pid>/stat`, the same kernel counters, in clock ticks).
#[derive(Clone, Copy, Debug)]
pub(crate) struct CpuTime {
    pub(crate) user: Duration,
    pub(crate) system: Duration,
}

impl CpuTime {
    /// This process's.
    pub(crate) fn now() -> anyhow::Result<CpuTime> {
        CpuTime::of("self")
    }

    /// The process `pid`'s (`"self"` for this one).
    pub(crate) fn of(pid: &str) -> anyhow::Result<CpuTime> {
        let path = format!("/proc/{pid}/stat");
        let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .with_context(|| format!("{path} has no command name"))?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        let ticks = |n: usize| -> anyhow::Result<u64> {
            fields
                .get(n)
                .and_then(|f| f.parse().ok())
                .with_context(|| format!("{path} is short"))
        };
        let per_second = rustix::param::clock_ticks_per_second().max(1);
        let to_duration = |t: u64| Duration::from_micros(t.saturating_mul(1_000_000) / per_second);
        Ok(CpuTime {
            user: to_duration(ticks(11)?),
            system: to_duration(ticks(12)?),
        })
    }

    pub(crate) fn since(&self, earlier: &CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }

    pub(crate) fn total(&self) -> Duration {
        self.user + self.system
    }
}

/// Latency percentiles of one class of queries.
#[derive(Clone, Debug)]
pub(crate) struct Latency {
    pub(crate) count: usize,
    pub(crate) p50: Duration,
    pub(crate) p90: Duration,
    pub(crate) p99: Duration,
    pub(crate) max: Duration,
    pub(crate) mean: Duration,
}

impl Latency {
    /// Exact percentiles (nearest rank) of `samples`.
    pub(crate) fn of(mut samples: Vec<Duration>) -> Latency {
        samples.sort_unstable();
        let count = samples.len();
        let rank = |p: usize| -> Duration {
            if count == 0 {
                return Duration::ZERO;
            }
            let index = (p * count).div_ceil(100).clamp(1, count) - 1;
            samples[index]
        };
        let sum: Duration = samples.iter().sum();
        Latency {
            count,
            p50: rank(50),
            p90: rank(90),
            p99: rank(99),
            max: samples.last().copied().unwrap_or_default(),
            mean: sum / u32::try_from(count.max(1)).unwrap_or(u32::MAX),
        }
    }
}

/// Milliseconds with two decimals.
pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<Duration> = (1..=200).map(Duration::from_millis).collect();
        let l = Latency::of(samples);
        assert_eq!(l.p50, Duration::from_millis(100));
        assert_eq!(l.p99, Duration::from_millis(198));
        assert_eq!(l.max, Duration::from_millis(200));
        assert!(CpuTime::now().is_ok());
    }
}
