"""A resubmitted entry is refused with HTTP 409 and the index it already has in `x-log-index`.

Duplicates are judged by the logged entry, so the same artifact with a fresh (randomized) ECDSA
signature is a new entry, not a duplicate.
"""

from __future__ import annotations

import pytest
import requests
from sigstore._internal.rekor import RekorClientError
from sigstore._internal.rekor.client_v2 import RekorV2Client
from sigstore._internal.trust import KeyringPurpose
from sigstore.dsse import StatementBuilder, Subject, _sign

from interop import HTTP_TIMEOUT_S, ClientKey, RekorServer, dsse_v002_request, trusted_root
from pki import FakeSigstore


@pytest.fixture(scope="module")
def server(start_server) -> RekorServer:
    return start_server("duplicate")


def post(server: RekorServer, body: dict) -> requests.Response:
    return requests.post(f"{server.base_url}/api/v2/log/entries", json=body, timeout=HTTP_TIMEOUT_S)


def hashedrekord_request(key: ClientKey, artifact: bytes) -> dict:
    hashed, signature = key.sign_artifact(artifact)
    return RekorV2Client._build_hashed_rekord_request(hashed, signature, key.certificate)


def dsse_request(key: ClientKey) -> dict:
    statement = (
        StatementBuilder()
        .subjects([Subject(name="dup.bin", digest={"sha256": "ab" * 32})])
        .predicate_type("https://slsa.dev/provenance/v1")
        .predicate({})
        .build()
    )
    return dsse_v002_request(key, _sign(key.private_key, statement))


def assert_duplicate(server: RekorServer, request: dict, index: int) -> None:
    again = post(server, request)
    assert again.status_code == 409, (again.status_code, again.headers, again.text)
    assert again.headers.get("x-log-index") == str(index), dict(again.headers)


@pytest.mark.parametrize("kind", ["hashedrekord", "dsse"])
def test_duplicate_gets_409_with_log_index(
    server: RekorServer, pki: FakeSigstore, kind: str
) -> None:
    key = pki.issue(f"duplicate-{kind}")
    request = (
        hashedrekord_request(key, b"submitted twice")
        if kind == "hashedrekord"
        else dsse_request(key)
    )
    first = post(server, request)
    assert first.status_code in (200, 201), (first.status_code, first.text)
    index = int(first.json()["logIndex"])
    assert "x-log-index" not in first.headers

    # Other entries in between: the header must still name the first index, not the newest one.
    for i in range(2):
        filler = post(server, hashedrekord_request(key, f"filler {kind} {i}".encode()))
        assert filler.status_code in (200, 201), filler.text
        assert int(filler.json()["logIndex"]) > index

    assert_duplicate(server, request, index)
    assert_duplicate(server, request, index)

    # sigstore-python's own client reports the refusal as an error, not as an entry.
    with pytest.raises(RekorClientError):
        RekorV2Client(server.base_url).create_entry(request)


def test_fresh_signature_is_not_a_duplicate(server: RekorServer, pki: FakeSigstore) -> None:
    key = pki.issue("duplicate-fresh")
    first = post(server, hashedrekord_request(key, b"same artifact, two signatures"))
    second = post(server, hashedrekord_request(key, b"same artifact, two signatures"))
    assert first.status_code in (200, 201), first.text
    assert second.status_code in (200, 201), second.text
    assert first.json()["logIndex"] != second.json()["logIndex"]


def test_original_entry_still_verifies_after_duplicate(
    server: RekorServer, pki: FakeSigstore
) -> None:
    key = pki.issue("duplicate-verify")
    request = hashedrekord_request(key, b"verify after a refused duplicate")
    client = RekorV2Client(server.base_url)
    entry = client.create_entry(request)
    assert_duplicate(server, request, entry._inner.log_index)
    root = trusted_root(server.info().tlog_entry)
    entry._verify(root.rekor_keyring(KeyringPurpose.VERIFY))
