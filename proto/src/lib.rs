//! The gRPC API of `migrate-agent`, generated from `migrate/v1/*.proto`: the local `Agent`
//! service (CLI → agent, over a unix socket) and the `Peer` service (agent → agent, mTLS).

#![forbid(unsafe_code)]

/// Package `migrate.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("migrate.v1");
}
