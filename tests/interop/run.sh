#!/usr/bin/env bash
# Interop suite: sigstore-python (a third-party Rekor v2 client) against rekor-server-posix.
#
#   bash tests/interop/run.sh [pytest args...]
#
# Environment:
#   INTEROP_VENV      virtualenv to create or reuse (default: $HOME/.cache/rekor-rs/interop-venv)
#   PYTHON            interpreter that creates the venv (default: python3)
#   REKOR_SERVER_BIN  server binary to test; when unset, `cargo build -p rekor-server-posix` builds it
#   CARGO             cargo command (default: cargo)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${INTEROP_VENV:-$HOME/.cache/rekor-rs/interop-venv}"
python="${PYTHON:-python3}"
cargo="${CARGO:-cargo}"
requirements="$here/requirements.txt"

started=$SECONDS

# A venv is reused while it runs and was filled from the same requirements file.
if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    echo "interop: creating venv $venv" >&2
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
fi
stamp="$venv/.interop-requirements.sha256"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    echo "interop: installing pinned requirements into $venv" >&2
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
        "$venv/bin/python" -m pip install --quiet --requirement "$requirements"
    echo "$want" >"$stamp"
fi

if [ -z "${REKOR_SERVER_BIN:-}" ]; then
    echo "interop: building rekor-server-posix" >&2
    (cd "$root" && "$cargo" build --quiet -p rekor-server-posix)
    target_dir="$(cd "$root" && "$cargo" metadata --format-version 1 --no-deps |
        "$venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
    REKOR_SERVER_BIN="$target_dir/debug/rekor-server-posix"
fi
if [ ! -x "$REKOR_SERVER_BIN" ]; then
    echo "interop: server binary $REKOR_SERVER_BIN is missing or not executable" >&2
    exit 1
fi
export REKOR_SERVER_BIN
echo "interop: setup took $((SECONDS - started))s; testing $REKOR_SERVER_BIN" >&2

cd "$here"
export PYTHONDONTWRITEBYTECODE=1
exec "$venv/bin/python" -m pytest -c "$here/pytest.ini" --rootdir "$here" "$@"
