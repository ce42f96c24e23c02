"""Shared machinery for the sigstore-python interop suite.

Everything here is plumbing: starting and stopping `rekor-server-posix`, reading what its `info`
command prints, and making client keys. The checks themselves are sigstore-python's own code,
called from the test modules.
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from sigstore.dsse import Envelope
from sigstore.hashes import Hashed
from sigstore.models import SigningConfig, TrustedRoot
from sigstore_models.common.v1 import HashAlgorithm, PublicKeyDetails, X509Certificate
from sigstore_models.rekor import v2 as rekor_v2
from sigstore_models.trustroot import v1 as trustroot_v1

#: How long a server may take to start listening.
START_TIMEOUT_S = 30.0
#: How long a server may take to stop after SIGTERM before it is killed.
STOP_TIMEOUT_S = 15.0
#: Timeout for one HTTP request made by the tests themselves.
HTTP_TIMEOUT_S = 30.0

TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
SIGNING_CONFIG_MEDIA_TYPE = "application/vnd.dev.sigstore.signingconfig.v0.2+json"


def server_binary() -> Path:
    """The server under test, from `REKOR_SERVER_BIN` (run.sh sets it)."""
    value = os.environ.get("REKOR_SERVER_BIN")
    if not value:
        raise RuntimeError(
            "REKOR_SERVER_BIN is not set; run the suite through tests/interop/run.sh"
        )
    path = Path(value)
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"REKOR_SERVER_BIN={path} is not an executable file")
    return path


def _die_with_parent() -> None:
    """Runs in the child before exec: ask Linux to SIGKILL it when the test process dies, so a
    killed or timed-out pytest leaves no server behind."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, 9, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_p256_log_key(path: Path) -> Path:
    """Writes a PKCS#8 PEM ECDSA P-256 key with mode 0600, as `--signer-filepath` wants it."""
    if shutil.which("openssl"):
        subprocess.run(
            [
                "openssl",
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                str(path),
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
    else:
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.write_bytes(pem)
    path.chmod(0o600)
    return path


@dataclass
class ServerInfo:
    """What `rekor-server-posix info` printed."""

    text: str
    tlog_entry: dict[str, Any]
    signing_config_entry: dict[str, Any]


def _json_after(text: str, marker: str) -> dict[str, Any]:
    start = text.find(marker)
    if start < 0:
        raise AssertionError(f"`info` output has no {marker!r} line:\n{text}")
    rest = text[start + len(marker) :].lstrip()
    value, _ = json.JSONDecoder().raw_decode(rest)
    if not isinstance(value, dict):
        raise AssertionError(f"the JSON after {marker!r} is not an object: {value!r}")
    return value


def parse_info(text: str) -> ServerInfo:
    """Finds the two JSON blocks `info` prints after their label lines."""
    return ServerInfo(
        text=text,
        tlog_entry=_json_after(text, "TrustedRoot tlogs entry:"),
        signing_config_entry=_json_after(text, "SigningConfig rekorTlogUrls entry:"),
    )


@dataclass
class RekorServer:
    """One `rekor-server-posix serve` process on 127.0.0.1 with its own storage directory."""

    workdir: Path
    hostname: str = "127.0.0.1"
    signer: Path | None = None
    port: int = 0
    # Flags for `serve` only (not `info`), e.g. ["--search-index"].
    serve_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage_dir = self.workdir / "storage"
        self.log_path = self.workdir / "server.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _common_args(self) -> list[str]:
        args = [
            "--storage-dir",
            str(self.storage_dir),
            "--hostname",
            self.hostname,
            "--http-port",
            str(self.port),
        ]
        if self.signer is not None:
            args += ["--signer-filepath", str(self.signer)]
        return args

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def start(self) -> RekorServer:
        """Starts the server on a free port and waits until its HTTP listener is up."""
        last_error = ""
        for _ in range(3):
            self.port = free_port()
            command = [
                str(server_binary()),
                "serve",
                *self._common_args(),
                "--grpc-port",
                "0",
                "--http-metrics-port",
                "0",
                "--log-json",
                *self.serve_args,
            ]
            with self.log_path.open("wb") as log:
                self.process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent,
                )
            address = self._wait_listening()
            if address is not None:
                if address != f"127.0.0.1:{self.port}":
                    self.stop()
                    raise AssertionError(
                        f"server listens on {address}, expected 127.0.0.1:{self.port}"
                    )
                return self
            last_error = self.log_tail()
            self.stop()
        raise AssertionError(f"server did not start after 3 tries; last log:\n{last_error}")

    def _wait_listening(self) -> str | None:
        deadline = time.monotonic() + START_TIMEOUT_S
        assert self.process is not None
        while time.monotonic() < deadline:
            for line in self.log_path.read_text(errors="replace").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                fields = record.get("fields", {}) if isinstance(record, dict) else {}
                if fields.get("message") == "listening" and fields.get("listener") == "http":
                    return str(fields.get("address"))
            if self.process.poll() is not None:
                return None
            time.sleep(0.05)
        return None

    def stop(self) -> None:
        """Stops the server: SIGTERM, then SIGKILL if it has not exited in time."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)
        self.process = None

    def info(self) -> ServerInfo:
        """Runs `info` with the same identity flags the server runs with."""
        result = subprocess.run(
            [str(server_binary()), "info", *self._common_args()],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(f"`info` failed ({result.returncode}):\n{result.stderr}")
        return parse_info(result.stdout)


def trusted_root(*tlog_entries: dict[str, Any]) -> TrustedRoot:
    """A TrustedRoot holding exactly the given `tlogs` entries and nothing else."""
    document = {
        "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
        "tlogs": list(tlog_entries),
        "certificateAuthorities": [],
        "ctlogs": [],
        "timestampAuthorities": [],
    }
    return TrustedRoot(trustroot_v1.TrustedRoot.from_json(json.dumps(document)))


def signing_config(*rekor_entries: dict[str, Any]) -> SigningConfig:
    """A SigningConfig with the given `rekorTlogUrls` entries.

    sigstore-python refuses a SigningConfig without a CA service, so one that is never contacted
    is listed (port 9 on loopback: the discard port, nothing listens there).
    """
    start = "2020-01-01T00:00:00Z"
    document = {
        "mediaType": SIGNING_CONFIG_MEDIA_TYPE,
        "caUrls": [
            {
                "url": "http://127.0.0.1:9",
                "majorApiVersion": 1,
                "validFor": {"start": start},
                "operator": "interop-unused",
            }
        ],
        "rekorTlogUrls": list(rekor_entries),
        "rekorTlogConfig": {"selector": "ANY"},
    }
    return SigningConfig(trustroot_v1.SigningConfig.from_json(json.dumps(document)))


@dataclass
class ClientKey:
    """An ECDSA P-256 signing key and its certificate (issued by `pki.FakeSigstore.issue`)."""

    private_key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    def public_key_der(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign_artifact(self, artifact: bytes) -> tuple[Hashed, bytes]:
        """SHA-256 digest of the artifact and an ECDSA signature over that prehashed digest."""
        digest = hashlib.sha256(artifact).digest()
        signature = self.private_key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        return Hashed(algorithm=HashAlgorithm.SHA2_256, digest=digest), signature


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def dsse_v002_request(key: ClientKey, envelope: Envelope) -> dict[str, Any]:
    """A dsse v0.0.2 request (protobuf-specs JSON names) with the signer's certificate as its
    verifier, built with sigstore-models."""
    verifier = rekor_v2.verifier.Verifier(
        x509_certificate=X509Certificate(
            raw_bytes=b64(key.certificate.public_bytes(serialization.Encoding.DER))
        ),
        key_details=PublicKeyDetails.PKIX_ECDSA_P256_SHA_256,
    )
    return rekor_v2.entry.CreateEntryRequest(
        dsse_request_v002=rekor_v2.dsse.DSSERequestV002(
            envelope=envelope._inner, verifiers=[verifier]
        )
    ).to_dict()


def seed_request(key: ClientKey) -> dict[str, Any]:
    """A hashedrekord v0.0.2 request (public key verifier) written as plain JSON."""
    hashed, signature = key.sign_artifact(b"seed entry")
    return {
        "hashedRekordRequestV002": {
            "digest": b64(hashed.digest),
            "signature": {
                "content": b64(signature),
                "verifier": {
                    "publicKey": {"rawBytes": b64(key.public_key_der())},
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                },
            },
        }
    }


def seed_first_entry(server: RekorServer, request: dict[str, Any]) -> dict[str, Any]:
    """Writes entry 0 with plain HTTP (no sigstore-python parsing) and returns the raw response.

    Used so the other tests do not depend on how index 0 is encoded; test_fresh_log checks that.
    """
    response = requests.post(
        f"{server.base_url}/api/v2/log/entries", json=request, timeout=HTTP_TIMEOUT_S
    )
    if response.status_code not in (200, 201):
        raise AssertionError(f"seed entry refused: {response.status_code} {response.text}")
    raw = response.json()
    if not isinstance(raw, dict) or int(raw.get("logIndex", "0")) != 0:
        raise AssertionError(f"seed entry is not entry 0: {raw!r}")
    return raw
