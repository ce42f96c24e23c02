#!/usr/bin/env bash
# Regenerates the key, certificate and signature fixtures with the openssl CLI.
# Run from this directory: ./make_fixtures.sh  (then: python3 gen_golden.py)
# Keys are test-only; they sign nothing outside these tests.
set -euo pipefail
cd "$(dirname "$0")"

printf 'rekor-entries golden artifact\n' > artifact.txt
printf '{"_type":"https://in-toto.io/Statement/v1","subject":[]}' > dsse_payload.json
dsse_type='application/vnd.in-toto+json'
payload_len=$(wc -c < dsse_payload.json | tr -d ' ')
# DSSEv1 pre-authentication encoding: "DSSEv1" SP len(type) SP type SP len(payload) SP payload
{ printf 'DSSEv1 %d %s %d ' "${#dsse_type}" "$dsse_type" "$payload_len"; cat dsse_payload.json; } > dsse_pae.bin

ec_key() { # name curve
  openssl genpkey -algorithm EC -pkeyopt "ec_paramgen_curve:$2" -pkeyopt ec_param_enc:named_curve -out "$1.key.pem"
  openssl pkey -in "$1.key.pem" -pubout -outform DER -out "$1.pub.der"
}
rsa_key() { # name bits
  openssl genpkey -quiet -algorithm RSA -pkeyopt "rsa_keygen_bits:$2" -out "$1.key.pem"
  openssl pkey -in "$1.key.pem" -pubout -outform DER -out "$1.pub.der"
  openssl pkcs8 -topk8 -nocrypt -in "$1.key.pem" -outform DER -out "$1.key.pk8"
}
cert() { # name digest
  openssl req -new -x509 -key "$1.key.pem" -"$2" -days 3650 -subj "/CN=rekor-entries test $1" -outform DER -out "$1.crt.der"
}

ec_key p256 P-256
ec_key p384 P-384
ec_key p521 P-521
rsa_key rsa2048 2048
rsa_key rsa3072 3072
rsa_key rsa4096 4096
cert p256 sha256
cert rsa2048 sha256

# hashedrekord signatures over artifact.txt (ECDSA signatures are ASN.1 DER).
openssl dgst -sha256 -sign p256.key.pem -out artifact.p256.sig artifact.txt
openssl dgst -sha384 -sign p384.key.pem -out artifact.p384.sig artifact.txt
openssl dgst -sha512 -sign p521.key.pem -out artifact.p521.sig artifact.txt
for b in 2048 3072 4096; do
  openssl dgst -sha256 -sign "rsa$b.key.pem" -out "artifact.rsa$b.sig" artifact.txt
done

# DSSE signatures over the PAE.
openssl dgst -sha256 -sign p256.key.pem -out dsse.p256.sig dsse_pae.bin
openssl dgst -sha384 -sign p384.key.pem -out dsse.p384.sig dsse_pae.bin
openssl dgst -sha256 -sign rsa2048.key.pem -out dsse.rsa2048.sig dsse_pae.bin

# Only the RSA PKCS#8 keys are read by the tests (aws-lc-rs cannot generate RSA keys here).
rm -f ./*.key.pem
