//! Embedded OCI runtime: creates, runs and inspects containers from OCI bundles,
//! and checkpoints/restores them with CRIU.
//!
//! `Runtime` is the factory (a state root); it creates and loads `Container`s.
//! Raw syscalls and every `unsafe` block live in [`syscall`].

pub mod cgroups;
pub mod criu;
pub mod syscall;
