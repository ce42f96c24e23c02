"""Builds golden Rekor v2 leaf bytes with an independent producer.

The entries are built with sigstore_models' pydantic models (protojson field
names, standard padded base64) and canonicalised with the rfc8785 package
(RFC 8785 JSON Canonicalization Scheme). Inputs are the openssl-made fixtures
in this directory (see make_fixtures.sh). Output: golden_*.json, one leaf each,
no trailing newline. See README.md for how to run it.
"""

import base64
import hashlib
import json
import pathlib

import rfc8785
from sigstore_models.common.v1 import (
    HashAlgorithm,
    HashOutput,
    PublicKeyDetails,
    X509Certificate,
)
from sigstore_models.rekor.v2 import dsse as dsse_v2
from sigstore_models.rekor.v2 import entry as entry_v2
from sigstore_models.rekor.v2 import hashedrekord as hashedrekord_v2
from sigstore_models.rekor.v2 import verifier as verifier_v2

HERE = pathlib.Path(__file__).resolve().parent


def read(name: str) -> bytes:
    return (HERE / name).read_bytes()


def b64(data: bytes) -> bytes:
    # sigstore_models' bytes fields take their protojson (base64) form as input.
    return base64.b64encode(data)


def verifier(key_file: str, details: PublicKeyDetails) -> verifier_v2.Verifier:
    raw = read(key_file)
    if key_file.endswith(".crt.der"):
        return verifier_v2.Verifier(
            x509_certificate=X509Certificate(raw_bytes=b64(raw)), key_details=details
        )
    return verifier_v2.Verifier(
        public_key=verifier_v2.PublicKey(raw_bytes=b64(raw)), key_details=details
    )


def leaf(entry: entry_v2.Entry) -> bytes:
    # to_dict(): protojson names (by_alias), unset/None fields dropped, bytes as base64 text.
    return rfc8785.dumps(entry.to_dict())


def hashedrekord(
    sig_file: str, key_file: str, details: PublicKeyDetails, algorithm: HashAlgorithm
) -> bytes:
    hashers = {
        HashAlgorithm.SHA2_256: hashlib.sha256,
        HashAlgorithm.SHA2_384: hashlib.sha384,
        HashAlgorithm.SHA2_512: hashlib.sha512,
    }
    digest = hashers[algorithm](read("artifact.txt")).digest()
    entry = entry_v2.Entry(
        kind="hashedrekord",
        api_version="0.0.2",
        spec=entry_v2.Spec(
            hashed_rekord_v002=hashedrekord_v2.HashedRekordLogEntryV002(
                data=HashOutput(algorithm=algorithm, digest=b64(digest)),
                signature=verifier_v2.Signature(
                    content=b64(read(sig_file)), verifier=verifier(key_file, details)
                ),
            )
        ),
    )
    return leaf(entry)


def dsse(pairs: list[tuple[str, str, PublicKeyDetails]]) -> bytes:
    # Rekor v2 logs the payload's SHA-256 and the signatures de-duplicated and
    # sorted ascending by their raw bytes, each with the verifier that verified it.
    signatures = sorted(
        {read(sig): (key, details) for sig, key, details in pairs}.items(),
        key=lambda item: item[0],
    )
    entry = entry_v2.Entry(
        kind="dsse",
        api_version="0.0.2",
        spec=entry_v2.Spec(
            dsse_v002=dsse_v2.DSSELogEntryV002(
                payload_hash=HashOutput(
                    algorithm=HashAlgorithm.SHA2_256,
                    digest=b64(hashlib.sha256(read("dsse_payload.json")).digest()),
                ),
                signatures=[
                    verifier_v2.Signature(
                        content=b64(sig), verifier=verifier(key, details)
                    )
                    for sig, (key, details) in signatures
                ],
            )
        ),
    )
    return leaf(entry)


GOLDENS = {
    "golden_hashedrekord_p256_pubkey.json": lambda: hashedrekord(
        "artifact.p256.sig",
        "p256.pub.der",
        PublicKeyDetails.PKIX_ECDSA_P256_SHA_256,
        HashAlgorithm.SHA2_256,
    ),
    "golden_hashedrekord_p256_cert.json": lambda: hashedrekord(
        "artifact.p256.sig",
        "p256.crt.der",
        PublicKeyDetails.PKIX_ECDSA_P256_SHA_256,
        HashAlgorithm.SHA2_256,
    ),
    "golden_hashedrekord_p384_pubkey.json": lambda: hashedrekord(
        "artifact.p384.sig",
        "p384.pub.der",
        PublicKeyDetails.PKIX_ECDSA_P384_SHA_384,
        HashAlgorithm.SHA2_384,
    ),
    "golden_hashedrekord_p521_pubkey.json": lambda: hashedrekord(
        "artifact.p521.sig",
        "p521.pub.der",
        PublicKeyDetails.PKIX_ECDSA_P521_SHA_512,
        HashAlgorithm.SHA2_512,
    ),
    "golden_hashedrekord_rsa2048_cert.json": lambda: hashedrekord(
        "artifact.rsa2048.sig",
        "rsa2048.crt.der",
        PublicKeyDetails.PKIX_RSA_PKCS1V15_2048_SHA256,
        HashAlgorithm.SHA2_256,
    ),
    "golden_hashedrekord_rsa4096_pubkey.json": lambda: hashedrekord(
        "artifact.rsa4096.sig",
        "rsa4096.pub.der",
        PublicKeyDetails.PKIX_RSA_PKCS1V15_4096_SHA256,
        HashAlgorithm.SHA2_256,
    ),
    "golden_dsse_p256_p384_rsa2048.json": lambda: dsse(
        [
            ("dsse.p256.sig", "p256.pub.der", PublicKeyDetails.PKIX_ECDSA_P256_SHA_256),
            ("dsse.p384.sig", "p384.pub.der", PublicKeyDetails.PKIX_ECDSA_P384_SHA_384),
            (
                "dsse.rsa2048.sig",
                "rsa2048.crt.der",
                PublicKeyDetails.PKIX_RSA_PKCS1V15_2048_SHA256,
            ),
        ]
    ),
}


def main() -> None:
    for name, build in GOLDENS.items():
        data = build()
        json.loads(data)  # sanity: the output is JSON
        (HERE / name).write_bytes(data)
        print(f"wrote {name} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
