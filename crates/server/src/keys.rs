//! The log's signing key: loaded from `--signer-filepath`, or generated once into the storage
//! directory; its optional second, ML-DSA-44 key (`--signer-mldsa-filepath`,
//! `--signer-mldsa-generate`); and the trust material Sigstore clients need to verify this log.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use rekor_api::common::v1::{HashAlgorithm, LogId, PublicKey, PublicKeyDetails, TimeRange};
use rekor_api::trustroot::v1::{Service, TransparencyLogInstance};
use rekor_note::{KeyName, LogKeyAlgorithm, LogSigner, MlDsa44Signer, NoteVerifier as _};

/// The file a generated key is kept in, inside the storage directory's private state.
pub const GENERATED_KEY_FILE: &str = ".rekor/signer.pem";

/// The file a generated ML-DSA-44 key (`--signer-mldsa-generate`) is kept in, next to
/// [`GENERATED_KEY_FILE`].
pub const GENERATED_MLDSA_KEY_FILE: &str = ".rekor/signer-mldsa.pem";

/// Why the signing key could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("signing key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The key file is readable by other users.
    #[error(
        "signing key file {path} is readable by others or writable by group or others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key does not parse, is encrypted without a password, or has an unsupported type.
    #[error("signing key file {path}: {source}")]
    Key {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rekor_note::NoteError,
    },
    /// The hostname is not a valid note key name.
    #[error("--hostname {hostname:?} is not a valid checkpoint origin: {source}")]
    Hostname {
        /// The hostname given.
        hostname: String,
        /// The cause.
        #[source]
        source: rekor_note::NoteError,
    },
    /// No randomness was available to generate a key.
    #[error("generating a signing key: no system randomness: {0}")]
    Random(String),
    /// `--signer-mldsa-generate` was given to a backend without a storage directory.
    #[error(
        "--signer-mldsa-generate needs a storage directory to keep the key in; use --signer-mldsa-filepath with this backend"
    )]
    MlDsaGenerateUnsupported,
    /// The ML-DSA-44 key cannot be paired with the log key.
    #[error("ML-DSA-44 signing key {path}: {source}")]
    SecondKey {
        /// The ML-DSA-44 key file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rekor_note::NoteError,
    },
}

fn check_private(path: &Path) -> Result<(), KeyError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let metadata = std::fs::metadata(path).map_err(|source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mode = metadata.permissions().mode() & 0o777;
        // Group *read* is allowed: Kubernetes makes a secret volume group-readable whenever the
        // pod sets `fsGroup` (it adds the group bits itself), so 0440 is what a mounted key has.
        // Anything readable by others, or writable by anyone but the owner, is refused.
        if mode & 0o037 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    Ok(())
}

/// Loads the signer from `path`, refusing files that others can read.
///
/// # Errors
///
/// [`KeyError`] naming the file and the problem.
pub fn load_signer(
    path: &Path,
    password: Option<&str>,
    hostname: &str,
) -> Result<LogSigner, KeyError> {
    let name = key_name(hostname)?;
    check_private(path)?;
    let pem = std::fs::read(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    LogSigner::from_pem(&pem, password.map(str::as_bytes), name).map_err(|source| KeyError::Key {
        path: path.to_path_buf(),
        source,
    })
}

/// Loads the key generated in `storage_dir`, or generates an Ed25519 key there (mode 0600).
///
/// # Errors
///
/// [`KeyError`] if the file cannot be read or written or does not parse.
pub fn load_or_generate(storage_dir: &Path, hostname: &str) -> Result<LogSigner, KeyError> {
    let path = storage_dir.join(GENERATED_KEY_FILE);
    if path.exists() {
        return load_signer(&path, None, hostname);
    }
    let name = key_name(hostname)?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    let signer = LogSigner::from_ed25519_seed(seed, name);
    let pem = signer.to_pkcs8_pem().map_err(|source| KeyError::Key {
        path: path.clone(),
        source,
    })?;
    write_private(&path, pem.as_bytes()).map_err(|source| KeyError::Io {
        path: path.clone(),
        source,
    })?;
    tracing::info!(path = %path.display(), "generated a new Ed25519 log signing key");
    Ok(signer)
}

/// Loads the ML-DSA-44 key in `path` (`--signer-mldsa-filepath`), refusing files that others can
/// read.
///
/// # Errors
///
/// [`KeyError`] naming the file and the problem.
pub fn load_mldsa_signer(path: &Path, hostname: &str) -> Result<MlDsa44Signer, KeyError> {
    let name = key_name(hostname)?;
    check_private(path)?;
    let pem = std::fs::read(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    MlDsa44Signer::from_pem(&pem, name).map_err(|source| KeyError::Key {
        path: path.to_path_buf(),
        source,
    })
}

/// Loads the ML-DSA-44 key generated in `storage_dir`, or generates one there (mode 0600).
///
/// # Errors
///
/// [`KeyError`] if the file cannot be read or written or does not parse.
pub fn load_or_generate_mldsa(
    storage_dir: &Path,
    hostname: &str,
) -> Result<MlDsa44Signer, KeyError> {
    let path = storage_dir.join(GENERATED_MLDSA_KEY_FILE);
    if path.exists() {
        return load_mldsa_signer(&path, hostname);
    }
    let name = key_name(hostname)?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    let signer = MlDsa44Signer::from_seed(seed, name);
    let pem = signer.to_pkcs8_pem().map_err(|source| KeyError::Key {
        path: path.clone(),
        source,
    })?;
    write_private(&path, pem.as_bytes()).map_err(|source| KeyError::Io {
        path: path.clone(),
        source,
    })?;
    tracing::info!(path = %path.display(), "generated a new ML-DSA-44 log signing key");
    Ok(signer)
}

/// Adds the ML-DSA-44 key the flags name to `signer`, so that it dual-signs checkpoints:
/// `mldsa_path` (`--signer-mldsa-filepath`), else with `generate` (`--signer-mldsa-generate`)
/// the key kept in `generated_key_dir`. Without either, `signer` is returned unchanged.
///
/// # Errors
///
/// [`KeyError`] if the key cannot be loaded or generated, [`KeyError::MlDsaGenerateUnsupported`]
/// for `generate` without a storage directory, or [`KeyError::SecondKey`].
pub fn with_mldsa(
    signer: LogSigner,
    mldsa_path: Option<&Path>,
    generate: bool,
    generated_key_dir: Option<&Path>,
    hostname: &str,
) -> Result<LogSigner, KeyError> {
    let (mldsa, path) = match (mldsa_path, generate, generated_key_dir) {
        (Some(path), _, _) => (load_mldsa_signer(path, hostname)?, path.to_path_buf()),
        (None, true, Some(dir)) => (
            load_or_generate_mldsa(dir, hostname)?,
            dir.join(GENERATED_MLDSA_KEY_FILE),
        ),
        (None, true, None) => return Err(KeyError::MlDsaGenerateUnsupported),
        (None, false, dir) => {
            if let Some(path) = dir
                .map(|d| d.join(GENERATED_MLDSA_KEY_FILE))
                .filter(|p| p.exists())
            {
                tracing::warn!(
                    path = %path.display(),
                    "an ML-DSA-44 key was generated here before, but --signer-mldsa-generate is not set: checkpoints are signed without it"
                );
            }
            return Ok(signer);
        }
    };
    signer
        .with_mldsa44(mldsa, unix_now)
        .map_err(|source| KeyError::SecondKey { path, source })
}

/// The current POSIX time in whole seconds (0 before the epoch), for ML-DSA-44 timestamps.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

fn key_name(hostname: &str) -> Result<KeyName, KeyError> {
    KeyName::new(hostname).map_err(|source| KeyError::Hostname {
        hostname: hostname.to_string(),
        source,
    })
}

/// What clients need to trust this log.
#[derive(Debug, Clone)]
pub struct LogIdentity {
    /// The checkpoint origin (the `--hostname`).
    pub origin: String,
    /// The public key, DER SubjectPublicKeyInfo.
    pub public_key_der: Vec<u8>,
    /// The 32-byte log ID.
    pub log_id: [u8; 32],
    /// The key's algorithm.
    pub algorithm: LogKeyAlgorithm,
    /// The C2SP verifier key string, where the key type has one.
    pub verifier_key: Option<String>,
    /// The C2SP verifier key (type 0x06) of the ML-DSA-44 key, when the log dual-signs.
    pub mldsa_verifier_key: Option<String>,
    /// The 4-byte key ID of the ML-DSA-44 key's signature lines, when the log dual-signs.
    pub mldsa_key_id: Option<[u8; 4]>,
    /// The URL clients use to reach the log.
    pub base_url: String,
}

impl LogIdentity {
    /// Describes `signer`'s log, reached at `http://<origin>` when the origin names a port, else at
    /// `http://<origin>:<http_port>`.
    pub fn of(signer: &LogSigner, origin: &str, http_port: u16) -> Self {
        let base_url = if origin.contains(':') {
            format!("http://{origin}")
        } else {
            format!("http://{origin}:{http_port}")
        };
        LogIdentity {
            base_url,
            origin: origin.to_string(),
            public_key_der: signer.public_key_der(),
            log_id: signer.log_id(),
            algorithm: signer.algorithm(),
            verifier_key: signer.verifier().to_vkey(),
            mldsa_verifier_key: signer.mldsa44_verifier().map(|v| v.to_vkey()),
            mldsa_key_id: signer.mldsa44_verifier().map(|v| v.key_id()),
        }
    }

    fn key_details(&self) -> &'static str {
        self.algorithm.key_details()
    }

    /// The log's URL as clients reach it.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The TrustedRoot `tlogs[]` entry clients verify this log with, valid from `valid_from`.
    pub fn transparency_log_instance(&self, valid_from: SystemTime) -> TransparencyLogInstance {
        let log_id = LogId {
            key_id: self.log_id.to_vec(),
        };
        TransparencyLogInstance {
            base_url: self.base_url.clone(),
            hash_algorithm: HashAlgorithm::Sha2256.into(),
            public_key: Some(PublicKey {
                raw_bytes: Some(self.public_key_der.clone()),
                // The note crate names the key type; the enum is the protobuf form of that name.
                key_details: PublicKeyDetails::from_str_name(self.key_details())
                    .unwrap_or_default()
                    .into(),
                valid_for: Some(time_range_from(valid_from)),
            }),
            log_id: Some(log_id.clone()),
            checkpoint_key_id: Some(log_id),
            operator: String::new(),
        }
    }

    /// The SigningConfig `rekorTlogUrls[]` entry clients submit to, valid from `valid_from`.
    pub fn signing_config_service(&self, valid_from: SystemTime) -> Service {
        Service {
            url: self.base_url.clone(),
            major_api_version: 2,
            valid_for: Some(time_range_from(valid_from)),
            operator: self.origin.clone(),
        }
    }

    /// The ready-to-paste TrustedRoot `tlogs[]` entry, as protojson.
    pub fn trusted_root_tlog(&self, valid_from: SystemTime) -> serde_json::Value {
        json_value(&self.transparency_log_instance(valid_from))
    }

    /// The ready-to-paste SigningConfig `rekorTlogUrls[]` entry, as protojson.
    pub fn signing_config_entry(&self, valid_from: SystemTime) -> serde_json::Value {
        json_value(&self.signing_config_service(valid_from))
    }

    /// A human-readable summary, printed at start and by the `info` subcommand.
    pub fn describe(&self, valid_from: SystemTime) -> String {
        let pretty = |value: &serde_json::Value| {
            serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("<{e}>"))
        };
        let mldsa = match (&self.mldsa_verifier_key, self.mldsa_key_id) {
            (Some(vkey), Some(key_id)) => format!(
                "ML-DSA-44 key: second checkpoint signature (c2sp.org/tlog-cosignature type 0x06)\n\
                 ML-DSA-44 key ID: {id} (hex)\n\
                 ML-DSA-44 verifier key: {vkey}\n",
                id = hex::encode(key_id),
            ),
            _ => "ML-DSA-44 key: none (checkpoints carry one log signature)\n".to_owned(),
        };
        format!(
            "origin:        {origin}\n\
             public key:    {key} (DER SPKI, base64)\n\
             key type:      {details}\n\
             log ID:        {hex} (hex)\n\
             log ID:        {b64} (base64)\n\
             verifier key:  {vkey}\n\
             {mldsa}\n\
             TrustedRoot tlogs entry:\n{tlog}\n\n\
             SigningConfig rekorTlogUrls entry:\n{service}\n",
            origin = self.origin,
            key = STANDARD.encode(&self.public_key_der),
            details = self.key_details(),
            hex = hex::encode(self.log_id),
            b64 = STANDARD.encode(self.log_id),
            vkey = self
                .verifier_key
                .as_deref()
                .unwrap_or("(none for this key type)"),
            tlog = pretty(&self.trusted_root_tlog(valid_from)),
            service = pretty(&self.signing_config_entry(valid_from)),
        )
    }
}

/// A validity window open from `start` (whole seconds: clients compare against signed times).
fn time_range_from(start: SystemTime) -> TimeRange {
    let seconds = start
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let start = DateTime::<Utc>::from_timestamp(seconds, 0).unwrap_or_default();
    TimeRange {
        start: Some(start.into()),
        end: None,
    }
}

/// The protojson form of a trust message; these messages always encode.
fn json_value<T: serde::Serialize>(message: &T) -> serde_json::Value {
    serde_json::to_value(message).unwrap_or_else(|e| serde_json::Value::String(format!("<{e}>")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn trust_entries_are_protojson_with_rfc3339_starts() {
        let dir = tempfile::tempdir().unwrap();
        let signer = load_or_generate(dir.path(), "log.example").unwrap();
        let identity = LogIdentity::of(&signer, "log.example", 3000);
        for (seconds, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_795_311_045, "2026-11-22T01:30:45Z"),
        ] {
            let at = UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_millis(700);
            let tlog = identity.trusted_root_tlog(at);
            assert_eq!(tlog["publicKey"]["validFor"]["start"], text);
            assert_eq!(identity.signing_config_entry(at)["validFor"]["start"], text);
        }
        let tlog = identity.trusted_root_tlog(UNIX_EPOCH);
        assert_eq!(tlog["baseUrl"], "http://log.example:3000");
        assert_eq!(tlog["hashAlgorithm"], "SHA2_256");
        assert_eq!(tlog["publicKey"]["keyDetails"], "PKIX_ED25519");
        assert_eq!(tlog["logId"], tlog["checkpointKeyId"]);
        assert_eq!(
            tlog["logId"]["keyId"],
            STANDARD.encode(signer.log_id()).as_str()
        );
        let service = identity.signing_config_entry(UNIX_EPOCH);
        assert_eq!(service["majorApiVersion"], 2);
        assert_eq!(service["operator"], "log.example");
    }

    #[test]
    fn generated_keys_are_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_generate(dir.path(), "log.example").unwrap();
        let second = load_or_generate(dir.path(), "log.example").unwrap();
        assert_eq!(first.log_id(), second.log_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(GENERATED_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[cfg(unix)]
    #[test]
    fn group_readable_keys_load_as_kubernetes_mounts_them() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        load_or_generate(dir.path(), "log.example").unwrap();
        let path = dir.path().join(GENERATED_KEY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o440)).unwrap();
        load_signer(&path, None, "log.example").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o460)).unwrap();
        assert!(matches!(
            load_signer(&path, None, "log.example"),
            Err(KeyError::Permissions { mode: 0o460, .. })
        ));
    }

    #[test]
    fn mldsa_keys_are_generated_only_when_asked_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let primary = || load_or_generate(dir.path(), "log.example").unwrap();
        let plain = with_mldsa(primary(), None, false, Some(dir.path()), "log.example").unwrap();
        assert!(plain.mldsa44_verifier().is_none());
        assert!(!dir.path().join(GENERATED_MLDSA_KEY_FILE).exists());

        let first = with_mldsa(primary(), None, true, Some(dir.path()), "log.example").unwrap();
        let second = with_mldsa(primary(), None, true, Some(dir.path()), "log.example").unwrap();
        let vkey = first.mldsa44_verifier().unwrap().to_vkey();
        assert_eq!(second.mldsa44_verifier().unwrap().to_vkey(), vkey);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.path().join(GENERATED_MLDSA_KEY_FILE);
            let mode = std::fs::metadata(path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        // The same file given by path.
        let path = dir.path().join(GENERATED_MLDSA_KEY_FILE);
        let by_path = with_mldsa(primary(), Some(&path), false, None, "log.example").unwrap();
        assert_eq!(by_path.mldsa44_verifier().unwrap().to_vkey(), vkey);

        assert!(matches!(
            with_mldsa(primary(), None, true, None, "log.example"),
            Err(KeyError::MlDsaGenerateUnsupported)
        ));
        // The Ed25519 key file is not an ML-DSA-44 key.
        let ed25519 = dir.path().join(GENERATED_KEY_FILE);
        assert!(matches!(
            with_mldsa(primary(), Some(&ed25519), false, None, "log.example"),
            Err(KeyError::Key { .. })
        ));
    }

    #[test]
    fn describe_prints_both_keys() {
        let dir = tempfile::tempdir().unwrap();
        let signer = load_or_generate(dir.path(), "log.example").unwrap();
        let single = LogIdentity::of(&signer, "log.example", 3000).describe(UNIX_EPOCH);
        assert!(single.contains("ML-DSA-44 key: none"), "{single}");

        let dual = with_mldsa(signer, None, true, Some(dir.path()), "log.example").unwrap();
        let identity = LogIdentity::of(&dual, "log.example", 3000);
        let text = identity.describe(UNIX_EPOCH);
        let mldsa = dual.mldsa44_verifier().unwrap();
        let primary_vkey = dual.verifier().to_vkey().unwrap();
        assert!(
            text.contains(&format!("verifier key:  {primary_vkey}\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("ML-DSA-44 verifier key: {}\n", mldsa.to_vkey())),
            "{text}"
        );
        assert!(text.contains(&format!(
            "ML-DSA-44 key ID: {} (hex)",
            hex::encode(rekor_note::NoteVerifier::key_id(&mldsa))
        )));
        // The TrustedRoot entry still describes the primary key only.
        let tlog = identity.trusted_root_tlog(UNIX_EPOCH);
        assert_eq!(tlog["publicKey"]["keyDetails"], "PKIX_ED25519");
    }

    #[cfg(unix)]
    #[test]
    fn world_readable_keys_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        load_or_generate(dir.path(), "log.example").unwrap();
        let path = dir.path().join(GENERATED_KEY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = load_signer(&path, None, "log.example").unwrap_err();
        assert!(
            matches!(error, KeyError::Permissions { mode: 0o644, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("chmod 600"));
    }
}
