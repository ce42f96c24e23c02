"""A miniature Sigstore instance around our log, so sigstore-python's full `Verifier` can run.

A Rekor v2 entry carries no integrated time, so a bundle needs an RFC 3161 timestamp, and
`Verifier.verify_artifact` also checks the signing certificate: chain to a Fulcio root, an embedded
SCT from a CT log in the TrustedRoot, code-signing usage. This module makes all of that locally:

* a "Fulcio" root CA (ECDSA P-256) issuing short-lived leaf certificates with an embedded SCT,
* a "CT log" key that signs those SCTs (RFC 6962 precertificate SCTs),
* a timestamp authority (root plus TSA certificate) whose responses `openssl ts -reply` produces.

Only the transparency log is real: the `tlogs` entry is the one `rekor-server-posix info` prints.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from rfc3161_client import HashAlgorithm as TsaHashAlgorithm
from rfc3161_client import TimestampRequestBuilder, TimeStampResponse, decode_timestamp_response
from sigstore.models import TrustedRoot
from sigstore_models.trustroot import v1 as trustroot_v1

from interop import TRUSTED_ROOT_MEDIA_TYPE, ClientKey, b64

#: OID of the embedded SCT list extension (RFC 6962 section 3.3).
SCT_LIST_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")

_UTC = datetime.UTC


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der_octet_string(data: bytes) -> bytes:
    return b"\x04" + _der_length(len(data)) + data


def _spki_der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "rekor-rs interop"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _root_ca(
    common_name: str, key: ec.EllipticCurvePrivateKey, now: datetime.datetime
) -> x509.Certificate:
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _signing_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass
class FakeSigstore:
    """Fulcio root, CT log key and TSA of a local Sigstore instance (everything but the log)."""

    created: datetime.datetime
    fulcio_key: ec.EllipticCurvePrivateKey
    fulcio_root: x509.Certificate
    ct_key: ec.EllipticCurvePrivateKey
    tsa_root_key: ec.EllipticCurvePrivateKey
    tsa_root: x509.Certificate
    tsa_key: ec.EllipticCurvePrivateKey
    tsa_cert: x509.Certificate
    workdir: Path

    @classmethod
    def create(cls, workdir: Path) -> FakeSigstore:
        now = datetime.datetime.now(_UTC).replace(microsecond=0)
        fulcio_key = ec.generate_private_key(ec.SECP256R1())
        tsa_root_key = ec.generate_private_key(ec.SECP256R1())
        tsa_key = ec.generate_private_key(ec.SECP256R1())
        tsa_root = _root_ca("interop TSA root", tsa_root_key, now)
        tsa_cert = (
            x509.CertificateBuilder()
            .subject_name(_name("interop TSA"))
            .issuer_name(tsa_root.subject)
            .public_key(tsa_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_signing_usage(), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(tsa_root_key.public_key()),
                critical=False,
            )
            .sign(tsa_root_key, hashes.SHA256())
        )
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "tsa.key").write_bytes(
            tsa_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        (workdir / "tsa.key").chmod(0o600)
        (workdir / "tsa.pem").write_bytes(tsa_cert.public_bytes(serialization.Encoding.PEM))
        (workdir / "tsa-root.pem").write_bytes(tsa_root.public_bytes(serialization.Encoding.PEM))
        (workdir / "serial").write_text("01\n")
        (workdir / "tsa.cnf").write_text(
            "[ tsa ]\n"
            "default_tsa = interop\n"
            "[ interop ]\n"
            f"serial = {workdir / 'serial'}\n"
            "crypto_device = builtin\n"
            "signer_digest = sha256\n"
            "default_policy = 1.3.6.1.4.1.57264.2\n"
            "digests = sha256, sha384, sha512\n"
            "accuracy = secs:1\n"
            "ordering = no\n"
            "tsa_name = no\n"
            "ess_cert_id_chain = no\n"
            "ess_cert_id_alg = sha256\n"
        )
        return cls(
            created=now,
            fulcio_key=fulcio_key,
            fulcio_root=_root_ca("interop Fulcio root", fulcio_key, now),
            ct_key=ec.generate_private_key(ec.SECP256R1()),
            tsa_root_key=tsa_root_key,
            tsa_root=tsa_root,
            tsa_key=tsa_key,
            tsa_cert=tsa_cert,
            workdir=workdir,
        )

    # -- Fulcio + CT -------------------------------------------------------------------------

    def issue(self, identity: str) -> ClientKey:
        """A Fulcio-style leaf: ECDSA P-256, 10 minutes, email SAN, code signing, embedded SCT."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(_UTC).replace(microsecond=0)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.fulcio_root.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(minutes=10))
            .add_extension(_signing_usage(), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.fulcio_key.public_key()),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName([x509.RFC822Name(f"{identity}@interop.invalid")]),
                critical=True,
            )
        )
        # The precertificate TBS is the final TBS without the SCT list; building the same
        # certificate without that extension gives exactly those bytes.
        precert_tbs = builder.sign(self.fulcio_key, hashes.SHA256()).tbs_certificate_bytes
        sct_list = self._sct_list(precert_tbs, int(now.timestamp() * 1000))
        certificate = builder.add_extension(
            x509.UnrecognizedExtension(SCT_LIST_OID, _der_octet_string(sct_list)), critical=False
        ).sign(self.fulcio_key, hashes.SHA256())
        if certificate.tbs_precertificate_bytes != precert_tbs:
            raise AssertionError("precertificate TBS does not match the SCT's signed TBS")
        return ClientKey(private_key=key, certificate=certificate)

    def _sct_list(self, precert_tbs: bytes, timestamp_ms: int) -> bytes:
        """A TLS-encoded SignedCertificateTimestampList with one v1 precert SCT (RFC 6962 3.2)."""
        issuer_key_hash = hashlib.sha256(_spki_der(self.fulcio_key.public_key())).digest()
        extensions = b""
        signed = (
            struct.pack("!BBQH", 0, 0, timestamp_ms, 1)
            + issuer_key_hash
            + len(precert_tbs).to_bytes(3, "big")
            + precert_tbs
            + struct.pack("!H", len(extensions))
            + extensions
        )
        signature = self.ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        log_id = hashlib.sha256(_spki_der(self.ct_key.public_key())).digest()
        sct = (
            struct.pack("!B", 0)
            + log_id
            + struct.pack("!QH", timestamp_ms, len(extensions))
            + extensions
            + struct.pack("!BBH", 4, 3, len(signature))  # sha256, ecdsa
            + signature
        )
        return struct.pack("!HH", len(sct) + 2, len(sct)) + sct

    # -- TSA ---------------------------------------------------------------------------------

    def timestamp(self, signature: bytes) -> TimeStampResponse:
        """An RFC 3161 timestamp over a signature, requested the way sigstore-python requests it."""
        request = (
            TimestampRequestBuilder()
            .hash_algorithm(TsaHashAlgorithm.SHA256)
            .data(signature)
            .nonce(nonce=True)
            .build()
        )
        with tempfile.TemporaryDirectory(dir=self.workdir) as scratch:
            query = Path(scratch) / "request.tsq"
            reply = Path(scratch) / "reply.tsr"
            query.write_bytes(request.as_bytes())
            subprocess.run(
                [
                    "openssl",
                    "ts",
                    "-reply",
                    "-config",
                    str(self.workdir / "tsa.cnf"),
                    "-queryfile",
                    str(query),
                    "-signer",
                    str(self.workdir / "tsa.pem"),
                    "-inkey",
                    str(self.workdir / "tsa.key"),
                    "-out",
                    str(reply),
                ],
                check=True,
                capture_output=True,
                timeout=30,
            )
            return decode_timestamp_response(reply.read_bytes())

    # -- TrustedRoot -------------------------------------------------------------------------

    def trusted_root(self, *tlog_entries: dict[str, Any]) -> TrustedRoot:
        """A complete TrustedRoot: our log's `tlogs` entries as given, plus this instance's CA,
        CT log and TSA."""
        start = (self.created - datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        document = {
            "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
            "tlogs": list(tlog_entries),
            "certificateAuthorities": [
                {
                    "subject": {
                        "organization": "rekor-rs interop",
                        "commonName": "interop Fulcio root",
                    },
                    "uri": "http://127.0.0.1:9",
                    "certChain": {"certificates": [{"rawBytes": b64(_der(self.fulcio_root))}]},
                    "validFor": {"start": start},
                }
            ],
            "ctlogs": [
                {
                    "baseUrl": "http://127.0.0.1:9",
                    "hashAlgorithm": "SHA2_256",
                    "publicKey": {
                        "rawBytes": b64(_spki_der(self.ct_key.public_key())),
                        "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                        "validFor": {"start": start},
                    },
                    "logId": {
                        "keyId": b64(hashlib.sha256(_spki_der(self.ct_key.public_key())).digest())
                    },
                }
            ],
            "timestampAuthorities": [
                {
                    "subject": {"organization": "rekor-rs interop", "commonName": "interop TSA"},
                    "uri": "http://127.0.0.1:9",
                    "certChain": {
                        "certificates": [
                            {"rawBytes": b64(_der(self.tsa_cert))},
                            {"rawBytes": b64(_der(self.tsa_root))},
                        ]
                    },
                    "validFor": {"start": start},
                }
            ],
        }
        return TrustedRoot(trustroot_v1.TrustedRoot.from_json(json.dumps(document)))
