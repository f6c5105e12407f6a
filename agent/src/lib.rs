//! `migrate-agent`: the per-host daemon. It owns the containers on its host (through the
//! embedded runtime), keeps a catalog of containers, checkpoints and operations, and serves the
//! local `Agent` API on a unix socket and the `Peer` API over mutual TLS.

#![forbid(unsafe_code)]

pub mod certs;
pub mod tls;
