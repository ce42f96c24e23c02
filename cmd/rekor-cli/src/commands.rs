//! `get`, `verify`, `checkpoint` and `consistency`.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;
use rekor_api::bundle::v1::bundle;
use rekor_api::rekor::v2::spec;
use rekor_client::{Client, EntryBody, SignedCheckpoint, VerifiedEntry};
use rekor_note::LogVerifier;
use rekor_tlog::TreeSize;

use crate::util::{self, read, say};
use crate::witnessed::WitnessPolicy;

/// `get` flags.
#[derive(Args, Debug)]
pub(crate) struct GetArgs {
    /// The entry's index.
    index: u64,
    /// Print the entry as TransparencyLogEntry JSON (which `verify --entry` accepts).
    #[arg(long)]
    json: bool,
    /// Write the output to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Runs `get`: reads the entry from its bundle, proves its inclusion in the current
/// checkpoint from the tiles, checks the body, prints it.
pub(crate) async fn get(
    client: &Client,
    verifier: &LogVerifier,
    args: &GetArgs,
) -> anyhow::Result<()> {
    let checkpoint = client.checkpoint(verifier).await?;
    let entry = client
        .entry_at(args.index, &checkpoint)
        .await
        .with_context(|| format!("entry {}", args.index))?;
    let body = match EntryBody::parse(&entry.body) {
        Ok(body) => Some(body),
        Err(e) if args.json => return Err(e).context(format!("entry {}", args.index)),
        Err(_) => None,
    };
    if args.json {
        let tle = entry.to_transparency_log_entry(verifier.log_id())?;
        rekor_client::verify_entry(&tle, verifier)
            .with_context(|| format!("entry {}", args.index))?;
        let json = rekor_api::to_json(&tle).context("encoding the entry")?;
        return util::emit(args.out.as_deref(), &util::pretty(&json)?);
    }
    let mut text = format!(
        "Index:     {}\nLeaf hash: {}\nTree size: {}\nRoot hash: {}\n",
        entry.index,
        entry.leaf_hash,
        checkpoint.checkpoint.size,
        checkpoint.root()
    );
    match body {
        Some(body) => {
            body.check()
                .with_context(|| format!("entry {}", args.index))?;
            text.push_str(&format!(
                "Kind:      {}/{}\nVerified:  inclusion proof, checkpoint signature, entry signature\nBody:\n{}",
                body.kind(),
                body.api_version(),
                util::pretty(&String::from_utf8_lossy(&body.bytes))?
            ));
        }
        None => text.push_str(&format!(
            "Verified:  inclusion proof, checkpoint signature\nBody:      not a Rekor v2 entry; {} bytes, hex {}",
            entry.body.len(),
            hex::encode(&entry.body)
        )),
    }
    util::emit(args.out.as_deref(), &text)
}

/// `verify` flags.
#[derive(Args, Debug)]
pub(crate) struct VerifyArgs {
    /// A TransparencyLogEntry JSON file (as `upload` writes).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "bundle",
        conflicts_with = "bundle"
    )]
    entry: Option<PathBuf>,
    /// A Sigstore bundle JSON file; its verificationMaterial.tlogEntries[0] is verified.
    #[arg(long, value_name = "FILE")]
    bundle: Option<PathBuf>,
    /// The artifact: its digest must be the one the entry logs.
    #[arg(long, value_name = "FILE")]
    artifact: Option<PathBuf>,
    /// Skip the check against the log's current checkpoint (no network).
    #[arg(long)]
    offline: bool,
}

/// Runs `verify`.
pub(crate) async fn verify(
    client: &Client,
    verifier: &LogVerifier,
    witnesses: Option<&WitnessPolicy>,
    args: &VerifyArgs,
) -> anyhow::Result<()> {
    let (entry, bundle) = match (&args.entry, &args.bundle) {
        (Some(path), _) => {
            let what = path.display().to_string();
            (rekor_client::entry_from_json(&read(path)?, &what)?, None)
        }
        (None, Some(path)) => {
            let what = path.display().to_string();
            let (bundle, entry) = rekor_client::bundle_from_json(&read(path)?, &what)?;
            (entry, Some(bundle))
        }
        (None, None) => bail!("pass --entry FILE or --bundle FILE"),
    };
    let verified = rekor_client::verify_entry(&entry, verifier)?;
    let mut checks = vec![
        "body",
        "entry signature",
        "inclusion proof",
        "checkpoint signature",
    ];
    if let Some(witnesses) = witnesses {
        witnesses
            .check(
                verified.checkpoint.note(),
                verified.checkpoint.checkpoint.size,
            )
            .context("the entry's checkpoint")?;
        checks.push("witness quorum");
    }
    if let Some(bundle) = &bundle {
        check_bundle_signature(bundle, &verified)?;
        checks.push("bundle signature matches the entry");
    }
    if let Some(path) = &args.artifact {
        verified
            .body
            .check_artifact(&read(path)?)
            .with_context(|| format!("--artifact {}", path.display()))?;
        checks.push("artifact digest");
    }
    if !args.offline {
        let current = client.checkpoint(verifier).await?;
        let entry_checkpoint = &verified.checkpoint;
        if current.size() >= entry_checkpoint.size() {
            client.prove_consistency(entry_checkpoint, &current).await?;
        } else {
            client.prove_consistency(&current, entry_checkpoint).await?;
            util::note(&format!(
                "warning: the log serves checkpoint size {}, older than the entry's {}",
                current.checkpoint.size, entry_checkpoint.checkpoint.size
            ));
        }
        checks.push("consistency with the log's current checkpoint");
    }
    say(&format!(
        "Verified entry {} of {} (tree size {}): {}.",
        verified.index,
        verified.checkpoint.checkpoint.origin,
        verified.checkpoint.checkpoint.size,
        checks.join(", ")
    ))
}

/// A message-signature bundle must carry the signature and digest the entry logs.
fn check_bundle_signature(
    bundle: &rekor_api::bundle::v1::Bundle,
    verified: &VerifiedEntry,
) -> anyhow::Result<()> {
    let Some(bundle::Content::MessageSignature(message)) = &bundle.content else {
        return Ok(());
    };
    let logged = match verified
        .body
        .entry
        .spec
        .as_ref()
        .and_then(|s| s.spec.as_ref())
    {
        Some(spec::Spec::HashedRekordV002(body)) => body,
        _ => bail!("the bundle holds a message signature but its entry is not a hashedrekord"),
    };
    let logged_signature = logged.signature.as_ref().map(|s| s.content.as_slice());
    if logged_signature != Some(message.signature.as_slice()) {
        bail!("the bundle's signature differs from the one in its log entry");
    }
    if let Some(digest) = &message.message_digest
        && logged.data.as_ref().map(|d| d.digest.as_slice()) != Some(digest.digest.as_slice())
    {
        bail!("the bundle's message digest differs from the one in its log entry");
    }
    Ok(())
}

/// `checkpoint` flags.
#[derive(Args, Debug)]
pub(crate) struct CheckpointArgs {
    /// Print JSON: origin, size, root hash (hex) and the signed note.
    #[arg(long)]
    json: bool,
    /// Also save the signed note to this file (for `consistency --from-checkpoint`).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Runs `checkpoint`.
pub(crate) async fn checkpoint(
    client: &Client,
    verifier: &LogVerifier,
    witnesses: Option<&WitnessPolicy>,
    args: &CheckpointArgs,
) -> anyhow::Result<()> {
    let checkpoint = client.checkpoint(verifier).await?;
    let cosigned = witnesses
        .map(|policy| policy.check(checkpoint.note(), checkpoint.checkpoint.size))
        .transpose()?;
    if let Some(path) = &args.out {
        util::save_atomic(path, checkpoint.note().as_bytes())?;
    }
    if args.json {
        let json = serde_json::json!({
            "origin": checkpoint.checkpoint.origin.as_str(),
            "size": checkpoint.checkpoint.size,
            "rootHash": checkpoint.root().to_string(),
            "checkpoint": checkpoint.note(),
            "witnesses": cosigned,
        });
        return say(&serde_json::to_string_pretty(&json)?);
    }
    let witnessed = cosigned.map_or(String::new(), |names| {
        format!("Witnesses: quorum met ({})\n", names.join(", "))
    });
    say(&format!(
        "Origin:    {}\nTree size: {}\nRoot hash: {}\nSignature: verified\n{witnessed}\n{}",
        checkpoint.checkpoint.origin,
        checkpoint.checkpoint.size,
        checkpoint.root(),
        checkpoint.note().trim_end()
    ))
}

/// `consistency` flags.
#[derive(Args, Debug)]
pub(crate) struct ConsistencyArgs {
    /// The older tree size; its root is computed from the log's tiles and printed.
    #[arg(long, value_name = "SIZE", required_unless_present = "from_checkpoint")]
    from: Option<u64>,
    /// An older signed checkpoint (as `checkpoint --out` saves it).
    #[arg(long, value_name = "FILE", conflicts_with = "from")]
    from_checkpoint: Option<PathBuf>,
    /// Print JSON with the proof.
    #[arg(long)]
    json: bool,
}

/// Runs `consistency`.
pub(crate) async fn consistency(
    client: &Client,
    verifier: &LogVerifier,
    args: &ConsistencyArgs,
) -> anyhow::Result<()> {
    let current = client.checkpoint(verifier).await?;
    let (old_size, old_root, proof, source) = match (&args.from_checkpoint, args.from) {
        (Some(path), _) => {
            let old = SignedCheckpoint::verify(&read(path)?, verifier)
                .with_context(|| format!("--from-checkpoint {}", path.display()))?;
            let proof = client.prove_consistency(&old, &current).await?;
            (old.size(), old.root(), proof, "signed checkpoint")
        }
        (None, Some(size)) => {
            let (root, proof) = client
                .prove_extends_size(TreeSize::new(size), &current)
                .await?;
            (TreeSize::new(size), root, proof, "computed from the tiles")
        }
        (None, None) => bail!("pass --from SIZE or --from-checkpoint FILE"),
    };
    if args.json {
        let json = serde_json::json!({
            "old": {"size": old_size.get(), "rootHash": old_root.to_string(), "source": source},
            "new": {"size": current.checkpoint.size, "rootHash": current.root().to_string()},
            "proof": proof.iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
        return say(&serde_json::to_string_pretty(&json)?);
    }
    say(&format!(
        "Old tree:  size {} root {} ({source})\nNew tree:  size {} root {} (signed checkpoint)\nConsistent: proof of {} hashes verified",
        old_size,
        old_root,
        current.checkpoint.size,
        current.root(),
        proof.len()
    ))
}
