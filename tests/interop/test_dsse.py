"""DSSE envelopes, both ways real clients log them in Rekor v2.

1. As a hashedrekord v0.0.2 entry over the digest of the envelope's PAE, built by sigstore-python's
   own `RekorV2Client._build_dsse_request` (what `sigstore attest` sends to a v2 log).
2. As a dsse v0.0.2 entry: sigstore-python 4.5.1 has no builder for it, so the request is built
   field by field with sigstore-models (the protobuf-specs JSON mapping), with an X.509 certificate
   verifier and with a bare public key verifier.

Each returned entry is verified by sigstore-python; each envelope signature is checked by
`cryptography` over a PAE computed here from the DSSE spec, independently of both sigstore-python
and the server.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

import pytest
import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import load_der_x509_certificate
from sigstore import dsse
from sigstore._internal.rekor.client_v2 import RekorV2Client
from sigstore._internal.trust import KeyringPurpose
from sigstore.dsse import Envelope, Statement, StatementBuilder, Subject
from sigstore.models import Bundle, TransparencyLogEntry, TrustedRoot
from sigstore.verify import Verifier
from sigstore.verify.policy import UnsafeNoOp
from sigstore.verify.verifier import _validate_hashedrekord_v002_dsse_entry_body
from sigstore_models.common.v1 import HashAlgorithm, HashOutput, PublicKeyDetails, X509Certificate
from sigstore_models.rekor import v2 as rekor_v2
from sigstore_models.rekor.v1 import TransparencyLogEntry as _TransparencyLogEntry

from interop import HTTP_TIMEOUT_S, ClientKey, RekorServer, b64, dsse_v002_request, trusted_root
from pki import FakeSigstore

PAYLOAD_TYPE = "application/vnd.in-toto+json"


@dataclass
class Log:
    server: RekorServer
    root: TrustedRoot
    verifier: Verifier
    client: RekorV2Client
    pki: FakeSigstore

    def bundle(self, key: ClientKey, envelope: Envelope, entry: TransparencyLogEntry) -> Bundle:
        """A v0.3 DSSE bundle with an RFC 3161 timestamp, round-tripped through JSON."""
        bundle = Bundle._from_parts(
            key.certificate,
            envelope,
            entry,
            signed_timestamp=[self.pki.timestamp(envelope.signature)],
        )
        return Bundle.from_json(bundle.to_json())


@pytest.fixture(scope="module", params=["ed25519", "p256"])
def log(request: pytest.FixtureRequest, start_server, pki: FakeSigstore) -> Log:
    server = start_server(f"dsse-{request.param}", log_key=request.param)
    info = server.info()
    return Log(
        server,
        trusted_root(info.tlog_entry),
        Verifier(trusted_root=pki.trusted_root(info.tlog_entry)),
        RekorV2Client(server.base_url),
        pki,
    )


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding, written from the spec (not sigstore-python's)."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def make_envelope(key: ClientKey, name: str) -> Envelope:
    digest = hashlib.sha256(name.encode()).hexdigest()
    statement = (
        StatementBuilder()
        .subjects([Subject(name=name, digest={"sha256": digest})])
        .predicate_type("https://slsa.dev/provenance/v1")
        .predicate({"buildDefinition": {"buildType": "https://example.invalid/interop"}})
        .build()
    )
    return dsse._sign(key.private_key, statement)


def check_envelope_signature(envelope: Envelope, public_key: ec.EllipticCurvePublicKey) -> None:
    """Third-party check: ECDSA P-256 SHA-256 over the PAE, with `cryptography` only."""
    inner = envelope._inner
    assert len(inner.signatures) == 1
    public_key.verify(
        inner.signatures[0].sig, pae(inner.payload_type, inner.payload), ec.ECDSA(hashes.SHA256())
    )


def verify_entry(log: Log, entry: TransparencyLogEntry) -> None:
    entry._verify(log.root.rekor_keyring(KeyringPurpose.VERIFY))


def test_dsse_as_hashedrekord_over_pae(log: Log) -> None:
    key = log.pki.issue("dsse-hashedrekord")
    for i in range(3):
        envelope = make_envelope(key, f"artifact-{i}.tar.gz")
        check_envelope_signature(envelope, key.private_key.public_key())

        request = RekorV2Client._build_dsse_request(envelope, key.certificate)
        # The request carries the PAE digest, computed here independently.
        inner = envelope._inner
        expected_digest = hashlib.sha256(pae(inner.payload_type, inner.payload)).digest()
        sent = request["hashedRekordRequestV002"]
        assert base64.b64decode(sent["digest"]) == expected_digest

        entry = log.client.create_entry(request)
        verify_entry(log, entry)
        kind = entry._inner.kind_version
        assert (kind.kind, kind.version) == ("hashedrekord", "0.0.2")

        # The public API, end to end: certificate, SCT, timestamp, log entry, envelope signature,
        # and sigstore-python's Rekor v2 DSSE consistency check of the entry body.
        bundle = log.bundle(key, envelope, entry)
        payload_type, payload = log.verifier.verify_dsse(bundle, UnsafeNoOp())
        assert (payload_type, payload) == (PAYLOAD_TYPE, inner.payload)
        _validate_hashedrekord_v002_dsse_entry_body(bundle)


@pytest.mark.parametrize("verifier_kind", ["x509Certificate", "publicKey"])
def test_dsse_v002_entries(log: Log, verifier_kind: str) -> None:
    key = log.pki.issue(f"dsse-v002-{verifier_kind}")
    if verifier_kind == "x509Certificate":
        verifier = rekor_v2.verifier.Verifier(
            x509_certificate=X509Certificate(
                raw_bytes=b64(key.certificate.public_bytes(serialization.Encoding.DER))
            ),
            key_details=PublicKeyDetails.PKIX_ECDSA_P256_SHA_256,
        )
    else:
        verifier = rekor_v2.verifier.Verifier(
            public_key=rekor_v2.verifier.PublicKey(raw_bytes=b64(key.public_key_der())),
            key_details=PublicKeyDetails.PKIX_ECDSA_P256_SHA_256,
        )

    for i in range(3):
        envelope = make_envelope(key, f"{verifier_kind}-artifact-{i}.whl")
        request = rekor_v2.entry.CreateEntryRequest(
            dsse_request_v002=rekor_v2.dsse.DSSERequestV002(
                envelope=envelope._inner, verifiers=[verifier]
            )
        ).to_dict()
        # The wire shape protobuf-specs defines (rekor/v2/dsse.proto, JSON names).
        assert set(request) == {"dsseRequestV002"}
        assert set(request["dsseRequestV002"]) == {"envelope", "verifiers"}
        assert set(request["dsseRequestV002"]["envelope"]) == {
            "payload",
            "payloadType",
            "signatures",
        }

        entry = log.client.create_entry(request)
        verify_entry(log, entry)
        kind = entry._inner.kind_version
        assert (kind.kind, kind.version) == ("dsse", "0.0.2")

        # The logged body: payload hash and the signature with its verifier, nothing else.
        body = rekor_v2.entry.Entry.from_json(entry._inner.canonicalized_body)
        inner = envelope._inner
        expected = rekor_v2.entry.Entry(
            kind="dsse",
            api_version="0.0.2",
            spec=rekor_v2.entry.Spec(
                dsse_v002=rekor_v2.dsse.DSSELogEntryV002(
                    payload_hash=HashOutput(
                        algorithm=HashAlgorithm.SHA2_256,
                        digest=b64(hashlib.sha256(inner.payload).digest()),
                    ),
                    signatures=[
                        rekor_v2.verifier.Signature(
                            content=b64(inner.signatures[0].sig), verifier=verifier
                        )
                    ],
                )
            ),
        )
        assert body == expected, json.dumps(json.loads(entry._inner.canonicalized_body), indent=1)

        # What a verifier does with a dsse/0.0.2 entry: take the key from the logged verifier and
        # check the envelope's signature over the PAE with it.
        logged = body.spec.dsse_v002.signatures[0]
        if logged.verifier.x509_certificate is not None:
            public = load_der_x509_certificate(
                logged.verifier.x509_certificate.raw_bytes
            ).public_key()
        else:
            public = serialization.load_der_public_key(logged.verifier.public_key.raw_bytes)
        assert isinstance(public, ec.EllipticCurvePublicKey)
        check_envelope_signature(envelope, public)
        assert logged.content == inner.signatures[0].sig

        # sigstore-python 4.5.1's verify_dsse knows dsse/0.0.1 and hashedrekord/0.0.2 only, so
        # for dsse/0.0.2 run the steps it shares with every bundle: time, certificate chain and
        # SCT, and the log entry against the full TrustedRoot.
        log.verifier._verify_common_signing_cert(log.bundle(key, envelope, entry), UnsafeNoOp())


def test_dsse_entries_are_found_by_payload_digest_key_and_identity(
    start_server, pki: FakeSigstore
) -> None:
    """`GET /api/v2/search` on a log run with `--search-index`, for entries built with
    sigstore-python and its models. The terms are computed here from what was sent (the
    payload's SHA-256, the certificate's SubjectPublicKeyInfo, its e-mail SAN), the expected
    answers from the indices the uploads returned, and every returned entry is verified by
    sigstore-python (inclusion proof and signed checkpoint) and compared with the upload."""
    server = start_server("dsse-search", serve_args=("--search-index",))
    keyring = trusted_root(server.info().tlog_entry).rekor_keyring(KeyringPurpose.VERIFY)
    client = RekorV2Client(server.base_url)
    alice = pki.issue("dsse-search-alice")
    bob = pki.issue("dsse-search-bob")

    # Alice and Bob attest to the same statement (one payload digest, two signers); Alice to
    # one more, and to a third the way `sigstore attest` sends it: a hashedrekord over the
    # digest of the envelope's PAE.
    shared = make_envelope(alice, "shared-artifact.tar.gz")
    bob_shared = dsse._sign(bob.private_key, Statement(shared._inner.payload))
    own = make_envelope(alice, "alice-only.whl")
    over_pae = make_envelope(alice, "alice-pae.tar.gz")
    uploads = {
        "alice-shared": dsse_v002_request(alice, shared),
        "bob-shared": dsse_v002_request(bob, bob_shared),
        "alice-own": dsse_v002_request(alice, own),
        "alice-pae": RekorV2Client._build_dsse_request(over_pae, alice.certificate),
    }
    logged: dict[str, int] = {}
    bodies: dict[int, bytes] = {}
    for name, request in uploads.items():
        entry = client.create_entry(request)
        entry._verify(keyring)
        logged[name] = entry._inner.log_index
        bodies[entry._inner.log_index] = entry._inner.canonicalized_body

    def search(query: str) -> list[int]:
        response = requests.get(
            f"{server.base_url}/api/v2/search?{query}", timeout=HTTP_TIMEOUT_S
        )
        assert response.status_code == 200, (query, response.status_code, response.text)
        answer = response.json()
        assert not answer.get("nextPageToken"), answer
        found = []
        for raw in answer.get("entries", []):
            entry = TransparencyLogEntry(_TransparencyLogEntry.from_dict(raw))
            entry._verify(keyring)
            index = entry._inner.log_index
            assert entry._inner.canonicalized_body == bodies[index], query
            found.append(index)
        return found

    def indices(*names: str) -> list[int]:
        return sorted(logged[name] for name in names)

    def digest(data: bytes) -> str:
        return "digest=sha256:" + hashlib.sha256(data).hexdigest()

    def key(signer: ClientKey) -> str:
        return "key=sha256:" + hashlib.sha256(signer.public_key_der()).hexdigest()

    assert search(digest(shared._inner.payload)) == indices("alice-shared", "bob-shared")
    assert search(digest(own._inner.payload)) == indices("alice-own")
    # The hashedrekord over the PAE logs the PAE's digest, not the payload's.
    inner = over_pae._inner
    assert search(digest(pae(inner.payload_type, inner.payload))) == indices("alice-pae")
    assert search(digest(inner.payload)) == []
    alice_all = indices("alice-shared", "alice-own", "alice-pae")
    assert search(key(alice)) == alice_all
    assert search(key(bob)) == indices("bob-shared")
    assert search("identity=dsse-search-alice@interop.invalid") == alice_all
    assert search("identity=dsse-search-bob@interop.invalid") == indices("bob-shared")


def test_dsse_signature_check_can_fail(pki: FakeSigstore) -> None:
    """Twin of the checks above: a different key does not verify the envelope."""
    envelope = make_envelope(pki.issue("dsse-owner"), "owned.tar.gz")
    with pytest.raises(InvalidSignature):
        check_envelope_signature(envelope, pki.issue("dsse-other").private_key.public_key())
