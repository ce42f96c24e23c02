//! The log's key in AWS KMS (`--signer-kmskey awskms://127.0.0.1:PORT/KEY`), against moto's
//! KMS on 127.0.0.1.
//!
//! The test creates the key itself with a raw `CreateKey` request (moto does not check
//! signatures, so the test's own requests carry a placeholder one; the server's are SigV4,
//! checked against AWS's and botocore's vectors in `rekor-server`'s unit tests), reads its
//! public key with `GetPublicKey`, and checks every checkpoint by hand: the signed-note key ID
//! SHA-256(SPKI)[:4] and the ECDSA signature over the note text, with `p256`/`p384` directly.
//!
//! Skipped with a message when moto is not installed (`tests/emulators/setup.sh`), unless
//! `REKOR_REQUIRE_EMULATORS=1`.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rekor_emulators::aws::{MOTO_ACCESS_KEY_ID, MOTO_REGION, MotoS3};
use rekor_testkit::fixtures::artifact;
use rekor_testkit::{
    ClientKey, Error, GrpcClient, HttpClient, KeyKind, ServerConfig, ServerProcess, TrustedLog,
    verify_entry,
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// The secret key the server is given (moto accepts any); it must never appear in its output.
const SECRET: &str = "rekor-test-secret-never-printed";

/// moto (which serves every service on one port), or `None` when it is not installed.
fn moto() -> anyhow::Result<Option<MotoS3>> {
    match MotoS3::start() {
        Ok(moto) => Ok(Some(moto)),
        Err(e) if rekor_emulators::skip_or_fail(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// One KMS JSON request to moto, over a plain socket, and its JSON answer.
fn kms(port: u16, operation: &str, body: &Value) -> anyhow::Result<Value> {
    let body = body.to_string();
    let mut stream = TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_secs(10),
    )?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    // moto takes the region from the credential scope and checks nothing else.
    let request = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Type: application/x-amz-json-1.1\r\nX-Amz-Target: TrentService.{operation}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential={MOTO_ACCESS_KEY_ID}/20240301/{MOTO_REGION}/kms/aws4_request, SignedHeaders=host, Signature=00\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let raw = String::from_utf8(raw)?;
    let (head, answer) = raw.split_once("\r\n\r\n").context("malformed answer")?;
    let status = head.split(' ').nth(1).context("no status")?;
    ensure!(status == "200", "{operation}: HTTP {status}: {answer}");
    Ok(serde_json::from_str(answer)?)
}

/// Creates a signing key of `spec` and returns its key ID and DER SubjectPublicKeyInfo.
fn create_key(port: u16, spec: &str) -> anyhow::Result<(String, Vec<u8>)> {
    let created = kms(
        port,
        "CreateKey",
        &json!({"KeySpec": spec, "KeyUsage": "SIGN_VERIFY", "Description": "rekor test log"}),
    )?;
    let key_id = created["KeyMetadata"]["KeyId"]
        .as_str()
        .context("no KeyId")?
        .to_owned();
    let public = kms(port, "GetPublicKey", &json!({ "KeyId": key_id }))?;
    let spki = STANDARD.decode(public["PublicKey"].as_str().context("no PublicKey")?)?;
    Ok((key_id, spki))
}

fn server(storage: &std::path::Path, uri: &str) -> ServerConfig {
    ServerConfig::new(env!("CARGO_BIN_EXE_rekor-server-posix"), storage)
        .with_args(["--signer-kmskey", uri])
        .with_env("AWS_ACCESS_KEY_ID", MOTO_ACCESS_KEY_ID)
        .with_env("AWS_SECRET_ACCESS_KEY", SECRET)
        .with_env("AWS_SESSION_TOKEN", "")
        .with_env("AWS_REGION", MOTO_REGION)
}

/// Checks a checkpoint note by hand: one signature line named `origin`, key ID
/// SHA-256(SPKI)[:4] (ECDSA, as rekor-tiles), and an ECDSA signature over the note text.
fn check_note(note: &[u8], origin: &str, spki: &[u8]) -> anyhow::Result<()> {
    let note = std::str::from_utf8(note)?;
    let (body, signatures) = note.split_once("\n\n").context("no blank line")?;
    ensure!(
        body.starts_with(&format!("{origin}\n")),
        "origin line: {body:?}"
    );
    let text = format!("{body}\n");
    let lines: Vec<&str> = signatures.lines().collect();
    let [line] = lines[..] else {
        bail!("{} signature lines:\n{note}", lines.len());
    };
    let blob = STANDARD.decode(
        line.strip_prefix(&format!("\u{2014} {origin} "))
            .context("signature line from another key")?,
    )?;
    ensure!(blob.len() > 4, "signature line too short");
    let (key_id, signature) = blob.split_at(4);
    let expected_id = &Sha256::digest(spki)[..4];
    ensure!(
        key_id == expected_id,
        "key ID {key_id:02x?} != {expected_id:02x?}"
    );
    let p256 = {
        use p256::ecdsa::signature::Verifier as _;
        use p256::pkcs8::DecodePublicKey as _;
        p256::ecdsa::VerifyingKey::from_public_key_der(spki)
            .ok()
            .map(|key| {
                p256::ecdsa::DerSignature::from_bytes(signature)
                    .is_ok_and(|sig| key.verify(text.as_bytes(), &sig).is_ok())
            })
    };
    let verified = match p256 {
        Some(verified) => verified,
        None => {
            use p384::ecdsa::signature::Verifier as _;
            use p384::pkcs8::DecodePublicKey as _;
            let key = p384::ecdsa::VerifyingKey::from_public_key_der(spki)?;
            let sig = p384::ecdsa::DerSignature::from_bytes(signature)?;
            key.verify(text.as_bytes(), &sig).is_ok()
        }
    };
    ensure!(
        verified,
        "the signature does not verify over the note text:\n{note}"
    );
    Ok(())
}

/// Starts the log on `uri`, writes entries over HTTP and gRPC, and checks every checkpoint and
/// the log ID by hand against `spki`.
async fn serve_and_check(uri: &str, spki: &[u8], label: &str) -> anyhow::Result<()> {
    let storage = tempfile::tempdir()?;
    let config = server(storage.path(), uri);
    let origin = config.hostname.clone();
    let mut server = tokio::task::spawn_blocking(move || ServerProcess::start(&config)).await??;
    let trust = TrustedLog::from_public_key_der(spki, &origin)?;
    let expected_log_id: [u8; 32] = Sha256::digest(spki).into();
    ensure!(trust.log_id == expected_log_id, "log ID rule");

    let http = HttpClient::new(server.listeners().http)?;
    let grpc = GrpcClient::connect(server.listeners().grpc).await?;
    let client = ClientKey::generate(KeyKind::EcdsaP256)?;
    for n in 0..4 {
        let submission = client.hashed_rekord(&artifact(&format!("awskms-{label}"), n)?)?;
        let entry = if n % 2 == 1 {
            grpc.create_entry_for(&submission).await?
        } else {
            http.create_entry(&submission).await?
        };
        verify_entry(&trust, &submission, &entry)?;
        ensure!(entry.log_id == expected_log_id, "logId.keyId");
        let proof = entry.proof.context("no inclusion proof")?;
        check_note(proof.checkpoint.as_bytes(), &origin, spki)
            .context("checkpoint returned with an entry")?;
    }
    check_note(&http.checkpoint().await?, &origin, spki).context("published checkpoint")?;
    ensure!(
        server.logged_errors().is_empty(),
        "errors logged: {:?}",
        server.logged_errors()
    );
    let status = tokio::task::spawn_blocking(move || server.stop()).await??;
    ensure!(status.success(), "exit status {status}");
    Ok(())
}

#[tokio::test]
async fn a_kms_p256_key_signs_every_checkpoint() -> anyhow::Result<()> {
    let Some(moto) = moto()? else {
        return Ok(());
    };
    let (key_id, spki) = create_key(moto.port(), "ECC_NIST_P256")?;
    let uri = format!("awskms://127.0.0.1:{}/{key_id}", moto.port());
    serve_and_check(&uri, &spki, "p256").await.context("P-256")
}

#[tokio::test]
async fn a_kms_p384_key_named_by_alias_signs_every_checkpoint() -> anyhow::Result<()> {
    let Some(moto) = moto()? else {
        return Ok(());
    };
    let (key_id, spki) = create_key(moto.port(), "ECC_NIST_P384")?;
    kms(
        moto.port(),
        "CreateAlias",
        &json!({"AliasName": "alias/rekor-log", "TargetKeyId": key_id}),
    )?;
    let uri = format!("awskms://127.0.0.1:{}/alias/rekor-log", moto.port());
    serve_and_check(&uri, &spki, "p384").await.context("P-384")
}

/// The server refuses to start, and its stderr names the flag, AWS KMS and every `wanted` part.
fn expect_refused(config: &ServerConfig, wanted: &[&str]) -> anyhow::Result<()> {
    match ServerProcess::start(config) {
        Ok(_) => bail!("the server started with {:?}", config.extra_args),
        Err(Error::ExitedEarly { status, stderr }) => {
            ensure!(!status.contains("exit status: 0"), "exit status {status}");
            for want in ["--signer-kmskey", "awskms"].iter().chain(wanted) {
                ensure!(stderr.contains(want), "stderr lacks {want:?}:\n{stderr}");
            }
            ensure!(
                !stderr.contains(SECRET),
                "the secret key is printed:\n{stderr}"
            );
            Ok(())
        }
        Err(other) => bail!("{other}"),
    }
}

#[test]
fn unknown_keys_unusable_keys_and_an_unreachable_kms_stop_the_server_at_start() -> anyhow::Result<()>
{
    let Some(moto) = moto()? else {
        return Ok(());
    };
    let storage = tempfile::tempdir()?;
    let port = moto.port();

    let missing = format!("awskms://127.0.0.1:{port}/alias/no-such-key");
    expect_refused(
        &server(storage.path(), &missing),
        &[
            "GetPublicKey",
            "alias/no-such-key",
            "HTTP 400",
            "NotFoundException",
        ],
    )
    .context("unknown alias")?;

    let created = kms(
        port,
        "CreateKey",
        &json!({"KeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY"}),
    )?;
    let rsa = created["KeyMetadata"]["KeyId"]
        .as_str()
        .context("no KeyId")?;
    expect_refused(
        &server(storage.path(), &format!("awskms://127.0.0.1:{port}/{rsa}")),
        &["RSA_2048"],
    )
    .context("RSA key")?;

    // Nothing listens on a port taken from the system and released.
    let closed = rekor_emulators::process::free_port()?;
    let unreachable = format!("awskms://127.0.0.1:{closed}/alias/rekor-log");
    expect_refused(
        &server(storage.path(), &unreachable),
        &[&format!("http://127.0.0.1:{closed}/"), "onnect"],
    )
    .context("unreachable KMS")?;

    let no_credentials =
        ServerConfig::new(env!("CARGO_BIN_EXE_rekor-server-posix"), storage.path())
            .with_args(["--signer-kmskey", &missing])
            .with_env("AWS_ACCESS_KEY_ID", "")
            .with_env("AWS_SECRET_ACCESS_KEY", "")
            .with_env("AWS_REGION", MOTO_REGION);
    expect_refused(&no_credentials, &["AWS_ACCESS_KEY_ID"]).context("no credentials")?;

    expect_refused(
        &server(storage.path(), "awskms://127.0.0.1:1"),
        &["invalid awskms key URI"],
    )
    .context("malformed URI")?;
    Ok(())
}
