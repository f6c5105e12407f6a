//! Every raw syscall and `unsafe` block of the runtime lives under this module.
//!
//! Each area has its own submodule; callers see safe functions only.

pub mod criu;
pub mod process;
pub mod seccomp;
pub mod signals;
pub mod tty;
