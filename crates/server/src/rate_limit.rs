//! Per-client rate limiting: a token bucket per client address, an allow-list, and the
//! `X-Forwarded-For` walk that finds the client behind trusted proxies.
//!
//! This module is pure: it reads no clock (every call takes `now`), does no I/O and knows no
//! transport. The HTTP and gRPC layers call [`client_ip_from_headers`] (or [`client_ip`]) and
//! [`RateLimiter::check`], then turn a [`RetryAfter`] into `429 Too Many Requests` with a
//! `Retry-After` header ([`retry_after_header_value`]) or into gRPC `RESOURCE_EXHAUSTED`.
//! Overload pushback (503) is a different mechanism and stays separate: it protects the
//! server, this protects other clients from one client.
//!
//! Main types: [`RateLimitConfig`], [`RateLimiter`], [`RetryAfter`], [`Cidr`].
//!
//! ```
//! use std::net::IpAddr;
//! use std::time::Instant;
//! use rekor_server::rate_limit::{RateLimitConfig, RateLimiter, retry_after_header_value};
//!
//! let limiter = RateLimiter::new(RateLimitConfig {
//!     per_second: 1.0,
//!     burst: 2,
//!     ..RateLimitConfig::default()
//! })?;
//! let client: IpAddr = "192.0.2.7".parse()?;
//! let now = Instant::now();
//! assert!(limiter.check(client, now).is_ok());
//! assert!(limiter.check(client, now).is_ok());
//! let refused = limiter.check(client, now).unwrap_err();
//! assert_eq!(retry_after_header_value(refused.wait()), "1");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use http::HeaderMap;

/// The longest CIDR text accepted. The longest IPv6 text form is 45 characters; with `/128`
/// that is 49.
pub const MAX_CIDR_LEN: usize = 64;

/// How many `X-Forwarded-For` elements are examined, counted from the right, before the walk
/// stops. Real chains are two or three proxies deep; the cap bounds work per request.
pub const MAX_FORWARDED_HOPS: usize = 16;

/// The longest single `X-Forwarded-For` element accepted: `[` + 45-character IPv6 + `]:65535`
/// is 53 characters, plus room for surrounding spaces.
pub const MAX_FORWARDED_ELEMENT_LEN: usize = 64;

/// The default bound on tracked clients. A bucket costs roughly 64–80 bytes with its hash-table
/// slot, so this caps the table at about 8 MB.
pub const DEFAULT_MAX_CLIENTS: usize = 100_000;

/// The table is split into this many independently locked shards (fewer if `max_clients` is
/// smaller). Why: an eviction sweep is O(shard size) under the lock; sharding keeps that pause
/// to 1/16 of the table and lets requests for other clients proceed meanwhile.
const SHARDS: usize = 16;

/// A sweep that finds too few full buckets evicts this fraction (1/N) of the shard, so the
/// O(shard) sweep runs at most once per shard/N insertions: amortised O(1) per new client.
const EVICT_FRACTION: usize = 8;

// ---------------------------------------------------------------------------------------------
// CIDR
// ---------------------------------------------------------------------------------------------

/// Why a CIDR string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidrError {
    /// The input was empty (or only whitespace).
    #[error("empty CIDR")]
    Empty,
    /// The input is longer than [`MAX_CIDR_LEN`].
    #[error("CIDR is {len} bytes long, at most {MAX_CIDR_LEN} are allowed")]
    TooLong {
        /// The input length in bytes.
        len: usize,
    },
    /// The part before `/` is not an IPv4 or IPv6 address.
    #[error("{addr:?} is not an IPv4 or IPv6 address")]
    InvalidAddress {
        /// The offending address text.
        addr: String,
    },
    /// The part after `/` is not a plain decimal number.
    #[error("prefix length {prefix:?} is not a decimal number")]
    InvalidPrefix {
        /// The offending prefix text.
        prefix: String,
    },
    /// The prefix length exceeds the address width.
    #[error("prefix length /{prefix} is longer than /{max}, the width of the address")]
    PrefixTooLong {
        /// The prefix length given.
        prefix: u32,
        /// 32 for IPv4, 128 for IPv6.
        max: u8,
    },
    /// Bits beyond the prefix are set, as in `10.1.2.3/8`. Rejected rather than masked: in an
    /// allow-list or proxy list such a typo would silently widen or narrow the range.
    #[error("{input} has bits set beyond the prefix; did you mean {network}?")]
    HostBitsSet {
        /// The input as written.
        input: String,
        /// The network the prefix selects.
        network: Cidr,
    },
}

/// An IP network: an address and a prefix length, with no bits set beyond the prefix.
///
/// IPv4-mapped IPv6 networks (`::ffff:10.0.0.0/104`) are stored as their IPv4 equivalent
/// (`10.0.0.0/8`), and [`Cidr::contains`] compares mapped addresses as IPv4, so one client gets
/// one answer whether it reached us over an IPv4 or a dual-stack IPv6 socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The network `addr/prefix`.
    ///
    /// # Errors
    ///
    /// [`CidrError::PrefixTooLong`] if `prefix` exceeds the address width, and
    /// [`CidrError::HostBitsSet`] if `addr` has bits set beyond `prefix`.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, CidrError> {
        let (addr, prefix) = canonical_network(addr, prefix)?;
        let network = mask(addr, prefix);
        if network != addr {
            return Err(CidrError::HostBitsSet {
                input: format!("{addr}/{prefix}"),
                network: Self { network, prefix },
            });
        }
        Ok(Self { network, prefix })
    }

    /// The single address `addr` (`/32` or `/128`).
    pub fn host(addr: IpAddr) -> Self {
        let network = addr.to_canonical();
        let prefix = match network {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        Self { network, prefix }
    }

    /// The network address (the first address of the range).
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in this network. IPv4-mapped IPv6 addresses are compared as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match (self.network, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(ip, self.prefix) == self.network
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// Parses `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a `/32` or `/128`).
    /// Surrounding whitespace is ignored, so comma-separated flag values may have spaces.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_CIDR_LEN {
            return Err(CidrError::TooLong { len: s.len() });
        }
        let s = s.trim();
        if s.is_empty() {
            return Err(CidrError::Empty);
        }
        let (addr_text, prefix_text) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| CidrError::InvalidAddress {
            addr: addr_text.to_owned(),
        })?;
        let Some(prefix_text) = prefix_text else {
            return Ok(Self::host(addr));
        };
        // Only plain digits: `u32::from_str` would also take `+8`, and a sign in a network
        // list is more likely a typo than intent.
        let invalid_prefix = || CidrError::InvalidPrefix {
            prefix: prefix_text.to_owned(),
        };
        if prefix_text.is_empty()
            || prefix_text.len() > 3
            || !prefix_text.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(invalid_prefix());
        }
        let prefix: u32 = prefix_text.parse().map_err(|_| invalid_prefix())?;
        let max = width(addr);
        let prefix = u8::try_from(prefix)
            .ok()
            .filter(|p| *p <= max)
            .ok_or(CidrError::PrefixTooLong { prefix, max })?;
        Self::new(addr, prefix).map_err(|e| match e {
            CidrError::HostBitsSet { network, .. } => CidrError::HostBitsSet {
                input: s.to_owned(),
                network,
            },
            other => other,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn width(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// Checks the prefix width and turns an IPv4-mapped IPv6 network with a prefix of at least 96
/// into its IPv4 form. A mapped network shorter than /96 also spans non-mapped IPv6 space and
/// stays IPv6 (it then matches no IPv4 client, since clients are compared in canonical form).
fn canonical_network(addr: IpAddr, prefix: u8) -> Result<(IpAddr, u8), CidrError> {
    let max = width(addr);
    if prefix > max {
        return Err(CidrError::PrefixTooLong {
            prefix: u32::from(prefix),
            max,
        });
    }
    match addr {
        IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
            Some(v4) => Ok((IpAddr::V4(v4), prefix - 96)),
            None => Ok((addr, prefix)),
        },
        _ => Ok((addr, prefix)),
    }
}

/// `addr` with all bits beyond `prefix` cleared. `prefix` must not exceed the width.
fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}

fn in_any(list: &[Cidr], ip: IpAddr) -> bool {
    list.iter().any(|c| c.contains(ip))
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// Per-client rate limit settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitConfig {
    /// Sustained requests per second allowed per client. `0` turns rate limiting off.
    pub per_second: f64,
    /// How many requests a client may make at once after being idle: the bucket size.
    /// Must be at least 1 when limiting is on.
    pub burst: u32,
    /// Clients in these networks are never limited (monitors, internal CI, ...).
    pub allow: Vec<Cidr>,
    /// Peers in these networks are proxies whose `X-Forwarded-For` is believed. List only
    /// proxies that append the address they received the request from; a proxy that passes a
    /// client's header through unchanged lets that client choose its own address.
    pub trusted_proxies: Vec<Cidr>,
    /// The most clients tracked at once, which bounds memory under an attack from many
    /// addresses. See [`RateLimiter`] for what happens at the bound.
    pub max_clients: usize,
}

impl Default for RateLimitConfig {
    /// Off (`per_second` 0), burst 1, empty lists, [`DEFAULT_MAX_CLIENTS`].
    fn default() -> Self {
        Self {
            per_second: 0.0,
            burst: 1,
            allow: Vec::new(),
            trusted_proxies: Vec::new(),
            max_clients: DEFAULT_MAX_CLIENTS,
        }
    }
}

/// Why a [`RateLimitConfig`] was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitConfigError {
    /// `per_second` is negative, NaN or infinite.
    #[error("rate limit per second must be a finite number >= 0 (0 = off), got {per_second}")]
    InvalidRate {
        /// The value given.
        per_second: f64,
    },
    /// `burst` is 0 while limiting is on, which would refuse every request.
    #[error("rate limit burst must be at least 1 when rate limiting is on")]
    ZeroBurst,
    /// `max_clients` is 0 while limiting is on.
    #[error("rate limit max clients must be at least 1 when rate limiting is on")]
    ZeroMaxClients,
}

// ---------------------------------------------------------------------------------------------
// Limiter
// ---------------------------------------------------------------------------------------------

/// A refusal: the client may retry after [`RetryAfter::wait`], when one token will be back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(Duration);

impl RetryAfter {
    /// A refusal whose client may retry after `wait`.
    pub fn new(wait: Duration) -> Self {
        RetryAfter(wait)
    }

    /// Time until the client's bucket holds one token again.
    pub fn wait(&self) -> Duration {
        self.0
    }

    /// The `Retry-After` header value for this refusal; see [`retry_after_header_value`].
    pub fn header_value(&self) -> String {
        retry_after_header_value(self.0)
    }
}

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate limit exceeded, retry after {} s",
            retry_after_seconds(self.0)
        )
    }
}

impl std::error::Error for RetryAfter {}

/// `d` in whole seconds, rounded up, at least 1: the value of a `Retry-After` header
/// (RFC 9110 §10.2.3 allows only whole seconds). Rounding up means a client that waits exactly
/// this long finds a token; the minimum of 1 stops clients reading "0" as "retry at once".
pub fn retry_after_header_value(d: Duration) -> String {
    retry_after_seconds(d).to_string()
}

/// [`retry_after_header_value`] as a number, e.g. for a gRPC `RetryInfo` or a log field.
pub fn retry_after_seconds(d: Duration) -> u64 {
    d.as_secs()
        .saturating_add(u64::from(d.subsec_nanos() > 0))
        .max(1)
}

/// Which bucket a client lands in.
///
/// IPv6 clients are bucketed by their /64: SLAAC and privacy extensions (RFC 8981) let one host
/// pick any interface identifier in its /64 and rotate it at will, and ISPs delegate at least a
/// /64 to each subscriber, so per-/128 buckets would hand a single host 2^64 fresh buckets.
/// The cost is that hosts sharing a /64 share a bucket; allow-list such networks if needed.
/// IPv4 (and IPv4-mapped IPv6) clients get one bucket per address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum BucketKey {
    V4(u32),
    V6Prefix64(u64),
}

impl BucketKey {
    fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            IpAddr::V6(v6) => {
                let [a, b, c, d, ..] = v6.segments();
                let prefix = (u64::from(a) << 48) | (u64::from(b) << 32) | (u64::from(c) << 16);
                Self::V6Prefix64(prefix | u64::from(d))
            }
        }
    }
}

/// A token bucket. `tokens` is the level at `last`; refill is computed lazily.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// The level at `now`. A `now` before `last` (callers read the clock before taking the
    /// lock, so their order can invert) counts as no time passed: it never mints tokens.
    fn level(&self, now: Instant, rate: f64, burst: f64) -> f64 {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        (self.tokens + elapsed * rate).min(burst)
    }

    fn take(&mut self, now: Instant, rate: f64, burst: f64) -> Result<(), RetryAfter> {
        let level = self.level(now, rate, burst);
        self.tokens = level;
        self.last = self.last.max(now);
        if level >= 1.0 {
            self.tokens = level - 1.0;
            Ok(())
        } else {
            // Refused requests cost nothing, so a client that honours Retry-After gets in.
            let wait = Duration::try_from_secs_f64((1.0 - level) / rate).unwrap_or(Duration::MAX);
            Err(RetryAfter(wait))
        }
    }
}

type Shard = Mutex<HashMap<BucketKey, Bucket>>;

struct Inner {
    /// Tokens per second; 0 means off.
    rate: f64,
    burst: f64,
    allow: Vec<Cidr>,
    trusted_proxies: Vec<Cidr>,
    shards: Box<[Shard]>,
    shard_cap: usize,
    /// Picks the shard. Randomly keyed, like the maps themselves, so an attacker cannot aim
    /// many addresses at one shard.
    hasher: RandomState,
}

/// A per-client token-bucket rate limiter. Cheap to clone: clones share one table.
///
/// Each client (an IPv4 address or an IPv6 /64, see [`RateLimiter::check`]) has a bucket of
/// `burst` tokens that refills at `per_second`; a request takes one token or is refused with
/// the time until a token is back. Allow-listed clients always pass and are not tracked.
///
/// Memory is bounded by `max_clients`. When a shard is full and a new client arrives, buckets
/// that have refilled to full are dropped first: a full bucket is exactly what a new client
/// gets, so dropping it loses nothing. If that frees too little, the buckets closest to full
/// are dropped (forgiving those clients' small debts) — the most indebted clients, i.e. the
/// ones being limited, are remembered longest. New clients are never refused for lack of room:
/// refusing them would let an attacker with many addresses lock everyone else out.
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("per_second", &self.inner.rate)
            .field("burst", &self.inner.burst)
            .field("allow", &self.inner.allow)
            .field("trusted_proxies", &self.inner.trusted_proxies)
            .field("shards", &self.inner.shards.len())
            .field("shard_cap", &self.inner.shard_cap)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// A limiter for `config`. With `per_second == 0` it is off: [`RateLimiter::check`] always
    /// passes, but [`RateLimiter::client_ip`] still works.
    ///
    /// # Errors
    ///
    /// [`RateLimitConfigError`] if the rate is negative or not finite, or, with limiting on,
    /// `burst` or `max_clients` is 0.
    pub fn new(config: RateLimitConfig) -> Result<Self, RateLimitConfigError> {
        let RateLimitConfig {
            per_second,
            burst,
            allow,
            trusted_proxies,
            max_clients,
        } = config;
        if !per_second.is_finite() || per_second < 0.0 {
            return Err(RateLimitConfigError::InvalidRate { per_second });
        }
        let enabled = per_second > 0.0;
        if enabled && burst == 0 {
            return Err(RateLimitConfigError::ZeroBurst);
        }
        if enabled && max_clients == 0 {
            return Err(RateLimitConfigError::ZeroMaxClients);
        }
        // Fewer shards than SHARDS for tiny tables, so shards * shard_cap <= max_clients.
        let shard_count = if enabled { SHARDS.min(max_clients) } else { 0 };
        let shard_cap = max_clients.checked_div(shard_count).unwrap_or(0);
        let shards = (0..shard_count)
            .map(|_| Mutex::new(HashMap::new()))
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                rate: per_second,
                burst: f64::from(burst),
                allow,
                trusted_proxies,
                shards,
                shard_cap,
                hasher: RandomState::new(),
            }),
        })
    }

    /// Whether limiting is on (`per_second > 0`).
    pub fn is_enabled(&self) -> bool {
        self.inner.rate > 0.0
    }

    /// Whether `client` is on the allow-list.
    pub fn is_allowed(&self, client: IpAddr) -> bool {
        in_any(&self.inner.allow, client)
    }

    /// The configured trusted proxies.
    pub fn trusted_proxies(&self) -> &[Cidr] {
        &self.inner.trusted_proxies
    }

    /// Takes one token from `client`'s bucket, as of `now`.
    ///
    /// `client` is the address from [`client_ip`]. IPv4-mapped IPv6 addresses share the IPv4
    /// address's bucket; other IPv6 addresses share a bucket per /64 (see the type docs).
    ///
    /// # Errors
    ///
    /// [`RetryAfter`] with the time until a token is back, if the bucket is empty.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), RetryAfter> {
        let inner = &*self.inner;
        if !self.is_enabled() || self.is_allowed(client) {
            return Ok(());
        }
        let key = BucketKey::of(client);
        let Some(shard) = self.shard(&key) else {
            return Ok(());
        };
        let mut map = lock(shard);
        if let Some(bucket) = map.get_mut(&key) {
            return bucket.take(now, inner.rate, inner.burst);
        }
        if map.len() >= inner.shard_cap {
            evict(&mut map, now, inner.rate, inner.burst, inner.shard_cap);
        }
        // A new client's bucket starts full, minus this request; burst >= 1 when enabled.
        map.insert(
            key,
            Bucket {
                tokens: inner.burst - 1.0,
                last: now,
            },
        );
        Ok(())
    }

    /// [`client_ip`] with this limiter's trusted proxies.
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        client_ip(peer, forwarded_for, &self.inner.trusted_proxies)
    }

    /// [`client_ip_from_headers`] with this limiter's trusted proxies.
    pub fn client_ip_from_headers(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        client_ip_from_headers(peer, headers, &self.inner.trusted_proxies)
    }

    /// How many client buckets are held now (for metrics and tests). Locks each shard in turn.
    pub fn tracked_clients(&self) -> usize {
        self.inner.shards.iter().map(|s| lock(s).len()).sum()
    }

    fn shard(&self, key: &BucketKey) -> Option<&Shard> {
        let shards = &self.inner.shards;
        let hash = self.inner.hasher.hash_one(key);
        let count = u64::try_from(shards.len()).ok()?;
        let index = usize::try_from(hash.checked_rem(count)?).ok()?;
        shards.get(index)
    }
}

/// Buckets hold plain numbers that every update leaves consistent, so a panic elsewhere while
/// the lock was held leaves nothing to repair: take the map back from a poisoned lock.
fn lock(shard: &Shard) -> MutexGuard<'_, HashMap<BucketKey, Bucket>> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Frees at least `cap / EVICT_FRACTION` slots (at least one): every full bucket if there are
/// that many, otherwise the buckets closest to full.
fn evict(map: &mut HashMap<BucketKey, Bucket>, now: Instant, rate: f64, burst: f64, cap: usize) {
    let target = (cap / EVICT_FRACTION).clamp(1, map.len().max(1));
    let mut deficits: Vec<(f64, BucketKey)> = map
        .iter()
        .map(|(k, b)| ((burst - b.level(now, rate, burst)).max(0.0), *k))
        .collect();
    let full = deficits.iter().filter(|(d, _)| *d <= 0.0).count();
    if full >= target {
        map.retain(|_, b| b.level(now, rate, burst) < burst);
        return;
    }
    if let Some(nth) = target.checked_sub(1).filter(|n| *n < deficits.len()) {
        deficits.select_nth_unstable_by(nth, |a, b| a.0.total_cmp(&b.0));
    }
    for (_, key) in deficits.iter().take(target) {
        map.remove(key);
    }
}

// ---------------------------------------------------------------------------------------------
// X-Forwarded-For
// ---------------------------------------------------------------------------------------------

/// The address to rate-limit for a request from `peer` carrying `forwarded_for`, the value of
/// `X-Forwarded-For` (several header lines joined with `,`, in order).
///
/// The header is believed only from a trusted proxy, and only as far as it was written by
/// trusted proxies: each proxy appends the address it received the request from, so walking
/// from the right, every element up to and including the first untrusted address was written
/// by a trusted proxy, and everything left of it may be forged by the client. So:
///
/// - `peer` not in `trusted_proxies`: `peer`, header ignored;
/// - otherwise the rightmost element that is not a trusted proxy;
/// - if every element is a trusted proxy, the leftmost one (the client is itself in a trusted
///   network);
/// - a malformed element, or more than [`MAX_FORWARDED_HOPS`] elements, stops the walk at the
///   last good hop (a trusted proxy, possibly `peer`). Clients behind it then share its bucket,
///   which fails safe: nobody gets to pick their own address.
///
/// Elements may have spaces or tabs around them, and may carry a port (`1.2.3.4:567`,
/// `[2001:db8::1]:80`) or brackets (`[2001:db8::1]`), as some proxies write them; the port is
/// dropped and the rest must be a whole address. Accepting ports is safe because the address
/// still has to parse exactly. Unbracketed IPv6 is read as an address, never as address:port.
/// `unknown` and RFC 7239 obfuscated identifiers (`_hidden`) are malformed. Empty elements
/// (`a,,b`) are skipped, as RFC 9110 §5.6.1 requires of list recipients. The returned address
/// is canonical (IPv4-mapped IPv6 becomes IPv4).
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted_proxies: &[Cidr]) -> IpAddr {
    walk(peer, forwarded_for.into_iter().map(Some), trusted_proxies)
}

/// [`client_ip`] reading every `X-Forwarded-For` line of `headers`. A header value that is not
/// visible ASCII is malformed and stops the walk, like a malformed element.
pub fn client_ip_from_headers(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted_proxies: &[Cidr],
) -> IpAddr {
    walk(
        peer,
        headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.to_str().ok()),
        trusted_proxies,
    )
}

/// The walk behind [`client_ip`]; `lines` are header lines in order, `None` for unreadable.
fn walk<'a, I>(peer: IpAddr, lines: I, trusted_proxies: &[Cidr]) -> IpAddr
where
    I: DoubleEndedIterator<Item = Option<&'a str>>,
{
    let mut current = peer.to_canonical();
    if !in_any(trusted_proxies, current) {
        return current;
    }
    let mut hops = 0usize;
    for line in lines.rev() {
        let Some(line) = line else {
            return current;
        };
        for element in line.rsplit(',') {
            let element = element.trim_matches([' ', '\t']);
            if element.is_empty() {
                continue;
            }
            hops += 1;
            if hops > MAX_FORWARDED_HOPS {
                return current;
            }
            let Some(hop) = parse_forwarded_element(element) else {
                return current;
            };
            current = hop;
            if !in_any(trusted_proxies, current) {
                return current;
            }
        }
    }
    current
}

/// One `X-Forwarded-For` element, already trimmed: an address, `[v6]`, `v4:port` or
/// `[v6]:port`. Returns the canonical address.
fn parse_forwarded_element(element: &str) -> Option<IpAddr> {
    if element.len() > MAX_FORWARDED_ELEMENT_LEN {
        return None;
    }
    if let Some(rest) = element.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        if !after.is_empty() {
            parse_port(after.strip_prefix(':')?)?;
        }
        let v6: Ipv6Addr = addr.parse().ok()?;
        return Some(IpAddr::V6(v6).to_canonical());
    }
    if let Ok(ip) = element.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    // Only IPv4 may carry an unbracketed port; `::1:80` parsed above as an address.
    let (addr, port) = element.rsplit_once(':')?;
    parse_port(port)?;
    let v4: Ipv4Addr = addr.parse().ok()?;
    Some(IpAddr::V4(v4))
}

fn parse_port(port: &str) -> Option<u16> {
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    port.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn limiter(per_second: f64, burst: u32) -> RateLimiter {
        RateLimiter::new(RateLimitConfig {
            per_second,
            burst,
            ..RateLimitConfig::default()
        })
        .unwrap()
    }

    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn limiter_is_send_sync_and_clones_share_state() {
        assert_send_sync::<RateLimiter>();
        let a = limiter(1.0, 1);
        let b = a.clone();
        let now = Instant::now();
        a.check(ip("192.0.2.1"), now).unwrap();
        assert!(b.check(ip("192.0.2.1"), now).is_err());
        assert_eq!(b.tracked_clients(), 1);
    }

    #[test]
    fn burst_then_refusal() {
        let l = limiter(1.0, 3);
        let now = Instant::now();
        let c = ip("192.0.2.1");
        for _ in 0..3 {
            l.check(c, now).unwrap();
        }
        let refused = l.check(c, now).unwrap_err();
        assert_eq!(refused.wait(), Duration::from_secs(1));
        assert_eq!(refused.header_value(), "1");
        // Refusals are free: still exactly one second to wait.
        assert_eq!(l.check(c, now).unwrap_err().wait(), Duration::from_secs(1));
    }

    #[test]
    fn refill_over_time() {
        let l = limiter(2.0, 2);
        let t0 = Instant::now();
        let c = ip("192.0.2.1");
        l.check(c, t0).unwrap();
        l.check(c, t0).unwrap();
        assert_eq!(
            l.check(c, t0).unwrap_err().wait(),
            Duration::from_millis(500)
        );
        // Halfway to a token: the wait shrinks accordingly.
        let t1 = t0 + Duration::from_millis(250);
        assert_eq!(
            l.check(c, t1).unwrap_err().wait(),
            Duration::from_millis(250)
        );
        let t2 = t0 + Duration::from_millis(500);
        l.check(c, t2).unwrap();
        assert!(l.check(c, t2).is_err());
        // A long idle refills to `burst`, not beyond.
        let t3 = t2 + Duration::from_secs(3600);
        l.check(c, t3).unwrap();
        l.check(c, t3).unwrap();
        assert!(l.check(c, t3).is_err());
    }

    #[test]
    fn slow_rate_gives_long_retry_after() {
        let l = limiter(0.1, 1);
        let now = Instant::now();
        let c = ip("192.0.2.1");
        l.check(c, now).unwrap();
        let refused = l.check(c, now).unwrap_err();
        assert_eq!(retry_after_seconds(refused.wait()), 10);
        assert_eq!(refused.to_string(), "rate limit exceeded, retry after 10 s");
    }

    #[test]
    fn clock_going_backwards_mints_no_tokens() {
        let l = limiter(1.0, 1);
        let t1 = Instant::now() + Duration::from_secs(10);
        let c = ip("192.0.2.1");
        l.check(c, t1).unwrap();
        let earlier = t1 - Duration::from_secs(5);
        assert!(l.check(c, earlier).is_err());
        // Time is measured from the latest instant seen, not the earlier one.
        assert!(l.check(c, t1 + Duration::from_millis(999)).is_err());
        l.check(c, t1 + Duration::from_secs(2)).unwrap();
    }

    #[test]
    fn clients_have_separate_buckets() {
        let l = limiter(1.0, 1);
        let now = Instant::now();
        l.check(ip("192.0.2.1"), now).unwrap();
        l.check(ip("192.0.2.2"), now).unwrap();
        assert!(l.check(ip("192.0.2.1"), now).is_err());
        assert!(l.check(ip("192.0.2.2"), now).is_err());
    }

    #[test]
    fn disabled_limiter_passes_everything() {
        let l = limiter(0.0, 0);
        assert!(!l.is_enabled());
        let now = Instant::now();
        for _ in 0..100 {
            l.check(ip("192.0.2.1"), now).unwrap();
        }
        assert_eq!(l.tracked_clients(), 0);
    }

    #[test]
    fn allow_list_bypasses_limit() {
        let l = RateLimiter::new(RateLimitConfig {
            per_second: 1.0,
            burst: 1,
            allow: vec![cidr("10.0.0.0/8"), cidr("2001:db8:aa::/48")],
            ..RateLimitConfig::default()
        })
        .unwrap();
        let now = Instant::now();
        for _ in 0..50 {
            l.check(ip("10.1.2.3"), now).unwrap();
            l.check(ip("::ffff:10.1.2.3"), now).unwrap();
            l.check(ip("2001:db8:aa:1::5"), now).unwrap();
        }
        assert_eq!(
            l.tracked_clients(),
            0,
            "allow-listed clients are not tracked"
        );
        l.check(ip("11.0.0.1"), now).unwrap();
        assert!(l.check(ip("11.0.0.1"), now).is_err());
        l.check(ip("2001:db8:ab::1"), now).unwrap();
        assert!(l.check(ip("2001:db8:ab::1"), now).is_err());
    }

    #[test]
    fn ipv6_is_bucketed_by_64() {
        let l = limiter(1.0, 1);
        let now = Instant::now();
        l.check(ip("2001:db8:0:1::1"), now).unwrap();
        // Same /64, different interface identifier: same bucket.
        assert!(
            l.check(ip("2001:db8:0:1:ffff:ffff:ffff:fffe"), now)
                .is_err()
        );
        // Neighbouring /64: its own bucket.
        l.check(ip("2001:db8:0:2::1"), now).unwrap();
        assert_eq!(l.tracked_clients(), 2);
    }

    #[test]
    fn ipv4_mapped_shares_the_ipv4_bucket() {
        let l = limiter(1.0, 1);
        let now = Instant::now();
        l.check(ip("192.0.2.9"), now).unwrap();
        assert!(l.check(ip("::ffff:192.0.2.9"), now).is_err());
        // ...and an IPv4 address is not confused with the IPv6 /64 that has the same bits.
        l.check(ip("c000:209::"), now).unwrap();
    }

    #[test]
    fn concurrent_checks_grant_exactly_burst() {
        let l = limiter(1.0, 20);
        let now = Instant::now();
        let granted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let l = l.clone();
                    s.spawn(move || {
                        (0..50)
                            .filter(|_| l.check(ip("192.0.2.1"), now).is_ok())
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(granted, 20);
    }

    fn nth_v4(i: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i))
    }

    #[test]
    fn table_stays_bounded_under_100k_addresses_and_keeps_abusers() {
        let max_clients = 1_000;
        let l = RateLimiter::new(RateLimitConfig {
            per_second: 1.0,
            burst: 5,
            max_clients,
            ..RateLimitConfig::default()
        })
        .unwrap();
        let now = Instant::now();
        // An abuser drains its bucket, then a flood of one-shot addresses arrives at the same
        // instant, so nothing refills and every flood bucket owes one token.
        let abuser = ip("192.0.2.66");
        for _ in 0..5 {
            l.check(abuser, now).unwrap();
        }
        assert!(l.check(abuser, now).is_err());
        for i in 0..100_000u32 {
            // Fail open for new clients: a full table never locks anyone out.
            l.check(nth_v4(i), now).unwrap();
            if i % 5_000 == 0 {
                assert!(l.tracked_clients() <= max_clients);
            }
        }
        assert!(l.tracked_clients() <= max_clients);
        // The most indebted bucket is evicted last, so the abuser is still limited.
        assert!(l.check(abuser, now).is_err());
    }

    #[test]
    fn ipv6_flood_within_one_64_takes_one_slot() {
        let l = limiter(1.0, 1);
        let now = Instant::now();
        let base = u128::from(ip_v6("2001:db8:1:2::"));
        let mut granted = 0;
        for i in 0..10_000u128 {
            if l.check(IpAddr::V6(Ipv6Addr::from(base + i)), now).is_ok() {
                granted += 1;
            }
        }
        assert_eq!(granted, 1);
        assert_eq!(l.tracked_clients(), 1);
    }

    fn ip_v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn full_buckets_are_evicted_first_and_losslessly() {
        let max_clients = 32;
        let l = RateLimiter::new(RateLimitConfig {
            per_second: 1.0,
            burst: 10,
            max_clients,
            ..RateLimitConfig::default()
        })
        .unwrap();
        let t0 = Instant::now();
        let abuser = ip("192.0.2.66");
        for _ in 0..10 {
            l.check(abuser, t0).unwrap();
        }
        for i in 0..1_000 {
            l.check(nth_v4(i), t0).unwrap();
        }
        // Two seconds later the flood buckets are full again (they owed one token), while the
        // abuser (owing ten, now eight) is not; a second flood, whose buckets owe one token
        // each, must evict the full ones and then the least indebted, never the abuser.
        let t1 = t0 + Duration::from_secs(2);
        for i in 1_000..2_000 {
            l.check(nth_v4(i), t1).unwrap();
        }
        assert!(l.tracked_clients() <= max_clients);
        l.check(abuser, t1).unwrap();
        l.check(abuser, t1).unwrap();
        assert!(
            l.check(abuser, t1).is_err(),
            "abuser's debt survived eviction"
        );
        // An evicted client comes back with a fresh, full bucket: exactly what it had.
        for _ in 0..10 {
            l.check(nth_v4(0), t1).unwrap();
        }
        assert!(l.check(nth_v4(0), t1).is_err());
    }

    #[test]
    fn tiny_table_bound_holds() {
        for max_clients in [1, 2, 15, 17] {
            let l = RateLimiter::new(RateLimitConfig {
                per_second: 1.0,
                burst: 2,
                max_clients,
                ..RateLimitConfig::default()
            })
            .unwrap();
            let now = Instant::now();
            for i in 0..200 {
                l.check(nth_v4(i), now).unwrap();
                assert!(
                    l.tracked_clients() <= max_clients,
                    "max_clients {max_clients}"
                );
            }
        }
    }

    #[test]
    fn config_is_validated() {
        let with = |per_second, burst, max_clients| {
            RateLimiter::new(RateLimitConfig {
                per_second,
                burst,
                max_clients,
                ..RateLimitConfig::default()
            })
            .map(|_| ())
        };
        assert!(matches!(
            with(-1.0, 1, 10),
            Err(RateLimitConfigError::InvalidRate { .. })
        ));
        assert!(matches!(
            with(f64::NAN, 1, 10),
            Err(RateLimitConfigError::InvalidRate { .. })
        ));
        assert!(matches!(
            with(f64::INFINITY, 1, 10),
            Err(RateLimitConfigError::InvalidRate { .. })
        ));
        assert_eq!(with(1.0, 0, 10), Err(RateLimitConfigError::ZeroBurst));
        assert_eq!(with(1.0, 1, 0), Err(RateLimitConfigError::ZeroMaxClients));
        // Off: burst and max_clients do not matter.
        assert_eq!(with(0.0, 0, 0), Ok(()));
        // Extreme but valid rates do not panic.
        let slow = limiter(f64::MIN_POSITIVE, 1);
        let now = Instant::now();
        slow.check(ip("192.0.2.1"), now).unwrap();
        assert_eq!(
            slow.check(ip("192.0.2.1"), now).unwrap_err().wait(),
            Duration::MAX
        );
        let fast = limiter(f64::MAX, 1);
        fast.check(ip("192.0.2.1"), now).unwrap();
        fast.check(ip("192.0.2.1"), now + Duration::from_nanos(1))
            .unwrap();
    }

    #[test]
    fn retry_after_header_rounds_up_with_minimum_one() {
        let cases = [
            (Duration::ZERO, "1"),
            (Duration::from_nanos(1), "1"),
            (Duration::from_millis(999), "1"),
            (Duration::from_secs(1), "1"),
            (Duration::from_millis(1_001), "2"),
            (Duration::from_millis(59_500), "60"),
            (Duration::from_secs(120), "120"),
            (Duration::MAX, "18446744073709551615"),
        ];
        for (d, want) in cases {
            assert_eq!(retry_after_header_value(d), want, "{d:?}");
        }
    }

    // --- CIDR ---

    #[test]
    fn cidr_parses_and_contains() {
        let v4 = cidr("10.0.0.0/8");
        assert_eq!(v4.to_string(), "10.0.0.0/8");
        assert!(v4.contains(ip("10.255.0.1")));
        assert!(v4.contains(ip("::ffff:10.0.0.1")));
        assert!(!v4.contains(ip("11.0.0.0")));
        assert!(!v4.contains(ip("::a00:1")), "IPv4-compatible is not mapped");

        let v6 = cidr("2001:db8::/32");
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::")));
        assert!(!v6.contains(ip("10.0.0.1")));

        let host = cidr("192.0.2.1");
        assert_eq!((host.network(), host.prefix_len()), (ip("192.0.2.1"), 32));
        assert!(host.contains(ip("192.0.2.1")));
        assert!(!host.contains(ip("192.0.2.2")));
        assert_eq!(cidr("::1").prefix_len(), 128);

        let all = cidr("0.0.0.0/0");
        assert!(all.contains(ip("255.255.255.255")));
        assert!(!all.contains(ip("::1")));
        assert!(cidr("::/0").contains(ip("2001:db8::1")));
        assert_eq!(cidr(" 10.0.0.0/8 "), v4);
    }

    #[test]
    fn cidr_mapped_ipv6_becomes_ipv4() {
        assert_eq!(cidr("::ffff:10.0.0.0/104"), cidr("10.0.0.0/8"));
        assert_eq!(cidr("::ffff:192.0.2.1"), cidr("192.0.2.1"));
        assert_eq!(cidr("::ffff:0.0.0.0/96"), cidr("0.0.0.0/0"));
        // Shorter than /96 spans more than mapped space: stays IPv6.
        let wide = cidr("::fffe:0:0/95");
        assert!(wide.network().is_ipv6());
        assert!(!wide.contains(ip("::ffff:10.0.0.1")));
        assert!(wide.contains(ip("::fffe:1:2")));
    }

    #[test]
    fn cidr_parse_errors_are_precise() {
        let err = |s: &str| s.parse::<Cidr>().unwrap_err();
        assert_eq!(err(""), CidrError::Empty);
        assert_eq!(err("  "), CidrError::Empty);
        assert_eq!(err(&"1".repeat(65)), CidrError::TooLong { len: 65 });
        assert_eq!(
            err("10.0.0/8"),
            CidrError::InvalidAddress {
                addr: "10.0.0".into()
            }
        );
        assert_eq!(
            err("fe80::1%eth0"),
            CidrError::InvalidAddress {
                addr: "fe80::1%eth0".into()
            }
        );
        assert_eq!(
            err("10.0.0.0/"),
            CidrError::InvalidPrefix { prefix: "".into() }
        );
        assert_eq!(
            err("10.0.0.0/+8"),
            CidrError::InvalidPrefix {
                prefix: "+8".into()
            }
        );
        assert_eq!(
            err("10.0.0.0/8/8"),
            CidrError::InvalidPrefix {
                prefix: "8/8".into()
            }
        );
        assert_eq!(
            err("10.0.0.0/1000"),
            CidrError::InvalidPrefix {
                prefix: "1000".into()
            }
        );
        assert_eq!(
            err("10.0.0.0/33"),
            CidrError::PrefixTooLong {
                prefix: 33,
                max: 32
            }
        );
        assert_eq!(
            err("::/129"),
            CidrError::PrefixTooLong {
                prefix: 129,
                max: 128
            }
        );
        assert_eq!(
            err("10.0.0.0/256"),
            CidrError::PrefixTooLong {
                prefix: 256,
                max: 32
            }
        );
        let e = err("10.1.2.3/8");
        assert_eq!(
            e,
            CidrError::HostBitsSet {
                input: "10.1.2.3/8".into(),
                network: cidr("10.0.0.0/8")
            }
        );
        assert_eq!(
            e.to_string(),
            "10.1.2.3/8 has bits set beyond the prefix; did you mean 10.0.0.0/8?"
        );
        assert!(matches!(
            err("2001:db8::1/32"),
            CidrError::HostBitsSet { .. }
        ));
        assert_eq!(
            Cidr::new(ip("10.0.0.0"), 40),
            Err(CidrError::PrefixTooLong {
                prefix: 40,
                max: 32
            })
        );
    }

    // --- X-Forwarded-For ---

    fn proxies() -> Vec<Cidr> {
        vec![cidr("10.0.0.0/8"), cidr("fd00::/8")]
    }

    #[test]
    fn xff_ignored_from_untrusted_peer() {
        let peer = ip("203.0.113.5");
        assert_eq!(client_ip(peer, Some("198.51.100.1"), &proxies()), peer);
        assert_eq!(client_ip(peer, None, &proxies()), peer);
        // With no trusted proxies at all, nobody is believed.
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("198.51.100.1"), &[]),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn xff_from_trusted_peer_takes_rightmost_untrusted() {
        let peer = ip("10.0.0.1");
        assert_eq!(
            client_ip(peer, Some("198.51.100.1"), &proxies()),
            ip("198.51.100.1")
        );
        // The client forged "1.1.1.1" to the left; the proxy appended the real address.
        assert_eq!(
            client_ip(peer, Some("1.1.1.1, 198.51.100.1"), &proxies()),
            ip("198.51.100.1")
        );
        // No header from a trusted proxy: the proxy itself.
        assert_eq!(client_ip(peer, None, &proxies()), peer);
        assert_eq!(client_ip(peer, Some(""), &proxies()), peer);
        // A dual-stack socket's mapped peer is matched as IPv4.
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), Some("198.51.100.1"), &proxies()),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn xff_chained_proxies() {
        let peer = ip("10.0.0.1");
        assert_eq!(
            client_ip(
                peer,
                Some("1.1.1.1, 198.51.100.1, 10.2.0.1, fd00::7"),
                &proxies()
            ),
            ip("198.51.100.1")
        );
        // Every hop trusted: the leftmost, the client is inside.
        assert_eq!(
            client_ip(peer, Some("10.9.9.9, 10.2.0.1"), &proxies()),
            ip("10.9.9.9")
        );
        // Too many hops: stop at the last one examined.
        let long = vec!["10.0.0.2"; MAX_FORWARDED_HOPS + 1].join(",");
        let long = format!("198.51.100.1,{long}");
        assert_eq!(client_ip(peer, Some(&long), &proxies()), ip("10.0.0.2"));
    }

    #[test]
    fn xff_malformed_stops_the_walk() {
        let peer = ip("10.0.0.1");
        for bad in [
            "unknown",
            "_hidden",
            "1.2.3",
            "1.2.3.4:99999",
            "[::1",
            "[::1]x",
            "1.2.3.4:",
            "a b",
        ] {
            assert_eq!(client_ip(peer, Some(bad), &proxies()), peer, "{bad:?}");
        }
        // Malformed after a trusted hop: the last good hop.
        assert_eq!(
            client_ip(peer, Some("198.51.100.1, garbage, 10.3.0.1"), &proxies()),
            ip("10.3.0.1")
        );
        // Malformed left of the real client is never reached.
        assert_eq!(
            client_ip(peer, Some("garbage, 198.51.100.1"), &proxies()),
            ip("198.51.100.1")
        );
        let huge = format!("{}1.2.3.4", " ".repeat(MAX_FORWARDED_ELEMENT_LEN));
        assert_eq!(parse_forwarded_element(&huge), None);
    }

    #[test]
    fn xff_element_forms() {
        let cases = [
            ("198.51.100.1", "198.51.100.1"),
            (" \t198.51.100.1 ", "198.51.100.1"),
            ("198.51.100.1:567", "198.51.100.1"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:80", "2001:db8::1"),
            ("::1:80", "::1:80"),
            ("::ffff:198.51.100.1", "198.51.100.1"),
        ];
        for (element, want) in cases {
            assert_eq!(
                client_ip(ip("10.0.0.1"), Some(element), &proxies()),
                ip(want),
                "{element:?}"
            );
        }
        // Empty list elements are skipped.
        assert_eq!(
            client_ip(
                ip("10.0.0.1"),
                Some("198.51.100.1,, ,10.0.0.2,"),
                &proxies()
            ),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn xff_from_header_map() {
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", "1.1.1.1, 198.51.100.1".parse().unwrap());
        headers.append("x-forwarded-for", "10.2.0.1".parse().unwrap());
        let peer = ip("10.0.0.1");
        assert_eq!(
            client_ip_from_headers(peer, &headers, &proxies()),
            ip("198.51.100.1")
        );
        assert_eq!(
            client_ip_from_headers(ip("203.0.113.5"), &headers, &proxies()),
            ip("203.0.113.5")
        );
        assert_eq!(
            client_ip_from_headers(peer, &HeaderMap::new(), &proxies()),
            peer
        );
        // A value that is not visible ASCII stops the walk at the last good hop.
        let mut bad = HeaderMap::new();
        bad.append("x-forwarded-for", "198.51.100.1".parse().unwrap());
        bad.append(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(b"\xff10.2.0.1").unwrap(),
        );
        assert_eq!(client_ip_from_headers(peer, &bad, &proxies()), peer);

        let l = RateLimiter::new(RateLimitConfig {
            trusted_proxies: proxies(),
            ..RateLimitConfig::default()
        })
        .unwrap();
        assert_eq!(l.client_ip_from_headers(peer, &headers), ip("198.51.100.1"));
        assert_eq!(l.client_ip(peer, Some("198.51.100.2")), ip("198.51.100.2"));
    }
}
