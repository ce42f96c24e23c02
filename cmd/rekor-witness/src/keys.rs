//! The witness's Ed25519 key: `<storage dir>/witness.pem`, unencrypted PKCS#8 PEM, mode 0600,
//! generated on first use.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use rekor_note::{CosignatureSigner, KeyName};
use zeroize::Zeroizing;

use crate::error::KeyError;

/// The key file inside the storage directory.
pub(crate) const KEY_FILE: &str = "witness.pem";

/// Loads the key in `dir`, or generates one there, and returns the cosigner named `name`.
///
/// Generation writes a temporary file, fsyncs it and hard-links it into place, so two processes
/// starting at once end up with the same key and a crash never leaves a partial key file.
///
/// # Errors
/// [`KeyError`] naming the file and the problem.
pub(crate) fn load_or_generate(dir: &Path, name: KeyName) -> Result<CosignatureSigner, KeyError> {
    let path = dir.join(KEY_FILE);
    if !path.exists() {
        generate(dir, &path)?;
    }
    let key = load(&path)?;
    Ok(CosignatureSigner::from_ed25519_seed(key.to_bytes(), name))
}

fn load(path: &Path) -> Result<SigningKey, KeyError> {
    check_private(path)?;
    let pem = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| io(path, source))?);
    SigningKey::from_pkcs8_pem(&pem).map_err(|_| KeyError::Parse {
        path: path.to_path_buf(),
    })
}

fn generate(dir: &Path, path: &Path) -> Result<(), KeyError> {
    std::fs::create_dir_all(dir).map_err(|source| io(dir, source))?;
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut_slice()).map_err(KeyError::Random)?;
    let key = SigningKey::from_bytes(&seed);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|_| KeyError::Encode)?;
    let tmp = dir.join(format!(".{KEY_FILE}.{}.tmp", std::process::id()));
    write_private(&tmp, pem.as_bytes()).map_err(|source| io(&tmp, source))?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "generated a new Ed25519 witness key");
        }
        // Another process generated it first; use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(source) => return Err(io(path, source)),
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| io(dir, source))
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

fn check_private(path: &Path) -> Result<(), KeyError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)
            .map_err(|source| io(path, source))?
            .permissions()
            .mode()
            & 0o777;
        // Group read is tolerated (Kubernetes secret volumes with fsGroup); nothing else.
        if mode & 0o037 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    Ok(())
}

fn io(path: &Path, source: std::io::Error) -> KeyError {
    KeyError::Io {
        path: PathBuf::from(path),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_then_loads_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let name = KeyName::new("witness.example/w1").unwrap();
        let first = load_or_generate(dir.path(), name.clone()).unwrap();
        let second = load_or_generate(dir.path(), name).unwrap();
        assert_eq!(first.verifier(), second.verifier());
        let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(entries.len(), 1, "only the key file remains");
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_key_others_can_read() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let name = KeyName::new("w").unwrap();
        load_or_generate(dir.path(), name.clone()).unwrap();
        let path = dir.path().join(KEY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_or_generate(dir.path(), name),
            Err(KeyError::Permissions { mode: 0o644, .. })
        ));
    }
}
