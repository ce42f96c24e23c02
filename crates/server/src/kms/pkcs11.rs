//! Log keys in a PKCS#11 token (an HSM, SoftHSM2), named by an RFC 7512 `pkcs11:` URI.
//!
//! ```text
//! pkcs11:token=T;object=L;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234
//! ```
//!
//! | attribute | where | meaning |
//! |-----------|-------|---------|
//! | `token` | path | token label (`CK_TOKEN_INFO.label`) |
//! | `serial` | path | token serial number |
//! | `slot-id` | path | decimal slot ID |
//! | `object` | path | key label (`CKA_LABEL`) |
//! | `id` | path | key ID (`CKA_ID`), percent-encoded bytes |
//! | `type` | path | only `private` (the key signs) |
//! | `module-path` | query | the PKCS#11 module's file; required |
//! | `pin-value` | query | the user PIN |
//! | `pin-source` | query | a file (`/path` or `file:/path`) whose content is the PIN |
//!
//! Values are percent-decoded (RFC 7512 section 2.3). Any other attribute, a repeated one, or
//! both PINs are refused, so a typo cannot silently pick a different key. The slot and the key
//! must each match exactly one.
//!
//! Opening loads the module, logs the user in, finds the private key (`CKO_PRIVATE_KEY`) and
//! its public half (`CKO_PUBLIC_KEY` with the same `CKA_ID`, else the same label), and builds the
//! DER SubjectPublicKeyInfo from `CKA_EC_PARAMS` and `CKA_EC_POINT`. Keys: `CKK_EC` on P-256 or
//! P-384, signed with `CKM_ECDSA` over a SHA-256 / SHA-384 digest computed here (the raw
//! `r || s` is re-encoded as DER); `CKK_EC_EDWARDS` on Ed25519, signed with `CKM_EDDSA` over the
//! whole message. All three are tested against SoftHSM2 2.6.
//!
//! A PKCS#11 session is not thread-safe, so the one session sits behind a mutex. If the token
//! forgets the login (`CKR_USER_NOT_LOGGED_IN`) the key logs in again; if the session is gone
//! (`CKR_SESSION_HANDLE_INVALID`, `CKR_SESSION_CLOSED`) it opens a new one; each once per
//! signature. The PIN is kept (zeroized on drop) for that and is never printed.

use core::fmt;
use std::path::PathBuf;
use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::RawAuthPin;
use sha2::{Digest as _, Sha256, Sha384};
use zeroize::Zeroizing;

use super::KmsError;

const SCHEME: &str = "pkcs11";

/// Longest `pkcs11:` URI accepted.
const MAX_URI_LEN: usize = 4096;

/// Largest `pin-source` file read.
const MAX_PIN_FILE_LEN: u64 = 1024;

/// DER `OBJECT IDENTIFIER` 1.2.840.10045.2.1, id-ecPublicKey.
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// DER `OBJECT IDENTIFIER` 1.2.840.10045.3.1.7, P-256.
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER `OBJECT IDENTIFIER` 1.3.132.0.34, P-384.
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
/// DER `OBJECT IDENTIFIER` 1.3.101.112, Ed25519 (RFC 8410).
const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// DER `OBJECT IDENTIFIER` 1.3.6.1.4.1.11591.15.1, GnuPG's older Ed25519 curve OID.
const OID_ED25519_GNU: &[u8] = &[
    0x06, 0x09, 0x2b, 0x06, 0x01, 0x04, 0x01, 0xda, 0x47, 0x0f, 0x01,
];
/// DER `PrintableString` "edwards25519", the PKCS#11 3.0 curve name form of `CKA_EC_PARAMS`.
const NAME_ED25519: &[u8] = b"\x13\x0cedwards25519";

fn invalid(reason: impl Into<String>) -> KmsError {
    KmsError::InvalidUri {
        scheme: SCHEME,
        reason: reason.into(),
    }
}

fn backend(reason: impl Into<String>) -> KmsError {
    KmsError::Backend {
        scheme: SCHEME,
        reason: reason.into(),
    }
}

/// A PKCS#11 failure as an operator reads it: `C_Login failed: PinIncorrect`.
fn describe(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, function) => format!("C_{function:?} failed: {rv:?}"),
        other => other.to_string(),
    }
}

/// A PIN held in memory: zeroized on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
struct Pin(Zeroizing<Vec<u8>>);

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

impl Pin {
    fn auth(&self) -> RawAuthPin {
        RawAuthPin::new(Box::new(self.0.to_vec()))
    }
}

/// Where the PIN comes from.
#[derive(Debug, PartialEq, Eq)]
enum PinSpec {
    Value(Pin),
    Source(PathBuf),
}

/// A parsed `pkcs11:` URI.
#[derive(Debug, Default, PartialEq, Eq)]
struct Pkcs11Uri {
    token: Option<String>,
    serial: Option<String>,
    slot_id: Option<u64>,
    object: Option<Vec<u8>>,
    id: Option<Vec<u8>>,
    module_path: PathBuf,
    pin: Option<PinSpec>,
}

/// Percent-decodes one attribute value.
fn percent_decode(name: &str, value: &str) -> Result<Vec<u8>, KmsError> {
    let mut out = Vec::with_capacity(value.len());
    let mut rest = value.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = tail
                .get(..2)
                .and_then(|h| core::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    invalid(format!("{name}: '%' must be followed by two hex digits"))
                })?;
            out.push(hex);
            rest = tail.get(2..).unwrap_or_default();
        } else {
            out.push(b);
            rest = tail;
        }
    }
    Ok(out)
}

fn decode_text(name: &str, value: &str) -> Result<String, KmsError> {
    String::from_utf8(percent_decode(name, value)?)
        .map_err(|_| invalid(format!("{name} is not UTF-8 after percent-decoding")))
}

fn set_once<T>(slot: &mut Option<T>, name: &str, value: T) -> Result<(), KmsError> {
    if slot.replace(value).is_some() {
        return Err(invalid(format!("{name} is given twice")));
    }
    Ok(())
}

impl Pkcs11Uri {
    fn parse(uri: &str) -> Result<Self, KmsError> {
        if uri.len() > MAX_URI_LEN {
            return Err(invalid(format!("longer than {MAX_URI_LEN} bytes")));
        }
        let body = uri
            .strip_prefix("pkcs11:")
            .ok_or_else(|| invalid("must start with pkcs11:"))?;
        if body.contains('#') {
            return Err(invalid("a fragment ('#') is not allowed"));
        }
        let (path, query) = body.split_once('?').unwrap_or((body, ""));
        let mut out = Self::default();
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = attr
                .split_once('=')
                .ok_or_else(|| invalid(format!("path attribute {attr:?} has no '='")))?;
            match name {
                "token" => set_once(&mut out.token, name, decode_text(name, value)?)?,
                "serial" => set_once(&mut out.serial, name, decode_text(name, value)?)?,
                "object" => set_once(&mut out.object, name, percent_decode(name, value)?)?,
                "id" => set_once(&mut out.id, name, percent_decode(name, value)?)?,
                "slot-id" => {
                    let text = decode_text(name, value)?;
                    let id = text.parse::<u64>().map_err(|_| {
                        invalid(format!("slot-id {text:?} is not a decimal number"))
                    })?;
                    set_once(&mut out.slot_id, name, id)?;
                }
                "type" => {
                    let text = decode_text(name, value)?;
                    if text != "private" {
                        return Err(invalid(format!(
                            "type={text}: the log signs with a private key, use type=private"
                        )));
                    }
                }
                "manufacturer"
                | "model"
                | "library-manufacturer"
                | "library-description"
                | "library-version"
                | "slot-description"
                | "slot-manufacturer" => {
                    return Err(invalid(format!(
                        "path attribute {name} is not supported; name the token with token=, \
                         serial= or slot-id="
                    )));
                }
                _ => return Err(invalid(format!("unknown path attribute {name:?}"))),
            }
        }
        let mut module_path = None;
        for attr in query.split('&').filter(|a| !a.is_empty()) {
            let (name, value) = attr
                .split_once('=')
                .ok_or_else(|| invalid(format!("query attribute {attr:?} has no '='")))?;
            match name {
                "module-path" => {
                    set_once(&mut module_path, name, decode_text(name, value)?)?;
                }
                "pin-value" => {
                    let pin = Pin(Zeroizing::new(percent_decode(name, value)?));
                    if out.pin.replace(PinSpec::Value(pin)).is_some() {
                        return Err(invalid("give one of pin-value and pin-source"));
                    }
                }
                "pin-source" => {
                    let text = decode_text(name, value)?;
                    let path = text
                        .strip_prefix("file://")
                        .or_else(|| text.strip_prefix("file:"))
                        .unwrap_or(&text);
                    if path.is_empty() {
                        return Err(invalid("pin-source is empty"));
                    }
                    let spec = PinSpec::Source(PathBuf::from(path));
                    if out.pin.replace(spec).is_some() {
                        return Err(invalid("give one of pin-value and pin-source"));
                    }
                }
                "module-name" => {
                    return Err(invalid(
                        "module-name is not supported; give the module's file in module-path",
                    ));
                }
                _ => return Err(invalid(format!("unknown query attribute {name:?}"))),
            }
        }
        out.module_path = module_path
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| invalid("module-path (the PKCS#11 module's file) is required"))?;
        if out.pin.is_none() {
            return Err(invalid("pin-value or pin-source is required"));
        }
        if out.object.is_none() && out.id.is_none() {
            return Err(invalid("name the key with object= (its label) or id="));
        }
        Ok(out)
    }

    /// The PIN, read from `pin-source` if that is where it is.
    fn read_pin(&self) -> Result<Pin, KmsError> {
        match &self.pin {
            Some(PinSpec::Value(pin)) => Ok(pin.clone()),
            Some(PinSpec::Source(path)) => {
                use std::io::Read as _;
                let shown = path.display();
                let file = std::fs::File::open(path)
                    .map_err(|e| backend(format!("reading pin-source {shown}: {e}")))?;
                let mut bytes = Zeroizing::new(Vec::new());
                file.take(MAX_PIN_FILE_LEN.saturating_add(1))
                    .read_to_end(&mut bytes)
                    .map_err(|e| backend(format!("reading pin-source {shown}: {e}")))?;
                if u64::try_from(bytes.len()).map_or(true, |n| n > MAX_PIN_FILE_LEN) {
                    return Err(backend(format!(
                        "pin-source {shown} is longer than {MAX_PIN_FILE_LEN} bytes"
                    )));
                }
                for suffix in [&b"\r\n"[..], b"\n"] {
                    if bytes.ends_with(suffix) {
                        let keep = bytes.len().saturating_sub(suffix.len());
                        bytes.truncate(keep);
                        break;
                    }
                }
                Ok(Pin(bytes))
            }
            None => Err(invalid("pin-value or pin-source is required")),
        }
    }

    /// The attributes a private key must have to match.
    fn key_template(&self) -> Vec<Attribute> {
        let mut template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
        if let Some(label) = &self.object {
            template.push(Attribute::Label(label.clone()));
        }
        if let Some(id) = &self.id {
            template.push(Attribute::Id(id.clone()));
        }
        template
    }

    /// `object="L" id=01`, to name the key in errors.
    fn key_name(&self) -> String {
        let mut parts = Vec::new();
        if let Some(label) = &self.object {
            parts.push(format!("object={:?}", String::from_utf8_lossy(label)));
        }
        if let Some(id) = &self.id {
            parts.push(format!("id={}", hex::encode(id)));
        }
        parts.join(" ")
    }
}

/// The key algorithms a log can sign with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    Ed25519,
    P256,
    P384,
}

impl KeyKind {
    /// Length of the public point in `CKA_EC_POINT`: uncompressed SEC1, or 32 bytes.
    fn point_len(self) -> usize {
        match self {
            Self::Ed25519 => 32,
            Self::P256 => 65,
            Self::P384 => 97,
        }
    }

    /// Length of one of `r` and `s` in a raw ECDSA signature.
    fn scalar_len(self) -> usize {
        match self {
            Self::Ed25519 => 32,
            Self::P256 => 32,
            Self::P384 => 48,
        }
    }

    fn from_attributes(key_type: KeyType, params: &[u8]) -> Result<Self, KmsError> {
        let unsupported = |what: String| KmsError::UnsupportedKey {
            scheme: SCHEME,
            key_type: what,
        };
        if key_type == KeyType::EC {
            if params == OID_P256 {
                Ok(Self::P256)
            } else if params == OID_P384 {
                Ok(Self::P384)
            } else {
                Err(unsupported(format!(
                    "EC with CKA_EC_PARAMS {}",
                    hex::encode(params)
                )))
            }
        } else if key_type == KeyType::EC_EDWARDS {
            if [OID_ED25519, OID_ED25519_GNU, NAME_ED25519].contains(&params) {
                Ok(Self::Ed25519)
            } else {
                Err(unsupported(format!(
                    "EC_EDWARDS with CKA_EC_PARAMS {}",
                    hex::encode(params)
                )))
            }
        } else {
            Err(unsupported(format!("{key_type}")))
        }
    }

    /// The DER SubjectPublicKeyInfo of `point` (uncompressed SEC1 or 32 Ed25519 bytes).
    fn spki(self, point: &[u8]) -> Vec<u8> {
        let algorithm = match self {
            Self::Ed25519 => der_tlv(0x30, OID_ED25519),
            Self::P256 => der_tlv(0x30, &[OID_EC_PUBLIC_KEY, OID_P256].concat()),
            Self::P384 => der_tlv(0x30, &[OID_EC_PUBLIC_KEY, OID_P384].concat()),
        };
        let bits = der_tlv(0x03, &[&[0x00], point].concat());
        der_tlv(0x30, &[algorithm, bits].concat())
    }

    /// The public point out of `CKA_EC_POINT`: a DER OCTET STRING as PKCS#11 says, or the bare
    /// point as some modules return it.
    fn point(self, ec_point: &[u8]) -> Result<Vec<u8>, KmsError> {
        let want = self.point_len();
        let bare_ok =
            |p: &[u8]| p.len() == want && (self == Self::Ed25519 || p.first() == Some(&0x04));
        if let Some((&[0x04, len], inner)) = ec_point.split_first_chunk::<2>()
            && usize::from(len) == inner.len()
            && bare_ok(inner)
        {
            return Ok(inner.to_vec());
        }
        if bare_ok(ec_point) {
            return Ok(ec_point.to_vec());
        }
        Err(backend(format!(
            "CKA_EC_POINT {} is not an uncompressed {self:?} point",
            hex::encode(ec_point)
        )))
    }

    fn mechanism(self) -> Mechanism<'static> {
        match self {
            Self::Ed25519 => Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
            Self::P256 | Self::P384 => Mechanism::Ecdsa,
        }
    }

    /// What the token signs: the message for Ed25519, its digest for ECDSA.
    fn to_be_signed(self, message: &[u8]) -> Vec<u8> {
        match self {
            Self::Ed25519 => message.to_vec(),
            Self::P256 => Sha256::digest(message).to_vec(),
            Self::P384 => Sha384::digest(message).to_vec(),
        }
    }

    /// The signature as [`rekor_note::ExternalSigner::sign`] returns it.
    fn encode_signature(self, raw: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            Self::Ed25519 if raw.len() == 64 => Ok(raw.to_vec()),
            Self::Ed25519 => Err(format!(
                "pkcs11: the token returned a {}-byte Ed25519 signature, not 64",
                raw.len()
            )),
            Self::P256 | Self::P384 => ecdsa_raw_to_der(raw, self.scalar_len()),
        }
    }
}

/// DER tag-length-value, definite length.
fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if let Ok(short) = u8::try_from(len)
        && short < 0x80
    {
        out.push(short);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let significant = bytes.get(skip..).unwrap_or_default();
        // At most size_of::<usize>() bytes, so the count fits the 7 bits.
        out.push(0x80 | u8::try_from(significant.len()).unwrap_or(0x7f));
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}

/// DER INTEGER of an unsigned big-endian number.
fn der_uint(be: &[u8]) -> Vec<u8> {
    let skip = be.iter().take_while(|b| **b == 0).count();
    let digits = be.get(skip..).unwrap_or_default();
    let mut content = Vec::with_capacity(digits.len().saturating_add(1));
    if digits.first().is_none_or(|b| *b >= 0x80) {
        content.push(0);
    }
    content.extend_from_slice(digits);
    der_tlv(0x02, &content)
}

/// PKCS#11 `CKM_ECDSA` output `r || s` (each `n` bytes) as ASN.1 DER `SEQUENCE { r, s }`.
fn ecdsa_raw_to_der(raw: &[u8], n: usize) -> Result<Vec<u8>, String> {
    let (r, s) = raw
        .split_at_checked(n)
        .filter(|(_, s)| s.len() == n)
        .ok_or_else(|| {
            format!(
                "pkcs11: the token returned a {}-byte ECDSA signature, not {}",
                raw.len(),
                n.saturating_mul(2)
            )
        })?;
    if r.iter().all(|b| *b == 0) || s.iter().all(|b| *b == 0) {
        return Err("pkcs11: the token returned an ECDSA signature with r or s zero".into());
    }
    Ok(der_tlv(0x30, &[der_uint(r), der_uint(s)].concat()))
}

/// The session and the key's handle in it.
struct Live {
    session: Session,
    key: ObjectHandle,
}

/// An Ed25519, P-256 or P-384 private key in a PKCS#11 token; implements
/// [`rekor_note::ExternalSigner`].
pub struct Pkcs11Key {
    module_path: PathBuf,
    token: String,
    key_name: String,
    kind: KeyKind,
    spki: Vec<u8>,
    context: Pkcs11,
    slot: Slot,
    pin: Pin,
    template: Vec<Attribute>,
    live: Mutex<Live>,
}

impl fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Key")
            .field("module_path", &self.module_path)
            .field("token", &self.token)
            .field("slot", &self.slot.id())
            .field("key", &self.key_name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Logs the user in; a session of this application already logged in is fine.
fn login(session: &Session, pin: &Pin, token: &str) -> Result<(), KmsError> {
    match session.login_with_raw(UserType::User, &pin.auth()) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(e) => Err(backend(format!(
            "logging in to token {token:?} failed: {}",
            describe(&e)
        ))),
    }
}

/// The one private key matching `template`.
fn find_key(
    session: &Session,
    template: &[Attribute],
    name: &str,
) -> Result<ObjectHandle, KmsError> {
    let found = session.find_objects(template).map_err(|e| {
        backend(format!(
            "searching for private key {name}: {}",
            describe(&e)
        ))
    })?;
    match found.as_slice() {
        [key] => Ok(*key),
        [] => Err(backend(format!("no private key {name} on the token"))),
        more => Err(backend(format!(
            "{} private keys match {name}; name one with both object= and id=",
            more.len()
        ))),
    }
}

fn bytes_attribute(
    attributes: &[Attribute],
    pick: fn(&Attribute) -> Option<&Vec<u8>>,
) -> Option<Vec<u8>> {
    attributes.iter().find_map(pick).cloned()
}

impl Pkcs11Key {
    /// Opens the key a `pkcs11:` URI names (see the module docs for the attributes).
    ///
    /// # Errors
    ///
    /// [`KmsError::InvalidUri`] for a malformed URI; [`KmsError::Backend`] if the module does
    /// not load, the token or key is not found (or not unique), or the login fails;
    /// [`KmsError::UnsupportedKey`] for a key that is not Ed25519, P-256 or P-384.
    pub fn open(uri: &str) -> Result<Self, KmsError> {
        let parsed = Pkcs11Uri::parse(uri)?;
        let pin = parsed.read_pin()?;
        let module = parsed.module_path.display();
        let context = Pkcs11::new(&parsed.module_path)
            .map_err(|e| backend(format!("loading module {module}: {}", describe(&e))))?;
        match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => {
                return Err(backend(format!(
                    "initializing module {module}: {}",
                    describe(&e)
                )));
            }
        }
        let (slot, token) = find_slot(&context, &parsed)?;
        let session = context.open_ro_session(slot).map_err(|e| {
            backend(format!(
                "opening a session on token {token:?}: {}",
                describe(&e)
            ))
        })?;
        login(&session, &pin, &token)?;
        let template = parsed.key_template();
        let key_name = parsed.key_name();
        let key = find_key(&session, &template, &key_name)?;
        let (kind, spki) = public_key(&session, key, &key_name)?;
        Ok(Self {
            module_path: parsed.module_path.clone(),
            token,
            key_name,
            kind,
            spki,
            context,
            slot,
            pin,
            template,
            live: Mutex::new(Live { session, key }),
        })
    }

    /// A new session, logged in, and the key's handle in it.
    fn reconnect(&self) -> Result<Live, KmsError> {
        let session = self.context.open_ro_session(self.slot).map_err(|e| {
            backend(format!(
                "reopening a session on token {:?}: {}",
                self.token,
                describe(&e)
            ))
        })?;
        login(&session, &self.pin, &self.token)?;
        let key = find_key(&session, &self.template, &self.key_name)?;
        Ok(Live { session, key })
    }
}

/// The slot whose token matches the URI's `slot-id`, `token` and `serial`, and its label.
fn find_slot(context: &Pkcs11, uri: &Pkcs11Uri) -> Result<(Slot, String), KmsError> {
    let slots = context
        .get_slots_with_initialized_token()
        .map_err(|e| backend(format!("listing slots: {}", describe(&e))))?;
    let mut matches = Vec::new();
    for slot in slots {
        if uri.slot_id.is_some_and(|id| id != slot.id()) {
            continue;
        }
        let info = context.get_token_info(slot).map_err(|e| {
            backend(format!(
                "reading token info of slot {}: {}",
                slot.id(),
                describe(&e)
            ))
        })?;
        let label = info.label().trim_end().to_owned();
        let serial = info.serial_number().trim_end();
        if uri.token.as_ref().is_some_and(|t| *t != label)
            || uri.serial.as_ref().is_some_and(|s| s != serial)
        {
            continue;
        }
        matches.push((slot, label));
    }
    let wanted = || {
        let mut parts = Vec::new();
        if let Some(t) = &uri.token {
            parts.push(format!("token={t:?}"));
        }
        if let Some(s) = &uri.serial {
            parts.push(format!("serial={s:?}"));
        }
        if let Some(id) = uri.slot_id {
            parts.push(format!("slot-id={id}"));
        }
        if parts.is_empty() {
            "any token".to_owned()
        } else {
            parts.join(" ")
        }
    };
    let count = matches.len();
    match matches.pop() {
        Some(found) if count == 1 => Ok(found),
        Some(_) => Err(backend(format!(
            "{count} initialized tokens match {}; name one with token=, serial= or slot-id=",
            wanted()
        ))),
        None => Err(backend(format!(
            "no token matches {} in module {}",
            wanted(),
            uri.module_path.display()
        ))),
    }
}

/// The key's algorithm and DER SubjectPublicKeyInfo, from its public key object (same `CKA_ID`,
/// else same label), or from the private key itself where the token exposes `CKA_EC_POINT`.
fn public_key(
    session: &Session,
    key: ObjectHandle,
    name: &str,
) -> Result<(KeyKind, Vec<u8>), KmsError> {
    let read = |object: ObjectHandle, types: &[AttributeType]| {
        session.get_attributes(object, types).map_err(|e| {
            backend(format!(
                "reading attributes of key {name}: {}",
                describe(&e)
            ))
        })
    };
    let private = read(
        key,
        &[
            AttributeType::KeyType,
            AttributeType::EcParams,
            AttributeType::Id,
            AttributeType::Label,
        ],
    )?;
    let key_type = private
        .iter()
        .find_map(|a| match a {
            Attribute::KeyType(t) => Some(*t),
            _ => None,
        })
        .ok_or_else(|| backend(format!("private key {name} has no CKA_KEY_TYPE")))?;
    let params = bytes_attribute(&private, |a| match a {
        Attribute::EcParams(p) => Some(p),
        _ => None,
    })
    .ok_or_else(|| KmsError::UnsupportedKey {
        scheme: SCHEME,
        key_type: format!("{key_type}"),
    })?;
    let kind = KeyKind::from_attributes(key_type, &params)?;

    let mut template = vec![
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::KeyType(key_type),
        Attribute::EcParams(params),
    ];
    match (
        bytes_attribute(&private, |a| match a {
            Attribute::Id(id) => Some(id),
            _ => None,
        }),
        bytes_attribute(&private, |a| match a {
            Attribute::Label(l) => Some(l),
            _ => None,
        }),
    ) {
        (Some(id), _) if !id.is_empty() => template.push(Attribute::Id(id)),
        (_, Some(label)) if !label.is_empty() => template.push(Attribute::Label(label)),
        _ => {}
    }
    let publics = session.find_objects(&template).map_err(|e| {
        backend(format!(
            "searching for the public key of {name}: {}",
            describe(&e)
        ))
    })?;
    // The public object if there is one, else the private key (some HSMs expose the point there).
    let ec_point = publics
        .first()
        .copied()
        .into_iter()
        .chain([key])
        .find_map(|object| {
            read(object, &[AttributeType::EcPoint])
                .ok()
                .and_then(|attrs| {
                    bytes_attribute(&attrs, |a| match a {
                        Attribute::EcPoint(p) => Some(p),
                        _ => None,
                    })
                })
        })
        .ok_or_else(|| {
            backend(format!(
                "no public key object (CKO_PUBLIC_KEY with the same CKA_ID or label) for \
                 private key {name}, and the private key has no CKA_EC_POINT"
            ))
        })?;
    let point = kind.point(&ec_point)?;
    Ok((kind, kind.spki(&point)))
}

impl rekor_note::ExternalSigner for Pkcs11Key {
    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let data = self.kind.to_be_signed(message);
        let mechanism = self.kind.mechanism();
        let mut live = self
            .live
            .lock()
            .map_err(|_| "pkcs11: the session lock is poisoned".to_owned())?;
        let raw = match live.session.sign(&mechanism, live.key, &data) {
            Ok(raw) => raw,
            Err(CkError::Pkcs11(RvError::UserNotLoggedIn, _)) => {
                login(&live.session, &self.pin, &self.token).map_err(|e| e.to_string())?;
                live.session
                    .sign(&mechanism, live.key, &data)
                    .map_err(|e| {
                        format!(
                            "pkcs11: signing with key {}: {}",
                            self.key_name,
                            describe(&e)
                        )
                    })?
            }
            Err(CkError::Pkcs11(RvError::SessionHandleInvalid | RvError::SessionClosed, _)) => {
                *live = self.reconnect().map_err(|e| e.to_string())?;
                live.session
                    .sign(&mechanism, live.key, &data)
                    .map_err(|e| {
                        format!(
                            "pkcs11: signing with key {}: {}",
                            self.key_name,
                            describe(&e)
                        )
                    })?
            }
            Err(e) => {
                return Err(format!(
                    "pkcs11: signing with key {}: {}",
                    self.key_name,
                    describe(&e)
                ));
            }
        };
        self.kind.encode_signature(&raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &str = "module-path=/m.so";

    fn reason(uri: &str) -> String {
        match Pkcs11Uri::parse(uri) {
            Err(KmsError::InvalidUri { scheme, reason }) => {
                assert_eq!(scheme, "pkcs11");
                reason
            }
            other => panic!("{uri}: {other:?}"),
        }
    }

    #[test]
    fn uris_parse_with_percent_decoding() {
        let uri = Pkcs11Uri::parse(
            "pkcs11:token=My%20Token;object=log%3Bkey;id=%01%ff;slot-id=7;serial=ab;type=private\
             ?module-path=/usr/lib/x%2Ey.so&pin-value=12%2634",
        )
        .unwrap();
        assert_eq!(
            uri,
            Pkcs11Uri {
                token: Some("My Token".into()),
                serial: Some("ab".into()),
                slot_id: Some(7),
                object: Some(b"log;key".to_vec()),
                id: Some(vec![0x01, 0xff]),
                module_path: PathBuf::from("/usr/lib/x.y.so"),
                pin: Some(PinSpec::Value(Pin(Zeroizing::new(b"12&34".to_vec())))),
            }
        );
        let uri =
            Pkcs11Uri::parse(&format!("pkcs11:id=%02?{MODULE}&pin-source=file:/run/pin")).unwrap();
        assert_eq!(uri.pin, Some(PinSpec::Source(PathBuf::from("/run/pin"))));
        assert_eq!(uri.key_name(), "id=02");
        assert_eq!(uri.key_template().len(), 2);
    }

    #[test]
    fn bad_uris_say_what_is_wrong() {
        let pin = "pin-value=1";
        for (uri, want) in [
            (format!("pkcs11:object=k?{pin}"), "module-path"),
            (
                format!("pkcs11:object=k?{MODULE}"),
                "pin-value or pin-source is required",
            ),
            (format!("pkcs11:token=t?{MODULE}&{pin}"), "object="),
            (
                format!("pkcs11:object=k;object=j?{MODULE}&{pin}"),
                "object is given twice",
            ),
            (
                format!("pkcs11:objet=k?{MODULE}&{pin}"),
                "unknown path attribute \"objet\"",
            ),
            (
                format!("pkcs11:object=k?{MODULE}&{pin}&pin=2"),
                "unknown query attribute \"pin\"",
            ),
            (
                format!("pkcs11:object=k?{MODULE}&{pin}&pin-source=/p"),
                "one of pin-value",
            ),
            (
                format!("pkcs11:object=%4?{MODULE}&{pin}"),
                "object: '%' must be followed",
            ),
            (
                format!("pkcs11:object=%zz?{MODULE}&{pin}"),
                "two hex digits",
            ),
            (
                format!("pkcs11:token=%ff;object=k?{MODULE}&{pin}"),
                "token is not UTF-8",
            ),
            (
                format!("pkcs11:slot-id=x;object=k?{MODULE}&{pin}"),
                "slot-id \"x\"",
            ),
            (
                format!("pkcs11:type=cert;object=k?{MODULE}&{pin}"),
                "type=private",
            ),
            (
                format!("pkcs11:model=m;object=k?{MODULE}&{pin}"),
                "model is not supported",
            ),
            (format!("pkcs11:object?{MODULE}&{pin}"), "has no '='"),
            (
                format!("pkcs11:object=k?module-name=softhsm2&{pin}"),
                "module-name",
            ),
            (format!("pkcs11:object=k?{MODULE}&{pin}#frag"), "fragment"),
            (
                "pkcs11:".to_owned() + &"a".repeat(MAX_URI_LEN),
                "longer than",
            ),
        ] {
            let got = reason(&uri);
            assert!(got.contains(want), "{uri}: {got}");
        }
    }

    #[test]
    fn pins_are_never_printed() {
        let uri = Pkcs11Uri::parse(&format!("pkcs11:object=k?{MODULE}&pin-value=s3cret")).unwrap();
        assert!(!format!("{uri:?}").contains("s3cret"));
    }

    #[test]
    fn pin_files_lose_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin");
        std::fs::write(&path, "1234\r\n").unwrap();
        let uri = Pkcs11Uri::parse(&format!(
            "pkcs11:object=k?{MODULE}&pin-source={}",
            path.display()
        ))
        .unwrap();
        assert_eq!(
            uri.read_pin().unwrap(),
            Pin(Zeroizing::new(b"1234".to_vec()))
        );
        std::fs::write(&path, vec![b'1'; 2000]).unwrap();
        assert!(uri.read_pin().is_err());
    }

    #[test]
    fn raw_ecdsa_signatures_become_der() {
        // r with its high bit set gains a 0x00; s with leading zeros loses them.
        let mut raw = vec![0x80; 32];
        raw.extend([0x00, 0x00, 0x01]);
        raw.extend([0x11; 29]);
        let der = ecdsa_raw_to_der(&raw, 32).unwrap();
        let mut want = vec![0x30, 0x43, 0x02, 0x21, 0x00];
        want.extend([0x80; 32]);
        want.extend([0x02, 0x1e, 0x01]);
        want.extend([0x11; 29]);
        assert_eq!(der, want);
        assert!(ecdsa_raw_to_der(&raw[..63], 32).is_err());
        assert!(ecdsa_raw_to_der(&[0; 64], 32).is_err());
        // P-384: both 49-byte integers still fit a one-byte length.
        let der = ecdsa_raw_to_der(&[0xff; 96], 48).unwrap();
        assert_eq!(der.get(..4), Some(&[0x30, 0x66, 0x02, 0x31][..]));
        assert_eq!(
            der_tlv(0x04, &[0; 200]).get(..3),
            Some(&[0x04, 0x81, 200][..])
        );
        assert_eq!(
            der_tlv(0x04, &[0; 300]).get(..4),
            Some(&[0x04, 0x82, 0x01, 0x2c][..])
        );
    }

    #[test]
    fn ec_points_and_public_keys_are_encoded_as_x509_does() {
        let point: Vec<u8> = [&[0x04][..], &[7; 64]].concat();
        let wrapped = [&[0x04, 65][..], &point].concat();
        assert_eq!(KeyKind::P256.point(&wrapped).unwrap(), point);
        assert_eq!(KeyKind::P256.point(&point).unwrap(), point);
        assert!(KeyKind::P256.point(&point[..33]).is_err());
        assert!(KeyKind::P384.point(&wrapped).is_err());
        let spki = KeyKind::P256.spki(&point);
        assert_eq!(spki.len(), 91);
        assert_eq!(
            hex::encode(spki.get(..26).unwrap()),
            "3059301306072a8648ce3d020106082a8648ce3d030107034200"
        );
        let ed = KeyKind::Ed25519.spki(
            &KeyKind::Ed25519
                .point(&[&[4, 32][..], &[9; 32]].concat())
                .unwrap(),
        );
        assert_eq!(
            hex::encode(ed.get(..12).unwrap()),
            "302a300506032b6570032100"
        );
        let p384 = KeyKind::P384.spki(&[&[0x04][..], &[1; 96]].concat());
        assert_eq!(hex::encode(p384.get(..5).unwrap()), "3076301006");
    }

    #[test]
    fn key_types_are_checked() {
        assert_eq!(
            KeyKind::from_attributes(KeyType::EC, OID_P384).unwrap(),
            KeyKind::P384
        );
        assert_eq!(
            KeyKind::from_attributes(KeyType::EC_EDWARDS, NAME_ED25519).unwrap(),
            KeyKind::Ed25519
        );
        assert!(matches!(
            KeyKind::from_attributes(KeyType::RSA, &[]),
            Err(KmsError::UnsupportedKey { .. })
        ));
        assert!(matches!(
            KeyKind::from_attributes(KeyType::EC, &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23]),
            Err(KmsError::UnsupportedKey { .. })
        ));
    }

    #[test]
    fn a_missing_module_is_a_backend_error() {
        let err = Pkcs11Key::open("pkcs11:object=k?module-path=/nonexistent/p11.so&pin-value=1")
            .unwrap_err();
        assert!(
            matches!(
                err,
                KmsError::Backend {
                    scheme: "pkcs11",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("/nonexistent/p11.so"), "{err}");
    }
}
