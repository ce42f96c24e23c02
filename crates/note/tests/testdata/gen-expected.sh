#!/usr/bin/env bash
# Computes expected.txt and openssl-*.note from the PEM fixtures with openssl and sha256sum only
# (independent of the crate under test). Run from this directory.
set -euo pipefail
NAME=log.example.dev
ROOT_B64=$(printf 'fixture root' | openssl dgst -sha256 -binary | base64)
TEXT=$(printf '%s\n5\n%s\n' "$NAME" "$ROOT_B64")
printf '%s\n' "$TEXT" > checkpoint-body.txt
: > expected.txt
for key in ed25519 p256 p384; do
  spki_b64=$(openssl pkey -in "$key.pem" -pubout -outform DER | base64 -w0)
  if [ "$key" = ed25519 ]; then
    log_id=$({ printf '%s\n\001' "$NAME"; openssl pkey -in "$key.pem" -pubout -outform DER | tail -c 32; } | sha256sum | cut -c1-64)
    openssl pkeyutl -sign -rawin -inkey "$key.pem" -in checkpoint-body.txt -out sig.bin
  else
    log_id=$(openssl pkey -in "$key.pem" -pubout -outform DER | sha256sum | cut -c1-64)
    digest=sha256; [ "$key" = p384 ] && digest=sha384
    openssl dgst "-$digest" -sign "$key.pem" -out sig.bin checkpoint-body.txt
  fi
  echo "$key $NAME $log_id $spki_b64" >> expected.txt
  line_b64=$({ printf '%s' "${log_id:0:8}" | xxd -r -p; cat sig.bin; } | base64 -w0)
  { cat checkpoint-body.txt; printf '\n\342\200\224 %s %s\n' "$NAME" "$line_b64"; } > "openssl-$key.note"
  rm sig.bin
done
