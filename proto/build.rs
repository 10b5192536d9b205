//! Generates the prost types from `proto/tocsin/v1/*.proto` with a vendored protoc,
//! so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let files = [
        "proto/tocsin/v1/alert.proto",
        "proto/tocsin/v1/run.proto",
        "proto/tocsin/v1/runner.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    config.compile_protos(&files, &["proto"])?;
    Ok(())
}
