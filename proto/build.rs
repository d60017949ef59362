//! Compiles the .proto files with protox (pure Rust), so the build needs no
//! system `protoc`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/fence/v1/agent.proto",
        "proto/fence/v1/admin.proto",
        "proto/fence/v1/driver.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    // etcd's v3 API (the arbiter's etcd store): a client only.
    let etcd = "proto/etcd/rpc.proto";
    println!("cargo:rerun-if-changed={etcd}");
    let fds = protox::compile([etcd], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(fds)?;
    Ok(())
}
