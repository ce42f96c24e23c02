"""Entries that are wrong in one way must fail sigstore-python's verification.

Two servers, A and B, run with the same hostname (so the same checkpoint origin) but different
Ed25519 keys, and a third, C, with an ECDSA P-256 key. A and B receive the same entries in the same
order, so their trees are identical and only the checkpoint signatures differ. Each negative check
has a positive twin that uses the untouched material, so the checks cannot pass by failing on
something unrelated.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sigstore._internal.rekor.client_v2 import RekorV2Client
from sigstore._internal.trust import KeyringPurpose
from sigstore.errors import VerificationError
from sigstore.models import TransparencyLogEntry, TrustedRoot
from sigstore_models.rekor.v1 import TransparencyLogEntry as _TransparencyLogEntry

from interop import RekorServer, ServerInfo, seed_first_entry, seed_request, trusted_root
from pki import FakeSigstore

ENTRIES = 5


@dataclass
class Log:
    server: RekorServer
    info: ServerInfo
    root: TrustedRoot
    entries: list[TransparencyLogEntry]


def _open(server: RekorServer) -> Log:
    info = server.info()
    return Log(server, info, trusted_root(info.tlog_entry), [])


@pytest.fixture(scope="module")
def logs(start_server, pki: FakeSigstore) -> dict[str, Log]:
    a = _open(start_server("negative-a", seed=False))
    b = _open(start_server("negative-b", seed=False))
    c = _open(start_server("negative-c", log_key="p256", seed=False))
    assert a.info.tlog_entry["publicKey"] != b.info.tlog_entry["publicKey"]
    # The same entry 0 everywhere, so A and B grow identical trees.
    seed = seed_request(pki.issue("negative-seed"))
    for log in (a, b, c):
        seed_first_entry(log.server, seed)
    key = pki.issue("negative-signer")
    for i in range(ENTRIES):
        hashed, signature = key.sign_artifact(f"negative artifact {i}".encode())
        request = RekorV2Client._build_hashed_rekord_request(hashed, signature, key.certificate)
        for log in (a, b, c):
            log.entries.append(RekorV2Client(log.server.base_url).create_entry(request))
    return {"a": a, "b": b, "c": c}


def verify(entry: TransparencyLogEntry, root: TrustedRoot) -> None:
    entry._verify(root.rekor_keyring(KeyringPurpose.VERIFY))


def rebuilt(
    entry: TransparencyLogEntry, change: Callable[[dict[str, Any]], None]
) -> TransparencyLogEntry:
    """The entry as protobuf JSON, changed by `change`, parsed back by sigstore-python."""
    raw = copy.deepcopy(entry._inner.to_dict())
    change(raw)
    return TransparencyLogEntry(_TransparencyLogEntry.from_dict(raw))


def flip_bit(b64: str, byte: int = 0) -> str:
    data = bytearray(base64.b64decode(b64))
    data[byte] ^= 0x01
    return base64.b64encode(bytes(data)).decode()


def entry_with_proof_hashes(log: Log) -> TransparencyLogEntry:
    for entry in reversed(log.entries):
        if len(entry._inner.inclusion_proof.hashes) >= 2:
            return entry
    raise AssertionError("no entry has an inclusion proof with two or more hashes")


def test_untouched_entries_verify(logs: dict[str, Log]) -> None:
    for log in logs.values():
        for entry in log.entries:
            verify(entry, log.root)
    # Same entries, same order: A and B built the same tree.
    a_last, b_last = logs["a"].entries[-1]._inner, logs["b"].entries[-1]._inner
    assert a_last.inclusion_proof.root_hash == b_last.inclusion_proof.root_hash
    assert a_last.inclusion_proof.tree_size == b_last.inclusion_proof.tree_size


def test_round_trip_without_change_verifies(logs: dict[str, Log]) -> None:
    """Positive twin of the tampering tests: re-parsing alone must not break anything."""
    entry = entry_with_proof_hashes(logs["a"])
    verify(rebuilt(entry, lambda raw: None), logs["a"].root)


def test_flipped_proof_hash_fails(logs: dict[str, Log]) -> None:
    entry = entry_with_proof_hashes(logs["a"])
    count = len(entry._inner.inclusion_proof.hashes)
    for position in range(count):

        def change(raw: dict[str, Any], position: int = position) -> None:
            hashes = raw["inclusionProof"]["hashes"]
            hashes[position] = flip_bit(hashes[position], byte=31)

        with pytest.raises(VerificationError):
            verify(rebuilt(entry, change), logs["a"].root)


@pytest.mark.parametrize(
    "what",
    # Not "tree size": sigstore-python never compares the proof's tree size with the checkpoint's,
    # and a larger size can decompose the same way, so that change is not always detectable there.
    ["dropped proof hash", "extra proof hash", "root hash", "log index", "body"],
)
def test_other_tampering_fails(logs: dict[str, Log], what: str) -> None:
    entry = entry_with_proof_hashes(logs["a"])

    def change(raw: dict[str, Any]) -> None:
        proof = raw["inclusionProof"]
        if what == "dropped proof hash":
            proof["hashes"].pop()
        elif what == "extra proof hash":
            proof["hashes"].append(proof["hashes"][0])
        elif what == "root hash":
            proof["rootHash"] = flip_bit(proof["rootHash"])
        elif what == "log index":
            index = str(int(proof["logIndex"]) - 1)
            proof["logIndex"] = index
            raw["logIndex"] = index
        elif what == "body":
            body = bytearray(base64.b64decode(raw["canonicalizedBody"]))
            body[-2] ^= 0x01
            raw["canonicalizedBody"] = base64.b64encode(bytes(body)).decode()

    with pytest.raises(VerificationError):
        verify(rebuilt(entry, change), logs["a"].root)


def test_other_logs_entries_fail_against_first_trusted_root(logs: dict[str, Log]) -> None:
    """B (same origin, other Ed25519 key) and C (ECDSA P-256 key) do not verify under A's root,
    and A does not verify under theirs."""
    a, b, c = logs["a"], logs["b"], logs["c"]
    for entry in b.entries + c.entries:
        with pytest.raises(VerificationError):
            verify(entry, a.root)
    for entry in a.entries:
        for other in (b, c):
            with pytest.raises(VerificationError):
                verify(entry, other.root)


def test_checkpoint_signed_by_another_key_fails(logs: dict[str, Log]) -> None:
    """A's entry with B's checkpoint for the very same tree: only the signer differs."""
    a, b = logs["a"], logs["b"]
    a_entry, b_entry = a.entries[-1], b.entries[-1]
    b_checkpoint = b_entry._inner.inclusion_proof.checkpoint.envelope
    a_checkpoint = a_entry._inner.inclusion_proof.checkpoint.envelope
    a_note, a_signatures = a_checkpoint.split("\n\n", 1)
    b_note, b_signatures = b_checkpoint.split("\n\n", 1)
    assert a_note == b_note, "A and B should have signed the same checkpoint body"
    assert a_signatures != b_signatures

    def swap_checkpoint(raw: dict[str, Any]) -> None:
        raw["inclusionProof"]["checkpoint"]["envelope"] = b_checkpoint

    with pytest.raises(VerificationError):
        verify(rebuilt(a_entry, swap_checkpoint), a.root)

    # B's signature relabelled with A's 4-byte key hint, so sigstore-python does try A's key on it.
    name, a_sig = a_signatures.splitlines()[0].removeprefix("\u2014 ").split(" ", 1)
    _, b_sig = b_signatures.splitlines()[0].removeprefix("\u2014 ").split(" ", 1)
    a_raw, b_raw = base64.b64decode(a_sig), base64.b64decode(b_sig)
    forged_sig = base64.b64encode(a_raw[:4] + b_raw[4:]).decode()
    forged = f"{a_note}\n\n\u2014 {name} {forged_sig}\n"

    def forge_checkpoint(raw: dict[str, Any]) -> None:
        raw["inclusionProof"]["checkpoint"]["envelope"] = forged

    with pytest.raises(VerificationError, match="invalid signature"):
        verify(rebuilt(a_entry, forge_checkpoint), a.root)

    # Positive twin: A's own signature, re-assembled the same way, verifies.
    reassembled = f"{a_note}\n\n\u2014 {name} {base64.b64encode(a_raw).decode()}\n"

    def reassemble(raw: dict[str, Any]) -> None:
        raw["inclusionProof"]["checkpoint"]["envelope"] = reassembled

    verify(rebuilt(a_entry, reassemble), a.root)


def test_full_verifier_rejects_entry_from_another_log(
    logs: dict[str, Log], pki: FakeSigstore
) -> None:
    """The public API on complete bundles: a bundle carrying B's entry for the same signature does
    not verify under a full TrustedRoot whose only log is A; the same bundle with A's entry does."""
    from sigstore.hashes import Hashed
    from sigstore.models import Bundle
    from sigstore.verify import Verifier
    from sigstore.verify.policy import UnsafeNoOp
    from sigstore_models.common.v1 import MessageSignature

    a, b = logs["a"], logs["b"]
    key = pki.issue("negative-bundle")
    artifact = b"artifact logged in A and in B"
    hashed, signature = key.sign_artifact(artifact)
    assert isinstance(hashed, Hashed)
    request = RekorV2Client._build_hashed_rekord_request(hashed, signature, key.certificate)
    entries = {
        name: RekorV2Client(log.server.base_url).create_entry(request)
        for name, log in (("a", a), ("b", b))
    }
    verifier = Verifier(trusted_root=pki.trusted_root(a.info.tlog_entry))

    def bundle(entry: TransparencyLogEntry) -> Bundle:
        return Bundle._from_parts(
            key.certificate,
            MessageSignature(signature=base64.b64encode(signature)),
            entry,
            signed_timestamp=[pki.timestamp(signature)],
        )

    verifier.verify_artifact(artifact, bundle(entries["a"]), UnsafeNoOp())
    with pytest.raises(VerificationError, match="invalid log entry"):
        verifier.verify_artifact(artifact, bundle(entries["b"]), UnsafeNoOp())
