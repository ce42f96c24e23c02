"""Writes the seed inputs of fuzz/corpus/ from the repository's own test data (see README.md).

Run from anywhere: python3 fuzz/make_seeds.py. Deterministic: it reads files and writes files.
"""
import base64
import json
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TD_E = ROOT + "/crates/entries/tests/testdata/"
TD_N = ROOT + "/crates/note/tests/testdata/"
TD_A = ROOT + "/crates/api/tests/testdata/"
OUT = ROOT + "/fuzz/corpus/"

def put(target, name, data):
    d = OUT + target
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    open(os.path.join(d, name), "wb").write(data)

def rd(p): return open(p, "rb").read()

# tile_path
for i, p in enumerate(["tile/0/000", "tile/0/x001/234.p/7", "tile/entries/000.p/5", "tile/entries/x001/234",
                       "tile/3/x123/x456/789", "tile/63/x018/x446/x744/x073/x709/x551/615.p/255", "tile/1/001.p/1"]):
    put("tile_path", f"seed-{i}", p)

# entry_bundle
def bundle(entries):
    return b"".join(struct.pack(">H", len(e)) + e for e in entries)
leaf = rd(TD_E + "golden_hashedrekord_p256_pubkey.json").strip()
put("entry_bundle", "one", bundle([leaf]))
put("entry_bundle", "three", bundle([b'{"entry":0}', b"", b'{"entry":2}']))
put("entry_bundle", "full", bundle([b"%d" % i for i in range(256)]))

# checkpoint
put("checkpoint", "body", rd(TD_N + "checkpoint-body.txt"))
put("checkpoint", "extension", "log2026-1.example.dev\n18446744073709551615\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\nextension line\n")
put("checkpoint", "empty", "example.com/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n")

# signed_note
for k in ["ed25519", "p256", "p384"]:
    put("signed_note", k, rd(TD_N + f"openssl-{k}.note"))
ed = rd(TD_N + "openssl-ed25519.note").decode()
p256 = rd(TD_N + "openssl-p256.note").decode()
sig_p256 = p256.split("\n\n", 1)[1]
put("signed_note", "two-signatures", ed + sig_p256)
put("signed_note", "unknown-key", "hello\n\n\u2014 other.example AAAAAGhlbGxv\n")

# protobuf helpers
def varint(n):
    out = b""
    while True:
        b = n & 0x7f; n >>= 7
        if n: out += bytes([b | 0x80])
        else: return out + bytes([b])
def field(num, data):  # length-delimited
    if isinstance(data, str): data = data.encode()
    return varint(num << 3 | 2) + varint(len(data)) + data
def enum(num, v): return varint(num << 3) + varint(v)

DETAILS = {"PKIX_ECDSA_P256_SHA_256": 5, "PKIX_ECDSA_P384_SHA_384": 12, "PKIX_ECDSA_P521_SHA_512": 13,
           "PKIX_RSA_PKCS1V15_2048_SHA256": 9, "PKIX_RSA_PKCS1V15_3072_SHA256": 10,
           "PKIX_RSA_PKCS1V15_4096_SHA256": 11, "PKIX_ED25519_PH": 8}

def verifier_pb(v):
    out = b""
    if "publicKey" in v: out += field(1, field(1, base64.b64decode(v["publicKey"]["rawBytes"])))
    if "x509Certificate" in v: out += field(2, field(1, base64.b64decode(v["x509Certificate"]["rawBytes"])))
    out += enum(3, DETAILS[v["keyDetails"]])
    return out

requests = {}
# hashedrekord requests rebuilt from the entries goldens: the request holds the digest and the signature.
for name in sorted(os.listdir(TD_E)):
    if name.startswith("golden_hashedrekord_"):
        e = json.loads(rd(TD_E + name))["spec"]["hashedRekordV002"]
        requests[name[len("golden_"):-5]] = {"hashedRekordRequestV002": {"digest": e["data"]["digest"], "signature": e["signature"]}}
requests["staging_cert"] = json.loads(rd(TD_A + "staging-create-entry-request.json"))
# dsse: the envelope from the fixtures (payload, type, signatures), verifiers from the golden.
d = json.loads(rd(TD_E + "golden_dsse_p256_p384_rsa2048.json"))["spec"]["dsseV002"]
payload = rd(TD_E + "dsse_payload.json")
sigs = [s["content"] for s in d["signatures"]]
requests["dsse_p256_p384_rsa2048"] = {"dsseRequestV002": {
    "envelope": {"payload": base64.b64encode(payload).decode(), "payloadType": "application/vnd.in-toto+json",
                 "signatures": [{"sig": s, "keyid": ""} for s in sigs]},
    "verifiers": [s["verifier"] for s in d["signatures"]]}}

def request_pb(r):
    if "hashedRekordRequestV002" in r:
        h = r["hashedRekordRequestV002"]
        sig = field(1, base64.b64decode(h["signature"]["content"])) + field(2, verifier_pb(h["signature"]["verifier"]))
        return field(1, field(1, base64.b64decode(h["digest"])) + field(2, sig))
    dq = r["dsseRequestV002"]
    env = dq["envelope"]
    e = field(1, base64.b64decode(env["payload"])) + field(2, env["payloadType"])
    for s in env["signatures"]:
        e += field(3, field(1, base64.b64decode(s["sig"])) + (field(2, s["keyid"]) if s["keyid"] else b""))
    body = field(1, e) + b"".join(field(2, verifier_pb(v)) for v in dq["verifiers"])
    return field(2, body)

for name, r in requests.items():
    put("create_entry_json", name, json.dumps(r, indent=None, separators=(",", ":")))
    put("create_entry_protobuf", name, request_pb(r))

# log_keys: byte 0 even -> PEM private key, odd -> DER SPKI
for k in ["ed25519.pem", "p256.pem", "p256-sec1.pem", "p384.pem", "p384-sec1.pem", "p256-enc.pem"]:
    put("log_keys", "pem-" + k.replace(".pem", ""), b"\x00" + rd(TD_N + k))
for line in rd(TD_N + "expected.txt").decode().splitlines():
    k, _, _, spki = line.split()
    put("log_keys", "spki-" + k, b"\x01" + base64.b64decode(spki))

# client_keys: byte 0 even -> SPKI, odd -> certificate; 2-byte length; key; signature bytes
for k in ["p256.pub.der", "p384.pub.der", "p521.pub.der", "rsa2048.pub.der"]:
    der = rd(TD_E + k)
    put("client_keys", "spki-" + k[:-8], b"\x00" + struct.pack(">H", len(der)) + der + rd(TD_E + "artifact." + k.split(".")[0] + ".sig"))
for k in ["p256.crt.der", "rsa2048.crt.der"]:
    der = rd(TD_E + k)
    put("client_keys", "cert-" + k[:-8], b"\x01" + struct.pack(">H", len(der)) + der)
# an Ed25519 SPKI (from the note fixtures)
ed_spki = base64.b64decode(rd(TD_N + "expected.txt").decode().split()[3])
put("client_keys", "spki-ed25519", b"\x00" + struct.pack(">H", len(ed_spki)) + ed_spki + b"\x00" * 64)
