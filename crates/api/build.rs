//! Generates the gRPC code from `proto/` with a vendored `protoc`, so a fresh machine
//! needs no system protobuf compiler.
use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build finds protoc through PROTOC; the vendored binary needs nothing installed.
    env::set_var("PROTOC", protoc);
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let files = ["polyhead/v1/inference.proto", "polyhead/v1/registry.proto"].map(|f| root.join(f));
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("polyhead_descriptor.bin"))
        .compile_protos(&files, &[root])?;
    Ok(())
}
