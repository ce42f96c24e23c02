#!/usr/bin/env bash
# Fixtures for tests/search.rs: a certificate with e-mail and URI subject alternative names,
# and the terms an entry verified by it (or by p256.crt.der, p256.pub.der) is found by, each
# computed by openssl and sha256sum rather than by the code under test.
set -euo pipefail
cd "$(dirname "$0")"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout /dev/null -outform DER -out search.crt.der -days 3650 -subj "/CN=rekor search fixture" \
  -addext "subjectAltName=email:alice@example.com,URI:https://github.com/example/repo/.github/workflows/release.yml@refs/heads/main,DNS:not-an-identity.example"
spki_sha256() { openssl x509 -inform DER -in "$1" -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1; }
{
  echo "search.crt.der key sha256:$(spki_sha256 search.crt.der)"
  echo "p256.crt.der key sha256:$(spki_sha256 p256.crt.der)"
  echo "p256.pub.der key sha256:$(sha256sum < p256.pub.der | cut -d' ' -f1)"
  for k in p384.pub.der rsa2048.pub.der; do echo "$k key sha256:$(sha256sum < "$k" | cut -d' ' -f1)"; done
  echo "artifact.txt digest sha256:$(sha256sum < artifact.txt | cut -d' ' -f1)"
  echo "dsse_payload.json digest sha256:$(sha256sum < dsse_payload.json | cut -d' ' -f1)"
} > search_terms.txt
