//! Compiles the contract in `proto/` with protox (no system protoc) into
//! tonic/prost code and a descriptor set for server reflection. The few
//! Google API definitions it imports are vendored in `third_party/googleapis`.

use std::{env, fs, path::PathBuf};

const PROTO_DIR: &str = "proto/bank/customerknowledge/v1";
const GOOGLEAPIS: &str = "third_party/googleapis";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut files: Vec<PathBuf> = fs::read_dir(PROTO_DIR)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|path| path.extension().is_some_and(|ext| ext == "proto"));
    files.sort();
    println!("cargo:rerun-if-changed={PROTO_DIR}");
    println!("cargo:rerun-if-changed={GOOGLEAPIS}");
    // sqlx::migrate! embeds migrations/ at compile time; without this a new
    // migration file is not seen by an incremental build.
    println!("cargo:rerun-if-changed=migrations");
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let mut compiler = protox::Compiler::new(["proto", GOOGLEAPIS])?;
    compiler
        .include_source_info(true)
        .include_imports(true)
        .open_files(&files)?;
    let fds = compiler.file_descriptor_set();
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    // Encoded by protox itself, not through prost_types, which would drop the
    // custom options (google.api.resource, field_behavior) reflection serves.
    fs::write(
        out_dir.join("customerknowledge_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        // Maps encode in key order, so a request's fingerprint for idempotency
        // does not depend on hash order.
        .btree_map(".")
        // Malformed requests are INVALID_ARGUMENT (src/codec.rs).
        .codec_path("crate::codec::Codec")
        // google.rpc.Status (an Operation's error) is tonic-types' own, the
        // type the error details are already built with.
        .extern_path(".google.rpc", "::tonic_types::pb")
        .compile_fds(fds)?;
    Ok(())
}
