//! The client signing algorithm registry: which `PublicKeyDetails` Rekor v2 accepts, their
//! hashes, and the operator's allowed subset (`--client-signing-algorithms`).

use core::fmt;

use crate::error::{EntryError, KeyDetailsProblem};

/// `dev.sigstore.common.v1.PublicKeyDetails` numbers (protobuf-specs `sigstore_common.proto`).
pub mod public_key_details {
    /// `PUBLIC_KEY_DETAILS_UNSPECIFIED`.
    pub const PUBLIC_KEY_DETAILS_UNSPECIFIED: i32 = 0;
    /// `PKCS1_RSA_PKCS1V5` (deprecated).
    pub const PKCS1_RSA_PKCS1V5: i32 = 1;
    /// `PKCS1_RSA_PSS` (deprecated).
    pub const PKCS1_RSA_PSS: i32 = 2;
    /// `PKIX_RSA_PKCS1V5` (deprecated).
    pub const PKIX_RSA_PKCS1V5: i32 = 3;
    /// `PKIX_RSA_PSS` (deprecated).
    pub const PKIX_RSA_PSS: i32 = 4;
    /// `PKIX_ECDSA_P256_SHA_256`.
    pub const PKIX_ECDSA_P256_SHA_256: i32 = 5;
    /// `PKIX_ECDSA_P256_HMAC_SHA_256` (deprecated).
    pub const PKIX_ECDSA_P256_HMAC_SHA_256: i32 = 6;
    /// `PKIX_ED25519` (pure Ed25519).
    pub const PKIX_ED25519: i32 = 7;
    /// `PKIX_ED25519_PH` (Ed25519ph, SHA-512 prehash).
    pub const PKIX_ED25519_PH: i32 = 8;
    /// `PKIX_RSA_PKCS1V15_2048_SHA256`.
    pub const PKIX_RSA_PKCS1V15_2048_SHA256: i32 = 9;
    /// `PKIX_RSA_PKCS1V15_3072_SHA256`.
    pub const PKIX_RSA_PKCS1V15_3072_SHA256: i32 = 10;
    /// `PKIX_RSA_PKCS1V15_4096_SHA256`.
    pub const PKIX_RSA_PKCS1V15_4096_SHA256: i32 = 11;
    /// `PKIX_ECDSA_P384_SHA_384`.
    pub const PKIX_ECDSA_P384_SHA_384: i32 = 12;
    /// `PKIX_ECDSA_P521_SHA_512`.
    pub const PKIX_ECDSA_P521_SHA_512: i32 = 13;
    /// `LMS_SHA256` (deprecated).
    pub const LMS_SHA256: i32 = 14;
    /// `LMOTS_SHA256` (deprecated).
    pub const LMOTS_SHA256: i32 = 15;
    /// `PKIX_RSA_PSS_2048_SHA256`.
    pub const PKIX_RSA_PSS_2048_SHA256: i32 = 16;
    /// `PKIX_RSA_PSS_3072_SHA256`.
    pub const PKIX_RSA_PSS_3072_SHA256: i32 = 17;
    /// `PKIX_RSA_PSS_4096_SHA256`.
    pub const PKIX_RSA_PSS_4096_SHA256: i32 = 18;
    /// `PKIX_ECDSA_P384_SHA_256` (deprecated).
    pub const PKIX_ECDSA_P384_SHA_256: i32 = 19;
    /// `PKIX_ECDSA_P521_SHA_256` (deprecated).
    pub const PKIX_ECDSA_P521_SHA_256: i32 = 20;
    /// `ML_DSA_65`.
    pub const ML_DSA_65: i32 = 21;
    /// `ML_DSA_87`.
    pub const ML_DSA_87: i32 = 22;
    /// `ML_DSA_44`.
    pub const ML_DSA_44: i32 = 23;
}

use public_key_details as pkd;

/// The hash a signing algorithm signs (`dev.sigstore.common.v1.HashAlgorithm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// SHA-256 (`SHA2_256` = 1).
    Sha256,
    /// SHA-384 (`SHA2_384` = 2).
    Sha384,
    /// SHA-512 (`SHA2_512` = 3).
    Sha512,
}

impl HashAlgorithm {
    /// The protojson enum name, as written in the leaf (`"SHA2_256"`).
    #[must_use]
    pub const fn proto_name(self) -> &'static str {
        match self {
            Self::Sha256 => "SHA2_256",
            Self::Sha384 => "SHA2_384",
            Self::Sha512 => "SHA2_512",
        }
    }

    /// The protobuf enum number.
    #[must_use]
    pub const fn proto_number(self) -> i32 {
        match self {
            Self::Sha256 => 1,
            Self::Sha384 => 2,
            Self::Sha512 => 3,
        }
    }

    /// The digest length in bytes.
    #[must_use]
    pub const fn output_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// The aws-lc-rs digest algorithm.
    pub(crate) fn aws_lc(self) -> &'static aws_lc_rs::digest::Algorithm {
        match self {
            Self::Sha256 => &aws_lc_rs::digest::SHA256,
            Self::Sha384 => &aws_lc_rs::digest::SHA384,
            Self::Sha512 => &aws_lc_rs::digest::SHA512,
        }
    }
}

/// A client signing algorithm Rekor v2 accepts (rekor-tiles' `AllowedClientSigningAlgorithms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SigningAlgorithm {
    /// RSA 2048-bit modulus, PKCS#1 v1.5 signature over SHA-256.
    RsaPkcs1v15_2048Sha256,
    /// RSA 3072-bit modulus, PKCS#1 v1.5 signature over SHA-256.
    RsaPkcs1v15_3072Sha256,
    /// RSA 4096-bit modulus, PKCS#1 v1.5 signature over SHA-256.
    RsaPkcs1v15_4096Sha256,
    /// ECDSA on P-256 over SHA-256.
    EcdsaP256Sha256,
    /// ECDSA on P-384 over SHA-384.
    EcdsaP384Sha384,
    /// ECDSA on P-521 over SHA-512.
    EcdsaP521Sha512,
    /// Ed25519ph (RFC 8032, empty context) over a SHA-512 prehash.
    Ed25519ph,
}

/// Sigstore flag names of algorithms the Sigstore registry knows but Rekor v2 refuses
/// (sigstore/sigstore `pkg/signature/algorithm_registry.go`).
const KNOWN_NOT_ALLOWED_NAMES: [&str; 6] = [
    "rsa-sign-pss-2048-sha256",
    "rsa-sign-pss-3072-sha256",
    "rsa-sign-pss-4096-sha256",
    "ecdsa-sha2-256-nistp384",
    "ecdsa-sha2-256-nistp521",
    "ed25519",
];

impl SigningAlgorithm {
    /// Every algorithm, in rekor-tiles' registry order.
    pub const ALL: [Self; 7] = [
        Self::RsaPkcs1v15_2048Sha256,
        Self::RsaPkcs1v15_3072Sha256,
        Self::RsaPkcs1v15_4096Sha256,
        Self::EcdsaP256Sha256,
        Self::EcdsaP384Sha384,
        Self::EcdsaP521Sha512,
        Self::Ed25519ph,
    ];

    /// The Sigstore CLI flag name (`"ecdsa-sha2-256-nistp256"`, `"ed25519-ph"`, ...).
    #[must_use]
    pub const fn flag_name(&self) -> &'static str {
        match self {
            Self::RsaPkcs1v15_2048Sha256 => "rsa-sign-pkcs1-2048-sha256",
            Self::RsaPkcs1v15_3072Sha256 => "rsa-sign-pkcs1-3072-sha256",
            Self::RsaPkcs1v15_4096Sha256 => "rsa-sign-pkcs1-4096-sha256",
            Self::EcdsaP256Sha256 => "ecdsa-sha2-256-nistp256",
            Self::EcdsaP384Sha384 => "ecdsa-sha2-384-nistp384",
            Self::EcdsaP521Sha512 => "ecdsa-sha2-512-nistp521",
            Self::Ed25519ph => "ed25519-ph",
        }
    }

    /// Parses one flag name, exactly (case-sensitive, no trimming), as rekor-tiles does.
    ///
    /// # Errors
    /// [`EntryError::AlgorithmNameNotAllowed`] for a Sigstore name outside Rekor v2's set
    /// (RSA-PSS, `ecdsa-sha2-256-nistp384`, `ecdsa-sha2-256-nistp521`, pure `ed25519`);
    /// [`EntryError::UnknownAlgorithmName`] for anything else.
    pub fn from_flag_name(name: &str) -> Result<Self, EntryError> {
        if let Some(alg) = Self::ALL.into_iter().find(|a| a.flag_name() == name) {
            return Ok(alg);
        }
        if KNOWN_NOT_ALLOWED_NAMES.contains(&name) {
            return Err(EntryError::AlgorithmNameNotAllowed {
                name: name.to_owned(),
            });
        }
        Err(EntryError::UnknownAlgorithmName {
            name: name.to_owned(),
        })
    }

    /// The `PublicKeyDetails` number.
    #[must_use]
    pub const fn key_details(&self) -> i32 {
        match self {
            Self::RsaPkcs1v15_2048Sha256 => pkd::PKIX_RSA_PKCS1V15_2048_SHA256,
            Self::RsaPkcs1v15_3072Sha256 => pkd::PKIX_RSA_PKCS1V15_3072_SHA256,
            Self::RsaPkcs1v15_4096Sha256 => pkd::PKIX_RSA_PKCS1V15_4096_SHA256,
            Self::EcdsaP256Sha256 => pkd::PKIX_ECDSA_P256_SHA_256,
            Self::EcdsaP384Sha384 => pkd::PKIX_ECDSA_P384_SHA_384,
            Self::EcdsaP521Sha512 => pkd::PKIX_ECDSA_P521_SHA_512,
            Self::Ed25519ph => pkd::PKIX_ED25519_PH,
        }
    }

    /// The `PublicKeyDetails` protojson name, as written in the leaf.
    #[must_use]
    pub const fn key_details_name(&self) -> &'static str {
        match self {
            Self::RsaPkcs1v15_2048Sha256 => "PKIX_RSA_PKCS1V15_2048_SHA256",
            Self::RsaPkcs1v15_3072Sha256 => "PKIX_RSA_PKCS1V15_3072_SHA256",
            Self::RsaPkcs1v15_4096Sha256 => "PKIX_RSA_PKCS1V15_4096_SHA256",
            Self::EcdsaP256Sha256 => "PKIX_ECDSA_P256_SHA_256",
            Self::EcdsaP384Sha384 => "PKIX_ECDSA_P384_SHA_384",
            Self::EcdsaP521Sha512 => "PKIX_ECDSA_P521_SHA_512",
            Self::Ed25519ph => "PKIX_ED25519_PH",
        }
    }

    /// Maps a `PublicKeyDetails` number to an algorithm Rekor v2 accepts.
    ///
    /// # Errors
    /// The reason the value is refused: unspecified, deprecated, pure Ed25519, outside the
    /// registry (RSA-PSS, ML-DSA) or unknown.
    pub const fn from_key_details(key_details: i32) -> Result<Self, KeyDetailsProblem> {
        match key_details {
            pkd::PKIX_RSA_PKCS1V15_2048_SHA256 => Ok(Self::RsaPkcs1v15_2048Sha256),
            pkd::PKIX_RSA_PKCS1V15_3072_SHA256 => Ok(Self::RsaPkcs1v15_3072Sha256),
            pkd::PKIX_RSA_PKCS1V15_4096_SHA256 => Ok(Self::RsaPkcs1v15_4096Sha256),
            pkd::PKIX_ECDSA_P256_SHA_256 => Ok(Self::EcdsaP256Sha256),
            pkd::PKIX_ECDSA_P384_SHA_384 => Ok(Self::EcdsaP384Sha384),
            pkd::PKIX_ECDSA_P521_SHA_512 => Ok(Self::EcdsaP521Sha512),
            pkd::PKIX_ED25519_PH => Ok(Self::Ed25519ph),
            pkd::PUBLIC_KEY_DETAILS_UNSPECIFIED => Err(KeyDetailsProblem::Unspecified),
            pkd::PKIX_ED25519 => Err(KeyDetailsProblem::PureEd25519),
            pkd::PKCS1_RSA_PKCS1V5
            | pkd::PKCS1_RSA_PSS
            | pkd::PKIX_RSA_PKCS1V5
            | pkd::PKIX_RSA_PSS
            | pkd::PKIX_ECDSA_P256_HMAC_SHA_256
            | pkd::LMS_SHA256
            | pkd::LMOTS_SHA256
            | pkd::PKIX_ECDSA_P384_SHA_256
            | pkd::PKIX_ECDSA_P521_SHA_256 => Err(KeyDetailsProblem::Deprecated),
            pkd::PKIX_RSA_PSS_2048_SHA256
            | pkd::PKIX_RSA_PSS_3072_SHA256
            | pkd::PKIX_RSA_PSS_4096_SHA256
            | pkd::ML_DSA_65
            | pkd::ML_DSA_87
            | pkd::ML_DSA_44 => Err(KeyDetailsProblem::NotSupported),
            _ => Err(KeyDetailsProblem::Unknown),
        }
    }

    /// The hash the algorithm signs; a hashedrekord digest must be this long.
    #[must_use]
    pub const fn hash(&self) -> HashAlgorithm {
        match self {
            Self::RsaPkcs1v15_2048Sha256
            | Self::RsaPkcs1v15_3072Sha256
            | Self::RsaPkcs1v15_4096Sha256
            | Self::EcdsaP256Sha256 => HashAlgorithm::Sha256,
            Self::EcdsaP384Sha384 => HashAlgorithm::Sha384,
            Self::EcdsaP521Sha512 | Self::Ed25519ph => HashAlgorithm::Sha512,
        }
    }

    /// A bit for [`AlgorithmRegistry`]'s set.
    const fn bit(self) -> u8 {
        match self {
            Self::RsaPkcs1v15_2048Sha256 => 1,
            Self::RsaPkcs1v15_3072Sha256 => 1 << 1,
            Self::RsaPkcs1v15_4096Sha256 => 1 << 2,
            Self::EcdsaP256Sha256 => 1 << 3,
            Self::EcdsaP384Sha384 => 1 << 4,
            Self::EcdsaP521Sha512 => 1 << 5,
            Self::Ed25519ph => 1 << 6,
        }
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.flag_name())
    }
}

/// The set of client signing algorithms a log accepts.
///
/// `Default` is rekor-tiles' default: every [`SigningAlgorithm`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AlgorithmRegistry {
    allowed: u8,
}

impl Default for AlgorithmRegistry {
    fn default() -> Self {
        Self::from_algorithms(SigningAlgorithm::ALL)
    }
}

impl AlgorithmRegistry {
    /// A registry allowing exactly `algorithms`.
    #[must_use]
    pub fn from_algorithms(algorithms: impl IntoIterator<Item = SigningAlgorithm>) -> Self {
        let allowed = algorithms.into_iter().fold(0, |acc, a| acc | a.bit());
        Self { allowed }
    }

    /// Parses flag names (one per item; repeated names are fine).
    ///
    /// # Errors
    /// The first name [`SigningAlgorithm::from_flag_name`] refuses, or
    /// [`EntryError::NoAlgorithms`] if there are none.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, EntryError> {
        let mut allowed = 0;
        for name in names {
            allowed |= SigningAlgorithm::from_flag_name(name)?.bit();
        }
        if allowed == 0 {
            return Err(EntryError::NoAlgorithms);
        }
        Ok(Self { allowed })
    }

    /// Parses a `--client-signing-algorithms` value: names separated by commas, each matched
    /// exactly (no whitespace trimming), as rekor-tiles' flag does.
    ///
    /// # Errors
    /// As [`Self::from_names`]; an empty value is [`EntryError::NoAlgorithms`].
    pub fn from_flag(value: &str) -> Result<Self, EntryError> {
        if value.is_empty() {
            return Err(EntryError::NoAlgorithms);
        }
        Self::from_names(value.split(','))
    }

    /// Whether `algorithm` is allowed.
    #[must_use]
    pub const fn allows(&self, algorithm: SigningAlgorithm) -> bool {
        self.allowed & algorithm.bit() != 0
    }

    /// The allowed algorithms, in registry order.
    pub fn algorithms(&self) -> impl Iterator<Item = SigningAlgorithm> + '_ {
        SigningAlgorithm::ALL
            .into_iter()
            .filter(|a| self.allows(*a))
    }

    /// The default flag value as rekor-tiles prints it: every name, sorted, comma-separated.
    #[must_use]
    pub fn default_flag_value() -> String {
        let mut names: Vec<&str> = SigningAlgorithm::ALL
            .iter()
            .map(|a| a.flag_name())
            .collect();
        names.sort_unstable();
        names.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_names_round_trip_and_are_sigstores() {
        // Names from sigstore/sigstore pkg/signature/algorithm_registry.go.
        let expected = [
            ("rsa-sign-pkcs1-2048-sha256", 9),
            ("rsa-sign-pkcs1-3072-sha256", 10),
            ("rsa-sign-pkcs1-4096-sha256", 11),
            ("ecdsa-sha2-256-nistp256", 5),
            ("ecdsa-sha2-384-nistp384", 12),
            ("ecdsa-sha2-512-nistp521", 13),
            ("ed25519-ph", 8),
        ];
        for (name, number) in expected {
            let alg = SigningAlgorithm::from_flag_name(name).unwrap();
            assert_eq!(alg.flag_name(), name);
            assert_eq!(alg.key_details(), number);
            assert_eq!(SigningAlgorithm::from_key_details(number), Ok(alg));
        }
    }

    #[test]
    fn flag_parsing_is_exact() {
        assert!(matches!(
            SigningAlgorithm::from_flag_name(" ed25519-ph"),
            Err(EntryError::UnknownAlgorithmName { .. })
        ));
        assert!(matches!(
            SigningAlgorithm::from_flag_name("ED25519-PH"),
            Err(EntryError::UnknownAlgorithmName { .. })
        ));
        for name in KNOWN_NOT_ALLOWED_NAMES {
            assert!(matches!(
                SigningAlgorithm::from_flag_name(name),
                Err(EntryError::AlgorithmNameNotAllowed { .. })
            ));
        }
    }

    #[test]
    fn registry_subset_and_default() {
        let reg = AlgorithmRegistry::from_flag("ecdsa-sha2-384-nistp384,ed25519-ph").unwrap();
        assert!(reg.allows(SigningAlgorithm::EcdsaP384Sha384));
        assert!(reg.allows(SigningAlgorithm::Ed25519ph));
        assert!(!reg.allows(SigningAlgorithm::EcdsaP256Sha256));
        assert_eq!(reg.algorithms().count(), 2);
        let all = AlgorithmRegistry::default();
        assert_eq!(
            all.algorithms().collect::<Vec<_>>(),
            SigningAlgorithm::ALL.to_vec()
        );
        assert_eq!(
            AlgorithmRegistry::from_flag(&AlgorithmRegistry::default_flag_value()).unwrap(),
            all
        );
        assert!(AlgorithmRegistry::default_flag_value().starts_with("ecdsa-sha2-256-nistp256,"));
        assert!(matches!(
            AlgorithmRegistry::from_flag(""),
            Err(EntryError::NoAlgorithms)
        ));
        assert!(matches!(
            AlgorithmRegistry::from_flag("ed25519-ph,ed25519"),
            Err(EntryError::AlgorithmNameNotAllowed { .. })
        ));
        assert!(matches!(
            AlgorithmRegistry::from_flag("ed25519-ph,"),
            Err(EntryError::UnknownAlgorithmName { .. })
        ));
    }

    #[test]
    fn key_details_classification() {
        use KeyDetailsProblem as P;
        let cases = [
            (0, P::Unspecified),
            (1, P::Deprecated),
            (2, P::Deprecated),
            (3, P::Deprecated),
            (4, P::Deprecated),
            (6, P::Deprecated),
            (7, P::PureEd25519),
            (14, P::Deprecated),
            (15, P::Deprecated),
            (16, P::NotSupported),
            (17, P::NotSupported),
            (18, P::NotSupported),
            (19, P::Deprecated),
            (20, P::Deprecated),
            (21, P::NotSupported),
            (22, P::NotSupported),
            (23, P::NotSupported),
            (24, P::Unknown),
            (-1, P::Unknown),
        ];
        for (number, problem) in cases {
            assert_eq!(
                SigningAlgorithm::from_key_details(number),
                Err(problem),
                "{number}"
            );
        }
    }
}
