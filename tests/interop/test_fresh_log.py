"""Entry 0 of a new log, through sigstore-python's client.

Its protobuf-JSON has zero values (`logIndex` 0, an empty `hashes` list) that proto3 JSON may leave
out, but sigstore-models requires them, and rekor-tiles writes them (its HTTP gateway marshals with
EmitUnpopulated). The other modules seed entry 0 with plain HTTP so they do not depend on this.
"""

from __future__ import annotations

import pytest
import requests
from sigstore._internal.rekor.client_v2 import RekorV2Client
from sigstore._internal.trust import KeyringPurpose

from interop import HTTP_TIMEOUT_S, trusted_root
from pki import FakeSigstore

def test_first_entry_parses_and_verifies(start_server, pki: FakeSigstore) -> None:
    server = start_server("fresh", seed=False)
    root = trusted_root(server.info().tlog_entry)
    key = pki.issue("first")
    hashed, signature = key.sign_artifact(b"the very first entry")
    request = RekorV2Client._build_hashed_rekord_request(hashed, signature, key.certificate)
    entry = RekorV2Client(server.base_url).create_entry(request)
    assert entry._inner.log_index == 0
    assert entry._inner.inclusion_proof.tree_size == 1
    assert entry._inner.inclusion_proof.hashes == []
    entry._verify(root.rekor_keyring(KeyringPurpose.VERIFY))


def test_first_entry_wire_fields(start_server, pki: FakeSigstore) -> None:
    """Pins down exactly what entry 0 looks like on the wire (reported as a finding, not a bug
    in sigstore-python): which zero-valued fields are present."""
    server = start_server("fresh-wire", seed=False)
    key = pki.issue("first-wire")
    hashed, signature = key.sign_artifact(b"first entry, raw")
    request = RekorV2Client._build_hashed_rekord_request(hashed, signature, key.certificate)
    response = requests.post(
        f"{server.base_url}/api/v2/log/entries", json=request, timeout=HTTP_TIMEOUT_S
    )
    assert response.status_code in (200, 201), response.text
    raw = response.json()
    proof = raw["inclusionProof"]
    assert proof["treeSize"] == "1"
    assert int(raw.get("logIndex", "0")) == 0
    assert int(proof.get("logIndex", "0")) == 0
    assert proof.get("hashes", []) == []
