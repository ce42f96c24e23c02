"""sigstore-python writes hashedrekord v0.0.2 entries to our log and verifies them itself.

The TrustedRoot `tlogs` entry and the SigningConfig `rekorTlogUrls` entry are exactly the JSON
blocks `rekor-server-posix info` prints, and the client is the one sigstore-python picks from that
SigningConfig. Each log key type the server supports gets its own server: Ed25519 (generated) and
ECDSA P-256 (`--signer-filepath`).

Two levels of verification, both sigstore-python's code:
* entry level: `TransparencyLogEntry._verify` (inclusion proof and signed checkpoint) against a
  TrustedRoot that holds only our `tlogs` entry;
* bundle level: `Verifier.verify_artifact`, the public API, on a v0.3 bundle made of the entry, the
  signature, the certificate and an RFC 3161 timestamp, against a full TrustedRoot (our `tlogs`
  entry plus the local CA, CT log and TSA from pki.py).
"""

from __future__ import annotations

import base64
import concurrent.futures
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from sigstore._internal.rekor.checkpoint import SignedCheckpoint
from sigstore._internal.rekor.client_v2 import RekorV2Client
from sigstore._internal.trust import KeyringPurpose
from sigstore.hashes import Hashed
from sigstore.models import Bundle, TransparencyLogEntry, TrustedRoot
from sigstore.verify import Verifier
from sigstore.verify.policy import UnsafeNoOp
from sigstore_models.common.v1 import HashAlgorithm, HashOutput, MessageSignature, PublicKeyDetails
from sigstore_models.rekor import v2 as rekor_v2
from sigstore_models.rekor.v1 import TransparencyLogEntry as _TransparencyLogEntry

from interop import (
    HTTP_TIMEOUT_S,
    ClientKey,
    RekorServer,
    ServerInfo,
    b64,
    signing_config,
    trusted_root,
)
from pki import FakeSigstore


@dataclass
class Log:
    server: RekorServer
    info: ServerInfo
    root: TrustedRoot
    verifier: Verifier
    client: RekorV2Client
    log_key: str
    pki: FakeSigstore

    def submit(self, key: ClientKey, artifact: bytes) -> tuple[Hashed, bytes, TransparencyLogEntry]:
        """Signs the artifact and logs it through sigstore-python's request builder and client."""
        hashed, signature = key.sign_artifact(artifact)
        request = RekorV2Client._build_hashed_rekord_request(hashed, signature, key.certificate)
        return hashed, signature, self.client.create_entry(request)

    def bundle(self, key: ClientKey, signature: bytes, entry: TransparencyLogEntry) -> Bundle:
        """A v0.3 bundle as sigstore-python's signer assembles it, round-tripped through JSON."""
        bundle = Bundle._from_parts(
            key.certificate,
            MessageSignature(signature=b64(signature)),
            entry,
            signed_timestamp=[self.pki.timestamp(signature)],
        )
        return Bundle.from_json(bundle.to_json())


@pytest.fixture(scope="module", params=["ed25519", "p256"])
def log(request: pytest.FixtureRequest, start_server, pki: FakeSigstore) -> Log:
    server = start_server(f"hashedrekord-{request.param}", log_key=request.param)
    info = server.info()
    clients = signing_config(info.signing_config_entry).get_tlogs()
    assert len(clients) == 1, clients
    client = clients[0]
    assert isinstance(client, RekorV2Client), (
        f"SigningConfig entry did not select Rekor v2: {client}"
    )
    assert client.url == f"{server.base_url}/api/v2"
    verifier = Verifier(trusted_root=pki.trusted_root(info.tlog_entry))
    return Log(server, info, trusted_root(info.tlog_entry), verifier, client, request.param, pki)


def test_info_describes_the_running_log(log: Log) -> None:
    """The TrustedRoot entry names our URL and the key the server actually signs with."""
    tlog = log.info.tlog_entry
    assert tlog["baseUrl"] == log.server.base_url
    assert tlog["hashAlgorithm"] == "SHA2_256"
    public = serialization.load_der_public_key(base64.b64decode(tlog["publicKey"]["rawBytes"]))
    if log.log_key == "ed25519":
        assert tlog["publicKey"]["keyDetails"] == "PKIX_ED25519"
        assert isinstance(public, ed25519.Ed25519PublicKey)
    else:
        assert tlog["publicKey"]["keyDetails"] == "PKIX_ECDSA_P256_SHA_256"
        assert isinstance(public, ec.EllipticCurvePublicKey)
        assert log.server.signer is not None
        private = serialization.load_pem_private_key(log.server.signer.read_bytes(), None)
        assert public.public_numbers() == private.public_key().public_numbers()
    service = log.info.signing_config_entry
    assert service["url"] == log.server.base_url
    assert service["majorApiVersion"] == 2


def test_entries_verify_with_sigstore_python(log: Log) -> None:
    """Several signers and artifacts, submitted one after another; every entry verifies."""
    keys = [log.pki.issue(f"signer-{i}") for i in range(3)]
    keyring = log.root.rekor_keyring(KeyringPurpose.VERIFY)
    trusted_log_id = base64.b64decode(log.info.tlog_entry["logId"]["keyId"])
    indices = []
    for i in range(6):
        key = keys[i % len(keys)]
        artifact = f"interop artifact {i} for the {log.log_key} log".encode()
        hashed, signature, entry = log.submit(key, artifact)
        inner = entry._inner

        # Steps 4 and 5 of sigstore-python's verifier: inclusion proof, signed checkpoint.
        entry._verify(keyring)

        assert (inner.kind_version.kind, inner.kind_version.version) == ("hashedrekord", "0.0.2")
        # sigstore-go selects the TrustedRoot tlog by this ID; it must be the one `info` printed.
        assert inner.log_id.key_id == trusted_log_id
        assert inner.inclusion_proof.log_index == inner.log_index
        # Rekor v2 gives no integrated time and no SET.
        assert not inner.integrated_time
        assert inner.inclusion_promise is None
        # sigstore-python does not bind these; sigstore-go does: the checkpoint's origin is the
        # host of the TrustedRoot baseUrl and its size is the proof's tree size.
        checkpoint = SignedCheckpoint.from_text(
            inner.inclusion_proof.checkpoint.envelope
        ).checkpoint
        assert checkpoint.origin == urlsplit(log.info.tlog_entry["baseUrl"]).hostname
        assert checkpoint.log_size == inner.inclusion_proof.tree_size
        indices.append(inner.log_index)

        # The public API, end to end: certificate chain, SCT, timestamp, log entry, signature and
        # the entry body's consistency with this artifact and signature.
        log.verifier.verify_artifact(artifact, log.bundle(key, signature, entry), UnsafeNoOp())

    assert indices == sorted(indices) and len(set(indices)) == len(indices), indices


def test_verify_artifact_rejects_another_artifact(log: Log) -> None:
    """Twin of the test above: the same bundle does not verify a different artifact."""
    from sigstore.errors import VerificationError

    key = log.pki.issue("twin")
    _, signature, entry = log.submit(key, b"the artifact that was signed")
    bundle = log.bundle(key, signature, entry)
    log.verifier.verify_artifact(b"the artifact that was signed", bundle, UnsafeNoOp())
    with pytest.raises(VerificationError):
        log.verifier.verify_artifact(b"some other artifact", bundle, UnsafeNoOp())


def test_concurrent_submissions_verify(log: Log) -> None:
    """Entries sent at once (sigstore-python's client is thread-safe) share batches; all verify."""
    key = log.pki.issue("concurrent-signer")
    artifacts = [f"concurrent artifact {i} ({log.log_key})".encode() for i in range(8)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda a: log.submit(key, a), artifacts))
    indices = set()
    for artifact, (_, signature, entry) in zip(artifacts, results, strict=True):
        entry._verify(log.root.rekor_keyring(KeyringPurpose.VERIFY))
        log.verifier.verify_artifact(artifact, log.bundle(key, signature, entry), UnsafeNoOp())
        indices.add(entry._inner.log_index)
    assert len(indices) == len(artifacts)


def test_public_key_verifier_entry_verifies(log: Log) -> None:
    """A request whose verifier is a bare public key (as `cosign --key` sends) also verifies."""
    key = log.pki.issue("bare-key-signer")
    hashed, signature = key.sign_artifact(b"signed with a bare public key")
    verifier = rekor_v2.verifier.Verifier(
        public_key=rekor_v2.verifier.PublicKey(raw_bytes=b64(key.public_key_der())),
        key_details=PublicKeyDetails.PKIX_ECDSA_P256_SHA_256,
    )
    request = rekor_v2.entry.CreateEntryRequest(
        hashed_rekord_request_v002=rekor_v2.hashedrekord.HashedRekordRequestV002(
            digest=b64(hashed.digest),
            signature=rekor_v2.verifier.Signature(content=b64(signature), verifier=verifier),
        )
    )
    entry = log.client.create_entry(request.to_dict())
    entry._verify(log.root.rekor_keyring(KeyringPurpose.VERIFY))
    body = rekor_v2.entry.Entry.from_json(entry._inner.canonicalized_body)
    expected = rekor_v2.entry.Entry(
        kind="hashedrekord",
        api_version="0.0.2",
        spec=rekor_v2.entry.Spec(
            hashed_rekord_v002=rekor_v2.hashedrekord.HashedRekordLogEntryV002(
                data=HashOutput(algorithm=HashAlgorithm.SHA2_256, digest=b64(hashed.digest)),
                signature=rekor_v2.verifier.Signature(content=b64(signature), verifier=verifier),
            )
        ),
    )
    assert body == expected


def test_response_is_protobuf_json(log: Log) -> None:
    """The raw response is a protobuf-JSON TransparencyLogEntry: 64-bit integers as strings, and
    sigstore-models (strict types, no unknown fields) accepts it."""
    key = log.pki.issue("strict-parse")
    hashed, signature = key.sign_artifact(b"strict parse")
    request = RekorV2Client._build_hashed_rekord_request(hashed, signature, key.certificate)
    response = requests.post(
        f"{log.server.base_url}/api/v2/log/entries", json=request, timeout=HTTP_TIMEOUT_S
    )
    assert response.status_code in (200, 201), (response.status_code, response.text)
    assert response.headers.get("content-type", "").startswith("application/json")
    raw = response.json()
    assert isinstance(raw["logIndex"], str)
    assert isinstance(raw["inclusionProof"]["logIndex"], str)
    assert isinstance(raw["inclusionProof"]["treeSize"], str)
    entry = TransparencyLogEntry(_TransparencyLogEntry.from_dict(raw))
    entry._verify(log.root.rekor_keyring(KeyringPurpose.VERIFY))
