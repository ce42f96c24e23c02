//! Plain request types mirroring the Rekor v2 protobuf messages (`rekor/v2/*.proto`,
//! `envelope.proto`), so this crate does not depend on generated code.

/// `dev.sigstore.rekor.v2.HashedRekordRequestV002`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HashedRekordRequest {
    /// `digest` (field 1): the artifact digest the client signed.
    pub digest: Vec<u8>,
    /// `signature` (field 2).
    pub signature: Option<SignatureInput>,
}

/// `dev.sigstore.rekor.v2.Signature`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignatureInput {
    /// `content` (field 1): the signature bytes.
    pub content: Vec<u8>,
    /// `verifier` (field 2).
    pub verifier: Option<VerifierInput>,
}

/// `dev.sigstore.rekor.v2.Verifier`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifierInput {
    /// The `verifier` oneof: `public_key` (field 1) or `x509_certificate` (field 2).
    pub key: Option<VerifierKey>,
    /// `key_details` (field 3): a `dev.sigstore.common.v1.PublicKeyDetails` number.
    pub key_details: i32,
}

/// The `Verifier.verifier` oneof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifierKey {
    /// `public_key.raw_bytes`: a DER SubjectPublicKeyInfo.
    PublicKey(Vec<u8>),
    /// `x509_certificate.raw_bytes`: a DER X.509 certificate; only its public key is used.
    Certificate(Vec<u8>),
}

impl VerifierKey {
    /// The raw DER bytes, whichever member is set.
    #[must_use]
    pub fn raw_bytes(&self) -> &[u8] {
        match self {
            Self::PublicKey(b) | Self::Certificate(b) => b,
        }
    }
}

/// `dev.sigstore.rekor.v2.DSSERequestV002`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DsseRequest {
    /// `envelope` (field 1).
    pub envelope: Option<Envelope>,
    /// `verifiers` (field 2): the keys that verify the envelope's signatures.
    pub verifiers: Vec<VerifierInput>,
}

/// `io.intoto.Envelope`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    /// `payload` (field 1).
    pub payload: Vec<u8>,
    /// `payloadType` (field 2).
    pub payload_type: String,
    /// `signatures` (field 3).
    pub signatures: Vec<EnvelopeSignature>,
}

/// `io.intoto.Signature`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvelopeSignature {
    /// `sig` (field 1): signature over the DSSE PAE.
    pub sig: Vec<u8>,
    /// `keyid` (field 2): an unauthenticated hint; not used and not logged.
    pub keyid: String,
}
