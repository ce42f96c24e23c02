//! The log key to trust, from the command line.

use anyhow::{Context as _, bail};
use rekor_note::LogVerifier;

use crate::TrustArgs;
use crate::util::read;

/// Builds the verifier from `--log-key`, `--vkey` or `--trusted-root` (with `--origin`).
pub(crate) fn load(args: &TrustArgs, url: &str) -> anyhow::Result<LogVerifier> {
    let origin = || -> anyhow::Result<String> {
        match &args.origin {
            Some(origin) => Ok(origin.clone()),
            None => Ok(rekor_client::origin_of_url(url)?),
        }
    };
    if let Some(path) = &args.log_key {
        let key = read(path)?;
        let what = format!("--log-key {}", path.display());
        return Ok(rekor_client::verifier_from_public_key(
            &key,
            &origin()?,
            &what,
        )?);
    }
    if let Some(vkey) = &args.vkey {
        let verifier = rekor_client::verifier_from_vkey(vkey)?;
        if let Some(origin) = &args.origin
            && rekor_note::NoteVerifier::name(&verifier).as_str() != origin
        {
            bail!("--origin {origin:?} differs from the name in --vkey");
        }
        return Ok(verifier);
    }
    if let Some(path) = &args.trusted_root {
        let json = read(path)?;
        return rekor_client::verifier_from_trusted_root(&json, url, args.origin.as_deref())
            .with_context(|| format!("--trusted-root {}", path.display()));
    }
    bail!("no trust anchor: pass --log-key FILE, --vkey VKEY or --trusted-root FILE")
}
