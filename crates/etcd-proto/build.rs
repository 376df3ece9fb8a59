//! Compiles `proto/` with protox (pure Rust, no system protoc) into prost/tonic code,
//! and generates the proto3 JSON mapping (pbjson) used by the HTTP gateway.

use std::path::PathBuf;

use prost::Message;

const PROTOS: &[&str] = &[
    "etcd/kv.proto",
    "etcd/auth.proto",
    "etcd/rpc.proto",
    "etcd/v3lock.proto",
    "etcd/v3election.proto",
    "pgwarden/raftcmd.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files: Vec<PathBuf> = PROTOS.iter().map(|file| proto_root.join(file)).collect();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let descriptors = protox::compile(&files, [&proto_root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("descriptors.bin");
    std::fs::write(&descriptor_path, descriptors.encode_to_vec())?;

    tonic_prost_build::configure()
        .bytes(".")
        .compile_fds(descriptors.clone())?;

    pbjson_build::Builder::new()
        .register_descriptors(&std::fs::read(&descriptor_path)?)?
        .preserve_proto_field_names()
        // etcd's gateway discards fields it does not know; so do the generated decoders.
        .ignore_unknown_fields()
        .build(&[
            ".etcdserverpb",
            ".mvccpb",
            ".authpb",
            ".v3lockpb",
            ".v3electionpb",
        ])?;
    Ok(())
}
