//! The flags every `rekor-server-*` binary shares. Names and defaults follow rekor-tiles, so Helm
//! values and scripts carry over; where we differ, the flag's help says why.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::rate_limit::Cidr;

/// Server flags shared by every backend.
#[derive(Args, Clone, Debug)]
pub struct ServerArgs {
    /// Public hostname, used as the checkpoint origin and the note key name (e.g.
    /// `log2026-1.example.dev`; `localhost` for a local log). Use the bare host, without a port:
    /// sigstore-go derives the expected origin from the host of the TrustedRoot `baseUrl`.
    #[arg(long, env = "REKOR_HOSTNAME", default_value_t = default_hostname())]
    pub hostname: String,

    /// HTTP address to bind to.
    #[arg(long, default_value = "127.0.0.1")]
    pub http_address: IpAddr,
    /// HTTP port to bind to (0: any free port; the bound address is logged).
    #[arg(long, default_value_t = 3000)]
    pub http_port: u16,
    /// gRPC address to bind to.
    #[arg(long, default_value = "127.0.0.1")]
    pub grpc_address: IpAddr,
    /// gRPC port to bind to (0: any free port).
    #[arg(long, default_value_t = 3001)]
    pub grpc_port: u16,
    /// Port for Prometheus metrics (`/metrics`), on the HTTP address (0: any free port).
    #[arg(long, default_value_t = 2112)]
    pub http_metrics_port: u16,

    /// Timeout for one gRPC or HTTP request.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub server_timeout: Duration,
    /// Largest accepted request body in bytes, for HTTP and gRPC alike.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub max_request_body_size: usize,
    /// Memory (bytes) for caching full tiles and entry bundles served by the read API; their
    /// bytes never change once written. Zero turns the cache off (partial tiles are never cached)
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub tile_cache_size: usize,
    /// Log level: trace, debug, info, warn or error (`RUST_LOG` overrides it).
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Emit logs as JSON lines instead of text.
    #[arg(long)]
    pub log_json: bool,

    /// TLS certificate (PEM chain) for the HTTP listener; with the key file, HTTP is served over TLS 1.3.
    #[arg(long, requires = "http_tls_key_file")]
    pub http_tls_cert_file: Option<PathBuf>,
    /// TLS private key (PEM) for the HTTP listener.
    #[arg(long, requires = "http_tls_cert_file")]
    pub http_tls_key_file: Option<PathBuf>,
    /// TLS certificate (PEM chain) for the gRPC listener; with the key file, gRPC is served over TLS 1.3.
    #[arg(long, requires = "grpc_tls_key_file")]
    pub grpc_tls_cert_file: Option<PathBuf>,
    /// TLS private key (PEM) for the gRPC listener.
    #[arg(long, requires = "grpc_tls_cert_file")]
    pub grpc_tls_key_file: Option<PathBuf>,

    /// Keep a search index of the log's entries (artifact digests, signer keys, certificate
    /// identities) in the backend and answer GET /api/v2/search from it. The index is derived
    /// from the entry bundles: it is built from them on the first start and caught up on each.
    #[arg(long)]
    pub search_index: bool,

    /// With --search-index: how often the log signs a commitment to its search index (what
    /// lets a client check a search left no entry out), each time the log has grown since the
    /// last. Building one reads the whole index once. 0s signs none.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub search_commitment_interval: Duration,

    /// Answer the resubmission of an entry already in the log as its first submission was
    /// answered (HTTP 201 / gRPC OK, the existing entry with an inclusion proof into the current
    /// checkpoint), plus `x-log-index: N` to tell it apart. Off by default: as in Rekor v2, a
    /// duplicate gets HTTP 409 / gRPC ALREADY_EXISTS with `x-log-index: N`.
    #[arg(long)]
    pub duplicate_returns_entry: bool,

    /// Refuse new entries (HTTP 405 / gRPC Unimplemented) and serve only reads: a frozen log.
    #[arg(long)]
    pub read_only: bool,

    /// Path to the log's signing key (PEM: Ed25519, ECDSA P-256 or P-384; PKCS#8, optionally
    /// encrypted, or SEC1). Without it, the POSIX server generates an Ed25519 key in its storage
    /// directory on first start and reuses it.
    #[arg(long)]
    pub signer_filepath: Option<PathBuf>,
    /// Password for an encrypted signing key.
    #[arg(long, env = "REKOR_SIGNER_PASSWORD", hide_env_values = true)]
    pub signer_password: Option<String>,
    /// The log's signing key in an HSM or KMS instead of a file, as rekor-tiles names it:
    /// `pkcs11:token=T;object=O?pin-value=P&module-path=/usr/lib/softhsm/libsofthsm2.so`
    /// (RFC 7512), `awskms://[ENDPOINT]/KEY-ID-OR-ARN` or `gcpkms://projects/P/locations/L/
    /// keyRings/R/cryptoKeys/K/cryptoKeyVersions/V`. Ed25519, ECDSA P-256 or P-384 keys.
    #[arg(long, conflicts_with = "signer_filepath")]
    pub signer_kmskey: Option<String>,
    /// Path to an ML-DSA-44 private key: unencrypted PKCS#8 PEM (`PRIVATE KEY`), RFC 9881 seed
    /// or seed-and-expanded-key form, not readable by others. When set, every checkpoint is
    /// dual-signed: the line of the --signer-filepath (or generated) key, then an ML-DSA-44
    /// line under the same name (c2sp.org/tlog-cosignature, type 0x06, timestamped). Clients
    /// that do not know the ML-DSA-44 key ignore its line.
    #[arg(long, conflicts_with = "signer_mldsa_generate")]
    pub signer_mldsa_filepath: Option<PathBuf>,
    /// Dual-sign with an ML-DSA-44 key generated in the storage directory
    /// (`.rekor/signer-mldsa.pem`, mode 0600) on first start and reused after; POSIX server only.
    /// No ML-DSA-44 key is generated or used without this flag, so keep passing it once clients
    /// rely on the key.
    #[arg(long)]
    pub signer_mldsa_generate: bool,

    /// Most entries in one batch. Under load each batch costs a sequencing fsync and usually a
    /// checkpoint, so a larger cap lowers the CPU per entry; an idle log still takes each entry
    /// at once (Tessera's default is 256; see BENCHMARKS.md for the measurement behind 1024).
    #[arg(long, default_value_t = 1024)]
    pub batch_max_size: usize,
    /// Longest an entry waits for its batch to close. An idle log closes a batch at once.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    pub batch_max_age: Duration,
    /// Least time between two checkpoints. Zero (the POSIX default) publishes after every batch, so a
    /// write completes in milliseconds.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub checkpoint_interval: Duration,
    /// Requests in flight beyond which new ones get HTTP 503 / gRPC Unavailable.
    #[arg(long, default_value_t = 4096)]
    pub pushback_max_outstanding: usize,
    /// How long shutdown waits for in-flight batches to be published.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub tlog_timeout: Duration,
    /// Keep the dedup index on disk, so duplicates are refused after a restart too. Unlike
    /// rekor-tiles this defaults to true: the index is written in the same commit as sequencing.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub persistent_antispam: bool,

    /// Entries per second one client may add (HTTP 429 with `Retry-After` / gRPC
    /// RESOURCE_EXHAUSTED beyond it); 0 turns per-client limits off. A client is its IP address,
    /// IPv6 clients by /64, behind `--trusted-proxies` the address they forwarded for. Reads are
    /// never limited: serve them from a CDN.
    #[arg(long, default_value_t = 0.0)]
    pub rate_limit_per_ip: f64,
    /// Entries one client may add at once before `--rate-limit-per-ip` applies.
    #[arg(long, default_value_t = 20)]
    pub rate_limit_burst: u32,
    /// Clients never rate-limited, comma-separated addresses or CIDR ranges (e.g.
    /// `10.0.0.0/8,2001:db8::/32`).
    #[arg(long, value_delimiter = ',', value_parser = parse_cidr)]
    pub rate_limit_allow: Vec<Cidr>,
    /// Proxies whose `X-Forwarded-For` names the client, comma-separated addresses or CIDR
    /// ranges. From any other peer the header is ignored: a client cannot choose its own address.
    #[arg(long, value_delimiter = ',', value_parser = parse_cidr)]
    pub trusted_proxies: Vec<Cidr>,

    /// Client signing algorithms to accept, comma-separated (default: all that Rekor v2 allows).
    #[arg(long, value_delimiter = ',')]
    pub client_signing_algorithms: Option<Vec<String>>,

    /// Witness policy file, in the format rekor-tiles reads (c2sp.org/tlog-policy): lines
    /// `witness <name> <vkey> <url>`, `group <name> <k>|any|all <member>...` and `quorum <name>`.
    /// Each checkpoint is sent to the quorum's witnesses (c2sp.org/tlog-witness
    /// `<url>/add-checkpoint`) and stored, served and returned with their cosignatures.
    #[arg(long)]
    pub witness_policy_path: Option<PathBuf>,
    /// How long a checkpoint waits for witness cosignatures (Tessera's default). Entries wait for
    /// their checkpoint, so this bounds what witnessing adds to a write.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub witness_timeout: Duration,
    /// Publish no checkpoint without the witness quorum: its entries get HTTP 503 / gRPC
    /// Unavailable and publication is retried. By default (as in rekor-tiles) a checkpoint is
    /// published with the cosignatures that came in time, and the miss is counted and logged.
    #[arg(long, requires = "witness_policy_path")]
    pub witness_fail_closed: bool,
}

fn parse_cidr(text: &str) -> Result<Cidr, String> {
    text.parse()
        .map_err(|e: crate::rate_limit::CidrError| e.to_string())
}

fn default_hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Parses durations like `250ms`, `20s`, `1m`, `1h` (Go's `time.ParseDuration` subset).
///
/// # Errors
///
/// A message naming the accepted forms.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: expected e.g. 250ms, 20s, 1m"))?;
    let seconds = match unit {
        "ns" => value / 1e9,
        "us" | "µs" => value / 1e6,
        "ms" => value / 1e3,
        "s" | "" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration unit in {text:?}: use ms, s, m or h"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
