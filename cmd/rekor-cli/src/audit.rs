//! `audit` and `monitor`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rekor_client::{AuditState, Client, MonitorEvent, MonitorState};
use rekor_note::LogVerifier;

use crate::util::{self, read, say};
use crate::witnessed::WitnessPolicy;

/// How often a running audit saves its state.
const SAVE_EVERY: Duration = Duration::from_secs(2);

/// `audit` flags.
#[derive(Args, Debug)]
pub(crate) struct AuditArgs {
    /// Save progress here, and resume from it: only entries beyond the verified size are
    /// fetched again.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Do not draw a progress bar.
    #[arg(long)]
    no_progress: bool,
}

fn load_audit_state(path: &Path) -> anyhow::Result<Option<AuditState>> {
    if !path.exists() {
        return Ok(None);
    }
    let state = AuditState::from_json(&read(path)?)
        .with_context(|| format!("--state {}", path.display()))?;
    Ok(Some(state))
}

fn save_audit_state(path: Option<&Path>, state: &AuditState) -> anyhow::Result<()> {
    match path {
        Some(path) => util::save_atomic(path, state.to_json()?.as_bytes()),
        None => Ok(()),
    }
}

/// Runs `audit`.
pub(crate) async fn audit(
    client: &Client,
    verifier: &LogVerifier,
    args: &AuditArgs,
) -> anyhow::Result<()> {
    let checkpoint = client.checkpoint(verifier).await?;
    let resume = match &args.state {
        Some(path) => load_audit_state(path)?,
        None => None,
    };
    let start = resume.as_ref().map_or(0, AuditState::verified_size);
    let total = checkpoint.checkpoint.size;
    let bar = if args.no_progress {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} auditing [{bar:40}] {pos}/{len} entries ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_position(start);

    let state_path = args.state.as_deref();
    let mut saved = start;
    let mut last_save = Instant::now();
    let mut save_error = None;
    let result = client
        .audit(&checkpoint, resume.as_ref(), |progress| {
            bar.set_position(progress.verified);
            // Saving clones the tree edge; do it every few seconds, not every bundle.
            if state_path.is_some() && last_save.elapsed() >= SAVE_EVERY {
                match save_audit_state(state_path, &progress.state()) {
                    Ok(()) => saved = progress.verified,
                    Err(e) => {
                        save_error.get_or_insert(e);
                    }
                }
                last_save = Instant::now();
            }
        })
        .await;
    bar.finish_and_clear();
    if let Some(e) = save_error {
        return Err(e);
    }
    match result {
        Ok(report) => {
            save_audit_state(state_path, &report.state)?;
            say(&format!(
                "Audit passed: all {} entries of {} (root {}) verified; {} entries and {} tiles checked in this run.",
                report.size,
                checkpoint.checkpoint.origin,
                report.root,
                report.entries_checked,
                report.tiles_checked
            ))
        }
        Err(e) => {
            let resume_note = if state_path.is_some() {
                format!("; the state file resumes after entry {saved}")
            } else {
                String::new()
            };
            Err(e).context(format!("audit of {total} entries failed{resume_note}"))
        }
    }
}

/// `monitor` flags.
#[derive(Args, Debug)]
pub(crate) struct MonitorArgs {
    /// The last verified checkpoint is kept here (created on first use).
    #[arg(long, value_name = "FILE")]
    state: PathBuf,
    /// Time between two checks.
    #[arg(long, default_value = "5s", value_parser = util::parse_duration)]
    interval: Duration,
    /// Check once and exit.
    #[arg(long)]
    once: bool,
}

/// Runs `monitor`.
pub(crate) async fn monitor(
    client: &Client,
    verifier: &LogVerifier,
    witnesses: Option<&WitnessPolicy>,
    args: &MonitorArgs,
) -> anyhow::Result<()> {
    let mut state = if args.state.exists() {
        Some(
            MonitorState::from_json(&read(&args.state)?, verifier)
                .with_context(|| format!("--state {}", args.state.display()))?,
        )
    } else {
        None
    };
    loop {
        match client.monitor_step(verifier, state.as_ref()).await {
            Ok((next, event)) => {
                if let Some(witnesses) = witnesses {
                    witnesses
                        .check(next.checkpoint.note(), next.checkpoint.checkpoint.size)
                        .context("monitor")?;
                }
                report(&next, &event)?;
                if state.as_ref() != Some(&next) {
                    util::save_atomic(&args.state, next.to_json()?.as_bytes())?;
                }
                state = Some(next);
            }
            Err(e) => {
                let e = anyhow::Error::from(e);
                if args.once || util::is_verification_failure(&e) {
                    return Err(e.context("monitor"));
                }
                util::note(&format!("warning: {}; retrying", util::one_line(&e)));
            }
        }
        if args.once {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(args.interval) => {}
            signal = tokio::signal::ctrl_c() => {
                signal.context("waiting for Ctrl-C")?;
                return Ok(());
            }
        }
    }
}

fn report(state: &MonitorState, event: &MonitorEvent) -> anyhow::Result<()> {
    let cp = &state.checkpoint;
    match event {
        MonitorEvent::First => say(&format!(
            "Trusting {} at size {} (root {}) on first use.",
            cp.checkpoint.origin,
            cp.checkpoint.size,
            cp.root()
        )),
        MonitorEvent::Unchanged => say(&format!(
            "Size {} unchanged (root {}).",
            cp.checkpoint.size,
            cp.root()
        )),
        MonitorEvent::Grew { from, to } => say(&format!(
            "Grew from {from} to {to}: consistent (root {}).",
            cp.root()
        )),
        MonitorEvent::Behind { served, verified } => {
            util::note(&format!(
                "warning: the log serves size {served}, older than the verified {verified}; it is a consistent prefix"
            ));
            Ok(())
        }
    }
}
