//! `migrate-agent`: the per-host daemon. It owns the containers on its host (through the
//! embedded runtime and one shim per container), keeps a catalog of containers, checkpoints and
//! operations, and serves the local `Agent` API on a unix socket and the `Peer` API over mutual
//! TLS, plus Prometheus metrics.

#![forbid(unsafe_code)]

pub mod backups;
pub mod catalog;
pub mod certs;
pub mod config;
pub mod daemon;
pub mod drills;
pub mod error;
pub mod lazy;
pub mod metrics;
pub mod moves;
pub mod network;
pub mod ops;
pub mod server;
pub mod service;
pub mod shim;
pub mod store;
pub mod tls;
