//! Embedded OCI runtime: creates, runs and inspects containers from OCI bundles,
//! and checkpoints/restores them with CRIU.
//!
//! [`Runtime`] is the factory (a state root); it creates and loads [`Container`]s.
//! Namespace and mount work happens in the single-threaded `migrate-rt-init` helper
//! ([`process`]). Raw syscalls and every `unsafe` block live in [`syscall`].

pub mod cgroups;
pub mod container;
pub mod criu;
pub mod error;
pub mod factory;
pub mod id;
pub mod lsm;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod spec;
pub mod state;
pub mod syscall;

pub use container::{CheckpointOpts, Container, CreateOpts, ExecOpts, ExecProcess, RestoreOpts};
pub use error::{Error, Result};
pub use factory::Runtime;
pub use process::spawn::{ContainerStdio, Stdio};
pub use state::{RootfsMode, State, Status};
