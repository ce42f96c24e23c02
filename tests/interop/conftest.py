"""Fixtures: a local Sigstore PKI per session, and servers under test started per test module and
stopped when the module ends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from interop import RekorServer, make_p256_log_key, seed_first_entry, seed_request, server_binary
from pki import FakeSigstore

StartServer = Callable[..., RekorServer]


@pytest.fixture(scope="session", autouse=True)
def _server_binary_exists() -> Path:
    return server_binary()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> FakeSigstore:
    return FakeSigstore.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def start_server(
    tmp_path_factory: pytest.TempPathFactory, pki: FakeSigstore
) -> Iterator[StartServer]:
    """Starts `rekor-server-posix serve` instances; every one is stopped at module teardown.

    `log_key` is "ed25519" (the server generates the key in its storage directory) or "p256"
    (an ECDSA P-256 PKCS#8 key passed with `--signer-filepath`). With `seed` (the default) entry 0
    is written with plain HTTP first, so tests see entries whose proofs have hashes; only
    test_fresh_log looks at entry 0 itself.
    """
    started: list[RekorServer] = []

    def start(
        name: str,
        *,
        log_key: str = "ed25519",
        hostname: str = "127.0.0.1",
        seed: bool = True,
        serve_args: tuple[str, ...] = (),
    ) -> RekorServer:
        workdir = tmp_path_factory.mktemp(name)
        if log_key == "ed25519":
            signer = None
        elif log_key == "p256":
            signer = make_p256_log_key(workdir / "log-key.pem")
        else:
            raise ValueError(f"unknown log key kind {log_key!r}")
        server = RekorServer(
            workdir, hostname=hostname, signer=signer, serve_args=list(serve_args)
        )
        started.append(server)
        server.start()
        if seed:
            seed_first_entry(server, seed_request(pki.issue("seed")))
        return server

    yield start
    for server in started:
        server.stop()
