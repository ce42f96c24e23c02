//! Small helpers: durations, one-line errors, files.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

/// Exit status when something the log served (or a file given) fails verification.
const EXIT_VERIFICATION_FAILED: u8 = 2;

/// Parses `250ms`, `30s`, `2m`, `1h` (a bare number is seconds).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: expected e.g. 500ms, 30s, 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(value)),
        "s" | "" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(value.saturating_mul(3600))),
        _ => Err(format!(
            "invalid duration unit in {text:?}: use ms, s, m or h"
        )),
    }
}

/// The error and its causes on one line, each cause added only if the text so far lacks it.
/// A `rekor_client::Error` already names its cause, so the chain stops there.
pub(crate) fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string().replace('\n', " ");
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        if cause.is::<rekor_client::Error>() {
            break;
        }
    }
    line
}

/// Whether the error is a failed verification (as opposed to a usage or network problem).
pub(crate) fn is_verification_failure(error: &anyhow::Error) -> bool {
    if error
        .chain()
        .any(|c| c.is::<crate::witnessed::QuorumMissing>() || c.is::<crate::report::ReportFailed>())
    {
        return true;
    }
    error
        .chain()
        .filter_map(|c| c.downcast_ref::<rekor_client::Error>())
        .any(|e| match e {
            // The log signed a checkpoint whose tiles it does not serve.
            rekor_client::Error::NotFound { path } => path.starts_with("tile/"),
            other => other.is_verification_failure(),
        })
}

/// Reports an error on stderr and picks the exit status.
pub(crate) fn fail(error: &anyhow::Error) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "rekor-cli: error: {}", one_line(error));
    if is_verification_failure(error) {
        ExitCode::from(EXIT_VERIFICATION_FAILED)
    } else {
        ExitCode::FAILURE
    }
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Writes `content` to a new file next to `path`, then renames it over `path`, so a reader
/// (or a crash) never sees half a file.
pub(crate) fn save_atomic(path: &Path, content: &[u8]) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(content)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().with_context(|| format!("writing {}", path.display()))
}

/// Writes `text` (plus a final newline) to `out`, or to stdout.
pub(crate) fn emit(out: Option<&Path>, text: &str) -> anyhow::Result<()> {
    match out {
        Some(path) => save_atomic(path, format!("{text}\n").as_bytes()),
        None => {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{text}").context("writing to stdout")
        }
    }
}

/// Prints one line to stdout.
pub(crate) fn say(text: &str) -> anyhow::Result<()> {
    emit(None, text)
}

/// Prints one line to stderr (status and warnings, kept out of machine output).
pub(crate) fn note(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// Re-indents compact JSON for people.
pub(crate) fn pretty(json: &str) -> anyhow::Result<String> {
    let value: serde_json::Value = serde_json::from_str(json).context("re-reading JSON")?;
    serde_json::to_string_pretty(&value).context("formatting JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5 s").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("1.5s").is_err());
    }

    #[test]
    fn errors_print_on_one_line_without_repeats() {
        let inner = anyhow::anyhow!("connection refused");
        let e = inner
            .context("GET /x: connection refused")
            .context("fetching");
        assert_eq!(one_line(&e), "fetching: GET /x: connection refused");
        let multi = anyhow::anyhow!("a\nb");
        assert_eq!(one_line(&multi), "a b");
        let library = anyhow::Error::from(rekor_client::Error::Checkpoint {
            source: rekor_note::NoteError::NotUtf8,
        })
        .context("monitor");
        assert_eq!(
            one_line(&library),
            "monitor: checkpoint rejected: note is not valid UTF-8"
        );
    }

    #[test]
    fn misbehaviour_is_found_through_context() {
        let e = anyhow::Error::from(rekor_client::Error::BodyNotCanonical).context("verifying");
        assert!(is_verification_failure(&e));
        let e = anyhow::Error::from(rekor_client::Error::NotFound {
            path: "checkpoint".into(),
        });
        assert!(!is_verification_failure(&e));
        let e = anyhow::Error::from(rekor_client::Error::NotFound {
            path: "tile/0/000.p/3".into(),
        });
        assert!(is_verification_failure(&e));
    }
}
