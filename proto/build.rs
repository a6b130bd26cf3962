//! Compiles the .proto files with protox (pure Rust), so no system `protoc` is needed.

fn main() {
    let protos = [
        "cabin/feedback/v1/batch.proto",
        "cabin/feedback/v1/collector.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["."]).unwrap_or_else(|e| panic!("invalid .proto: {e}"));
    prost_build::Config::new()
        .compile_fds(fds)
        .unwrap_or_else(|e| panic!("prost-build failed: {e}"));
}
