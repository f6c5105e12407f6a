//! Generates the gRPC code for `migrate.v1` from the `.proto` files (needs `protoc`, which
//! `deploy/install.sh` installs).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=migrate/v1");
    tonic_prost_build::configure()
        .compile_protos(&["migrate/v1/agent.proto", "migrate/v1/peer.proto"], &["."])?;
    Ok(())
}
