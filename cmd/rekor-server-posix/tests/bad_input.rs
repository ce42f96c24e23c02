//! A battery of bad requests, each with its exact HTTP status and error body, and its gRPC code
//! where the transport can carry the same mistake. Afterwards the checkpoints are unchanged,
//! nothing was logged at ERROR, and both servers still take valid writes.

use anyhow::{Context as _, ensure};
use prost::Message as _;
use rekor_api::rekor::v2::create_entry_request::Spec;
use rekor_api::rekor::v2::{CreateEntryRequest, EntryBundleRequest, TileRequest};
use rekor_testkit::fixtures::{artifact, with_unknown_field};
use rekor_testkit::{
    ClientKey, KeyKind, LogEntry, ServerConfig, Submission, TestLog, audit, verify_entry,
};
use serde_json::{Value, json};
use tonic::Code;

/// The request body limit given to the second server.
const SMALL_BODY_LIMIT: usize = 4096;

/// Failures are collected, so one run reports every case that went wrong.
#[derive(Default)]
struct Battery {
    cases: usize,
    failures: Vec<String>,
}

impl Battery {
    fn record(&mut self, name: &str, outcome: anyhow::Result<()>) {
        self.cases += 1;
        if let Err(e) = outcome {
            self.failures.push(format!("{name}: {e:#}"));
        }
    }

    /// POSTs `body` to the entries endpoint; expects `status` and the JSON error body with `code`.
    async fn http(&mut self, log: &TestLog, name: &str, body: Vec<u8>, status: u16, code: Code) {
        let outcome = async {
            log.http
                .post_entry(body)
                .await?
                .expect_api_error(status, code)?;
            anyhow::Ok(())
        }
        .await;
        self.record(&format!("HTTP {name}"), outcome);
    }

    /// Sends `request` over gRPC; expects `code`.
    async fn grpc(&mut self, log: &TestLog, name: &str, request: CreateEntryRequest, code: Code) {
        let outcome = match log.grpc.create_entry(request).await {
            Ok(_) => Err(anyhow::anyhow!("accepted; want {code:?}")),
            Err(status) if status.code() == code => Ok(()),
            Err(status) => Err(anyhow::anyhow!("got {status:?}; want {code:?}")),
        };
        self.record(&format!("gRPC {name}"), outcome);
    }

    /// Sends raw message bytes to gRPC `CreateEntry`; expects `code`.
    async fn grpc_raw(&mut self, log: &TestLog, name: &str, message: Vec<u8>, code: Code) {
        let outcome = match log.grpc.create_entry_raw(message).await {
            Ok(_) => Err(anyhow::anyhow!("accepted; want {code:?}")),
            Err(status) if status.code() == code => Ok(()),
            Err(status) => Err(anyhow::anyhow!("got {status:?}; want {code:?}")),
        };
        self.record(&format!("gRPC raw {name}"), outcome);
    }

    /// One entry submitted both ways: protojson over HTTP (400) and protobuf over gRPC
    /// (InvalidArgument).
    async fn both(&mut self, log: &TestLog, name: &str, submission: &Submission) {
        self.http(
            log,
            name,
            submission.request_json_text().into_bytes(),
            400,
            Code::InvalidArgument,
        )
        .await;
        match submission.request_proto() {
            Ok(request) => self.grpc(log, name, request, Code::InvalidArgument).await,
            Err(e) => self.record(&format!("gRPC {name}"), Err(e.into())),
        }
    }

    /// GETs `path` (raw, unnormalised, when `raw`); expects a 404 JSON error that leaks no key.
    async fn not_found(&mut self, log: &TestLog, path: &str, raw: bool) {
        let outcome = async {
            let reply = if raw {
                log.http.raw_get(path).await?
            } else {
                log.http.get(path).await?
            };
            ensure!(
                !reply.text().contains("PRIVATE KEY"),
                "the body leaks a private key"
            );
            reply.expect_api_error(404, Code::NotFound)?;
            anyhow::Ok(())
        }
        .await;
        self.record(
            &format!("GET {path}{}", if raw { " (raw)" } else { "" }),
            outcome,
        );
    }
}

/// `value` with the JSON pointer `at` replaced by `new`.
fn with(mut value: Value, at: &str, new: Value) -> Value {
    if let Some(slot) = value.pointer_mut(at) {
        *slot = new;
    }
    value
}

/// `value` without the member `key` of the object at JSON pointer `at`.
fn without(mut value: Value, at: &str, key: &str) -> Value {
    if let Some(object) = value.pointer_mut(at).and_then(Value::as_object_mut) {
        object.remove(key);
    }
    value
}

fn bytes(value: &Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

/// `submission` with other fields.
fn changed(submission: &Submission, edit: impl FnOnce(&mut Submission)) -> Submission {
    let mut copy = submission.clone();
    edit(&mut copy);
    copy
}

/// The request with `spec` stripped of one part, for the "missing field" cases over gRPC.
fn proto_without(request: &CreateEntryRequest, part: &str) -> CreateEntryRequest {
    let mut request = request.clone();
    if let Some(Spec::HashedRekordRequestV002(hashed)) = &mut request.spec {
        match part {
            "signature" => hashed.signature = None,
            "verifier" => {
                if let Some(signature) = &mut hashed.signature {
                    signature.verifier = None;
                }
            }
            "verifier key" => {
                if let Some(v) = hashed.signature.as_mut().and_then(|s| s.verifier.as_mut()) {
                    v.verifier = None;
                }
            }
            "digest" => hashed.digest.clear(),
            _ => {}
        }
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_exact_errors_and_change_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let binary = env!("CARGO_BIN_EXE_rekor-server-posix");
    let config_a = ServerConfig::new(binary, dir.path().join("default"));
    let config_b = ServerConfig::new(binary, dir.path().join("restricted")).with_args([
        "--client-signing-algorithms".to_string(),
        "ecdsa-sha2-256-nistp256".to_string(),
        "--max-request-body-size".to_string(),
        SMALL_BODY_LIMIT.to_string(),
    ]);
    let (a, b) = tokio::try_join!(TestLog::start(&config_a), TestLog::start(&config_b))?;

    let p256 = ClientKey::generate(KeyKind::EcdsaP256)?;
    let p384 = ClientKey::generate(KeyKind::EcdsaP384)?;
    let ed25519ph = ClientKey::generate(KeyKind::Ed25519ph)?;
    let ed25519 = ClientKey::generate(KeyKind::Ed25519)?;
    let good = p256.hashed_rekord(&artifact("bad input", 0)?)?;
    let other = p256.hashed_rekord(&artifact("bad input", 1)?)?;

    // Give each log an entry first, so "unchanged" means something, and prove the controls:
    // on the restricted server a P-256 entry goes in over HTTP, and one over gRPC as raw bytes
    // with a small unknown field (so the oversize case below fails only for its size).
    let seed_a = p256.hashed_rekord(&artifact("seed", 0)?)?;
    verify_entry(&a.trust, &seed_a, &a.http.create_entry(&seed_a).await?)?;
    let seed_b = p256.hashed_rekord(&artifact("seed", 1)?)?;
    verify_entry(&b.trust, &seed_b, &b.http.create_entry(&seed_b).await?)?;
    let seed_b_raw = p256.hashed_rekord(&artifact("seed", 2)?)?;
    let answer = b
        .grpc
        .create_entry_raw(with_unknown_field(
            seed_b_raw.request_proto()?.encode_to_vec(),
            100,
        ))
        .await
        .context("control: a valid raw gRPC request with an unknown field")?;
    let entry = rekor_api::rekor::v1::TransparencyLogEntry::decode(answer.as_slice())?;
    verify_entry(&b.trust, &seed_b_raw, &LogEntry::from_proto(entry)?)?;
    let checkpoint_a = a.http.checkpoint().await?;
    let checkpoint_b = b.http.checkpoint().await?;

    let mut battery = Battery::default();
    let ia = Code::InvalidArgument;
    let json = good.request_json();
    let text = good.request_json_text();
    let request = good.request_proto()?;
    let hr = "/hashedRekordRequestV002";
    let sig = "/hashedRekordRequestV002/signature";
    let ver = "/hashedRekordRequestV002/signature/verifier";

    // Syntax.
    battery
        .http(
            &a,
            "malformed JSON",
            br#"{"hashedRekordRequestV002": {"digest": "#.to_vec(),
            400,
            ia,
        )
        .await;
    battery
        .http(&a, "not JSON", b"hello".to_vec(), 400, ia)
        .await;
    battery
        .http(
            &a,
            "trailing garbage",
            format!("{text}xyz").into_bytes(),
            400,
            ia,
        )
        .await;
    battery
        .http(
            &a,
            "two JSON values",
            format!("{text}{text}").into_bytes(),
            400,
            ia,
        )
        .await;
    battery
        .http(&a, "a JSON array", b"[]".to_vec(), 400, ia)
        .await;
    let mut unknown = json.clone();
    unknown["bogus"] = json!(1);
    battery
        .http(&a, "unknown top-level field", bytes(&unknown), 400, ia)
        .await;
    let mut nested = json.clone();
    nested["hashedRekordRequestV002"]["signature"]["bogus"] = json!("x");
    battery
        .http(&a, "unknown nested field", bytes(&nested), 400, ia)
        .await;
    battery
        .http(
            &a,
            "digest is a number",
            bytes(&with(json.clone(), &format!("{hr}/digest"), json!(5))),
            400,
            ia,
        )
        .await;
    battery
        .http(
            &a,
            "signature is a string",
            bytes(&with(json.clone(), sig, json!("AAAA"))),
            400,
            ia,
        )
        .await;
    battery
        .http(
            &a,
            "keyDetails is a boolean",
            bytes(&with(
                json.clone(),
                &format!("{ver}/keyDetails"),
                json!(true),
            )),
            400,
            ia,
        )
        .await;
    battery
        .http(
            &a,
            "digest is not base64",
            bytes(&with(json.clone(), &format!("{hr}/digest"), json!("!!!*"))),
            400,
            ia,
        )
        .await;
    battery
        .http(
            &a,
            "unknown keyDetails name",
            bytes(&with(
                json.clone(),
                &format!("{ver}/keyDetails"),
                json!("PKIX_NOPE"),
            )),
            400,
            ia,
        )
        .await;
    let mut two_specs = json.clone();
    two_specs["dsseRequestV002"] = json!({});
    battery
        .http(&a, "both oneof members", bytes(&two_specs), 400, ia)
        .await;

    // No spec.
    battery.http(&a, "empty body", Vec::new(), 400, ia).await;
    battery
        .http(&a, "empty request", b"{}".to_vec(), 400, ia)
        .await;
    battery
        .http(
            &a,
            "null spec",
            br#"{"hashedRekordRequestV002": null}"#.to_vec(),
            400,
            ia,
        )
        .await;
    battery
        .grpc(&a, "empty request", CreateEntryRequest { spec: None }, ia)
        .await;
    battery
        .grpc_raw(&a, "zero-length message", Vec::new(), ia)
        .await;

    // Missing parts.
    battery
        .http(
            &a,
            "no signature",
            bytes(&without(json.clone(), hr, "signature")),
            400,
            ia,
        )
        .await;
    battery
        .grpc(&a, "no signature", proto_without(&request, "signature"), ia)
        .await;
    battery
        .http(
            &a,
            "no verifier",
            bytes(&without(json.clone(), sig, "verifier")),
            400,
            ia,
        )
        .await;
    battery
        .grpc(&a, "no verifier", proto_without(&request, "verifier"), ia)
        .await;
    battery
        .http(
            &a,
            "no public key",
            bytes(&without(json.clone(), ver, "publicKey")),
            400,
            ia,
        )
        .await;
    battery
        .grpc(
            &a,
            "no public key",
            proto_without(&request, "verifier key"),
            ia,
        )
        .await;
    battery
        .http(
            &a,
            "no digest",
            bytes(&without(json.clone(), hr, "digest")),
            400,
            ia,
        )
        .await;
    battery
        .grpc(&a, "no digest", proto_without(&request, "digest"), ia)
        .await;
    battery
        .both(
            &a,
            "empty signature",
            &changed(&good, |s| s.signature.clear()),
        )
        .await;

    // Values.
    battery
        .both(
            &a,
            "SHA-384 digest for a P-256 key",
            &changed(&good, |s| {
                s.digest = KeyKind::EcdsaP384.digest(&s.artifact);
            }),
        )
        .await;
    battery
        .both(
            &a,
            "signature over another artifact",
            &changed(&good, |s| {
                s.signature.clone_from(&other.signature);
            }),
        )
        .await;
    battery
        .both(
            &a,
            "digest of another artifact",
            &changed(&good, |s| s.digest.clone_from(&other.digest)),
        )
        .await;
    battery
        .both(
            &a,
            "corrupted signature",
            &changed(&good, |s| {
                if let Some(last) = s.signature.last_mut() {
                    *last ^= 0x01;
                }
            }),
        )
        .await;
    battery
        .both(
            &a,
            "signature by another key",
            &changed(&good, |s| {
                s.verifier =
                    rekor_testkit::VerifierMaterial::PublicKey(p384.public_key_der().to_vec());
                s.key_details = KeyKind::EcdsaP256.key_details();
            }),
        )
        .await;
    battery
        .both(
            &a,
            "garbage public key",
            &changed(&good, |s| {
                s.verifier = rekor_testkit::VerifierMaterial::PublicKey(b"not a key".to_vec());
            }),
        )
        .await;
    battery
        .both(
            &a,
            "garbage certificate",
            &changed(&good, |s| {
                s.verifier = rekor_testkit::VerifierMaterial::Certificate(vec![
                    0x30, 0x03, 0x02, 0x01, 0x00, 0xde, 0xad,
                ]);
            }),
        )
        .await;
    battery
        .both(
            &a,
            "a public key given as a certificate",
            &changed(&good, |s| {
                s.verifier =
                    rekor_testkit::VerifierMaterial::Certificate(p256.public_key_der().to_vec());
            }),
        )
        .await;
    battery
        .both(
            &a,
            "P-256 key labelled P-384",
            &changed(&good, |s| {
                s.key_details = KeyKind::EcdsaP384.key_details();
                s.digest = KeyKind::EcdsaP384.digest(&s.artifact);
            }),
        )
        .await;
    let ph = ed25519ph.hashed_rekord(&artifact("bad input", 2)?)?;
    battery
        .both(
            &a,
            "Ed25519 key labelled P-256",
            &changed(&ph, |s| {
                s.key_details = KeyKind::EcdsaP256.key_details();
                s.digest = KeyKind::EcdsaP256.digest(&s.artifact);
            }),
        )
        .await;
    battery
        .both(
            &a,
            "unspecified key details",
            &changed(&good, |s| {
                s.key_details = "PUBLIC_KEY_DETAILS_UNSPECIFIED";
            }),
        )
        .await;
    battery
        .http(
            &a,
            "keyDetails omitted",
            bytes(&without(json.clone(), ver, "keyDetails")),
            400,
            ia,
        )
        .await;
    battery
        .both(
            &a,
            "pure Ed25519 (PKIX_ED25519)",
            &ed25519.hashed_rekord(&artifact("bad input", 3)?)?,
        )
        .await;
    battery
        .both(
            &a,
            "RSA-PSS key details (outside the registry)",
            &changed(&good, |s| {
                s.key_details = "PKIX_RSA_PSS_2048_SHA256";
            }),
        )
        .await;
    battery
        .both(
            &a,
            "deprecated key details",
            &changed(&good, |s| {
                s.key_details = "PKIX_ECDSA_P384_SHA_256";
            }),
        )
        .await;
    let mut unknown_number = request.clone();
    if let Some(Spec::HashedRekordRequestV002(hashed)) = &mut unknown_number.spec
        && let Some(v) = hashed.signature.as_mut().and_then(|s| s.verifier.as_mut())
    {
        v.key_details = 999;
    }
    battery
        .grpc(&a, "undefined key details number", unknown_number, ia)
        .await;
    battery
        .http(
            &a,
            "dsse without an envelope",
            br#"{"dsseRequestV002": {}}"#.to_vec(),
            400,
            ia,
        )
        .await;

    // Configuration of the restricted server: only P-256, small bodies.
    let p384_entry = p384.hashed_rekord(&artifact("bad input", 4)?)?;
    battery
        .both(
            &b,
            "P-384 with only ecdsa-sha2-256-nistp256 allowed",
            &p384_entry,
        )
        .await;
    let oversize = format!("{text}{}", " ".repeat(SMALL_BODY_LIMIT + 1));
    let outcome = async {
        let reply = b
            .http
            .post_entry(oversize.clone())
            .await?
            .expect_api_error(400, ia)?;
        let message = reply.json()?["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        ensure!(
            message.contains(&SMALL_BODY_LIMIT.to_string()),
            "message {message:?} does not name the limit"
        );
        anyhow::Ok(())
    }
    .await;
    battery.record("HTTP body over --max-request-body-size", outcome);
    // The same body under the default 4 MiB limit is fine JSON: only the size is wrong.
    ensure!(rekor_api::create_entry_request_from_json(oversize.as_bytes()).is_ok());
    // tonic refuses an over-limit message before decoding it, with OUT_OF_RANGE.
    battery
        .grpc_raw(
            &b,
            "message over --max-request-body-size",
            with_unknown_field(request.encode_to_vec(), SMALL_BODY_LIMIT + 1),
            Code::OutOfRange,
        )
        .await;

    // Malformed protobuf: tonic's prost codec answers INTERNAL, as gRPC's status code guide
    // (and grpc-go, which rekor-tiles uses) does for a request that does not unmarshal.
    let encoded = request.encode_to_vec();
    battery
        .grpc_raw(&a, "not protobuf", vec![0xff; 8], Code::Internal)
        .await;
    battery
        .grpc_raw(
            &a,
            "truncated message",
            encoded[..encoded.len() - 5].to_vec(),
            Code::Internal,
        )
        .await;
    battery
        .grpc_raw(
            &a,
            "wrong wire type for field 1",
            vec![0x08, 0x01],
            Code::Internal,
        )
        .await;

    // Routes.
    for path in [
        "/api/v2/nope",
        "/api/v1/log/entries",
        "/",
        "/api/v2/tile",
        "/api/v2",
    ] {
        battery.not_found(&a, path, false).await;
    }
    let outcome = async {
        a.http
            .post("/api/v2/entries", "application/json", text.clone())
            .await?
            .expect_api_error(404, Code::NotFound)?;
        anyhow::Ok(())
    }
    .await;
    battery.record("POST /api/v2/entries", outcome);

    // Tile paths that are not canonical, or name objects that do not exist (the log has one
    // entry, so only tile/0/000.p/1 and tile/entries/000.p/1 exist).
    for path in [
        "/api/v2/tile/0/1234",
        "/api/v2/tile/0/000.p/0",
        "/api/v2/tile/0/000.p/256",
        "/api/v2/tile/0/000.p/01",
        "/api/v2/tile/0/000.p/2",
        "/api/v2/tile/00/000.p/1",
        "/api/v2/tile/64/000",
        "/api/v2/tile/0/x000/000.p/1",
        "/api/v2/tile/0/00",
        "/api/v2/tile/0/0000",
        "/api/v2/tile/0/000.p/1/",
        "/api/v2/tile/0//000.p/1",
        "/api/v2/tile/0/-01",
        "/api/v2/tile/0/000",
        "/api/v2/tile/1/000.p/1",
        "/api/v2/tile/entries/000.p/0",
        "/api/v2/tile/entries/x/000",
        "/api/v2/tile/entries/000",
        "/api/v2/tile/entries/001.p/1",
        "/api/v2/tile/data/000.p/1",
        "/api/v2/tile/8/0/000.p/1",
    ] {
        battery.not_found(&a, path, false).await;
    }
    for path in [
        "/api/v2/tile/../checkpoint",
        "/api/v2/tile/0/x001/../000",
        "/api/v2/tile/%2e%2e/checkpoint",
        "/api/v2/tile/..%2fcheckpoint",
        "/api/v2/tile/0/000.p/1%00",
    ] {
        battery.not_found(&a, path, true).await;
    }

    // Private state is not served.
    for path in [
        "/api/v2/tile/.rekor/signer.pem",
        "/.rekor/signer.pem",
        "/api/v2/.rekor/signer.pem",
    ] {
        battery.not_found(&a, path, false).await;
    }
    for path in [
        "/api/v2/tile/../.rekor/signer.pem",
        "/api/v2/tile/entries/../../.rekor/signer.pem",
        "/api/v2/tile/../../.rekor/db",
        "/api/v2/checkpoint/../.rekor/signer.pem",
        "/api/v2/tile/%2e%2e/.rekor/signer.pem",
    ] {
        battery.not_found(&a, path, true).await;
    }
    let mut rekor = a.grpc.rekor();
    for (name, l, n) in [
        (
            "GetTile ../../.rekor/signer.pem",
            0,
            "../../.rekor/signer.pem",
        ),
        ("GetTile 1234", 0, "1234"),
        ("GetTile level 64", 64, "000"),
        ("GetTile 000.p/256", 0, "000.p/256"),
    ] {
        let outcome = match rekor.get_tile(TileRequest { l, n: n.into() }).await {
            Ok(_) => Err(anyhow::anyhow!("served")),
            Err(status) if status.code() == Code::NotFound => Ok(()),
            Err(status) => Err(anyhow::anyhow!("got {status:?}; want NotFound")),
        };
        battery.record(&format!("gRPC {name}"), outcome);
    }
    for n in ["../checkpoint", "../../.rekor/signer.pem", "000.p/0"] {
        let outcome = match rekor
            .get_entry_bundle(EntryBundleRequest { n: n.into() })
            .await
        {
            Ok(_) => Err(anyhow::anyhow!("served")),
            Err(status) if status.code() == Code::NotFound => Ok(()),
            Err(status) => Err(anyhow::anyhow!("got {status:?}; want NotFound")),
        };
        battery.record(&format!("gRPC GetEntryBundle {n}"), outcome);
    }
    // The controls for the read paths: the objects that exist are served.
    a.http
        .tile("tile/0/000.p/1")
        .await
        .context("control tile")?;
    a.http
        .tile("tile/entries/000.p/1")
        .await
        .context("control bundle")?;

    println!(
        "bad-input battery: {} cases, {} failed",
        battery.cases,
        battery.failures.len()
    );
    ensure!(
        battery.failures.is_empty(),
        "{} of {} cases failed:\n{}",
        battery.failures.len(),
        battery.cases,
        battery.failures.join("\n")
    );

    // Nothing changed, nothing was logged as a server error, and valid writes still work:
    // P-384 (refused by the restricted server) is accepted by the default one.
    ensure!(
        a.http.checkpoint().await? == checkpoint_a,
        "the default server's checkpoint changed"
    );
    ensure!(
        b.http.checkpoint().await? == checkpoint_b,
        "the restricted server's checkpoint changed"
    );
    for (name, log) in [("default", &a), ("restricted", &b)] {
        let errors = log.server.logged_errors();
        ensure!(
            errors.is_empty(),
            "the {name} server logged errors:\n{}",
            errors.join("\n")
        );
    }
    let entry = a
        .http
        .create_entry(&p384_entry)
        .await
        .context("valid P-384 write")?;
    verify_entry(&a.trust, &p384_entry, &entry)?;
    let after = p256.hashed_rekord(&artifact("bad input", 5)?)?;
    verify_entry(&a.trust, &after, &a.grpc.create_entry_for(&after).await?)?;
    verify_entry(&b.trust, &good, &b.grpc.create_entry_for(&good).await?)?;
    ensure!(audit(&a.http, &a.trust).await?.checkpoint.size == 3);
    ensure!(audit(&b.http, &b.trust).await?.checkpoint.size == 3);

    tokio::try_join!(a.stop(), b.stop())?;
    Ok(())
}
