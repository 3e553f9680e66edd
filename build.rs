//! Compiles the protos with protox (no system `protoc`), generates the Rust code with
//! tonic-prost-build, and writes the encoded descriptor set that reflection serves. It also
//! generates the etcd KV client that the `connectord-bench` load generator drives.

use std::{env, fs, path::PathBuf};

const PROTO_ROOT: &str = "proto";
const PROTO_FILES: &[&str] = &[
    "connectord/v1/connector.proto",
    "connectord/v1/connector_service.proto",
    "connectord/v1/options.proto",
    "connectord/v1/sync_service.proto",
    "google/api/annotations.proto",
    "google/api/http.proto",
];

const ETCD_PROTO_ROOT: &str = "bench/proto";
const ETCD_PROTO_FILES: &[&str] = &["etcd/mvccpb/kv.proto", "etcd/etcdserverpb/rpc.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for file in PROTO_FILES {
        println!("cargo:rerun-if-changed={PROTO_ROOT}/{file}");
    }

    let mut compiler = protox::Compiler::new([PROTO_ROOT])?;
    compiler.include_imports(true).include_source_info(true);
    // Struct is always a valid config type, so its file must be served by reflection even
    // though no field of ours names it.
    compiler.open_files(PROTO_FILES.iter().copied().chain(["google/protobuf/struct.proto"]))?;

    // The encoded form keeps custom options such as `google.api.http`; the prost_types form
    // drops them, so only the encoded bytes are embedded in the binary.
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("connectord_descriptor.bin"), compiler.encode_file_descriptor_set())?;

    let mut prost_config = prost_build::Config::new();
    prost_config.enable_type_names().type_name_domain(["."], "type.googleapis.com");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds_with_config(compiler.file_descriptor_set(), prost_config)?;

    compile_etcd_client()
}

/// Generates the client of etcd's KV service that `connectord-bench` uses. It is compiled
/// apart from the API protos, so reflection and the REST gateway never see it.
fn compile_etcd_client() -> Result<(), Box<dyn std::error::Error>> {
    for file in ETCD_PROTO_FILES {
        println!("cargo:rerun-if-changed={ETCD_PROTO_ROOT}/{file}");
    }
    let mut compiler = protox::Compiler::new([ETCD_PROTO_ROOT])?;
    compiler.include_imports(true);
    compiler.open_files(ETCD_PROTO_FILES.iter().copied())?;
    tonic_prost_build::configure().build_client(true).build_server(false).compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
