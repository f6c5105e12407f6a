//! Shared fixtures for the integration tests: busybox bundles, a runtime on a temp state root
//! with its own cgroup parent, network namespaces, and prerequisite checks that fail (never
//! skip) with the set-up command.

pub mod agent;
pub mod bench;
pub mod bundle;
pub mod hosts;
pub mod netns;
pub mod prereq;
pub mod rt;

pub use bundle::TestBundle;
pub use rt::TestRuntime;
