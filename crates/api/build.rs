//! Generates the protobuf, gRPC and protojson code from `proto/` at the
//! workspace root, without a system `protoc`: `protox` parses the files into
//! a descriptor set, `tonic-prost-build` emits messages and the service, and
//! `pbjson-build` emits protojson `serde` impls from the same descriptors.

use std::error::Error;
use std::path::PathBuf;

use prost::Message as _;

/// Every file we compile, relative to the proto root. Imports of
/// `google/protobuf/*` come from protox's bundled well-known types.
const PROTO_FILES: &[&str] = &[
    "google/api/httpbody.proto",
    "envelope.proto",
    "sigstore_common.proto",
    "sigstore_rekor.proto",
    "sigstore_bundle.proto",
    "sigstore_trustroot.proto",
    "rekor/v2/verifier.proto",
    "rekor/v2/hashedrekord.proto",
    "rekor/v2/dsse.proto",
    "rekor/v2/entry.proto",
    "rekor/v2/rekor_service.proto",
];

/// The Cloud KMS subset `--signer-kmskey gcpkms://` speaks, compiled on its own into
/// `OUT_DIR/gcpkms/`: it stays out of [`PROTO_FILES`]' descriptor set, which the Rekor
/// server offers through gRPC reflection, and gets no protojson.
const KMS_PROTO: &str = "google/cloud/kms/v1/asymmetric_sign.proto";

/// Packages that get protojson impls (well-known types come from pbjson-types).
const JSON_PACKAGES: &[&str] = &[".dev.sigstore", ".google.api", ".io.intoto"];

/// Our own `Timestamp`, because pbjson-types writes `+00:00` instead of `Z`.
const TIMESTAMP: &str = "crate::wkt::Timestamp";

fn main() -> Result<(), Box<dyn Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    println!("cargo:rerun-if-changed={}", proto_root.display());
    println!("cargo:rerun-if-changed=build.rs");

    let files: Vec<PathBuf> = PROTO_FILES.iter().map(|f| proto_root.join(f)).collect();
    let fds = protox::compile(&files, [&proto_root])?;
    let encoded = fds.encode_to_vec();
    std::fs::write(out_dir.join("file_descriptor_set.bin"), &encoded)?;

    tonic_prost_build::configure()
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .extern_path(".google.protobuf.Timestamp", TIMESTAMP)
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;

    pbjson_build::Builder::new()
        .register_descriptors(&encoded)?
        .extern_path(".google.protobuf", "::pbjson_types")
        .extern_path(".google.protobuf.Timestamp", TIMESTAMP)
        .build(JSON_PACKAGES)?;

    let kms_out = out_dir.join("gcpkms");
    std::fs::create_dir_all(&kms_out)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .out_dir(kms_out)
        .compile_fds(protox::compile(
            [proto_root.join(KMS_PROTO)],
            [&proto_root],
        )?)?;

    Ok(())
}
