//! gRPC handlers: thin adapters from requests to the daemon's verbs.

pub mod local;
pub mod peer;
