//! The log's signing key: loaded from `--signer-filepath`, or generated once into the storage
//! directory; and the trust material Sigstore clients need to verify this log.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use rekor_api::common::v1::{HashAlgorithm, LogId, PublicKey, PublicKeyDetails, TimeRange};
use rekor_api::trustroot::v1::{Service, TransparencyLogInstance};
use rekor_note::{KeyName, LogKeyAlgorithm, LogSigner};

/// The file a generated key is kept in, inside the storage directory's private state.
pub const GENERATED_KEY_FILE: &str = ".rekor/signer.pem";

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
        format!(
            "origin:        {origin}\n\
             public key:    {key} (DER SPKI, base64)\n\
             key type:      {details}\n\
             log ID:        {hex} (hex)\n\
             log ID:        {b64} (base64)\n\
             verifier key:  {vkey}\n\n\
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
