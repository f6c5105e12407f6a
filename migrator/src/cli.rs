//! The command line: global flags and the list of commands. Each command's own flags live next
//! to its code in `cmd/`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::cmd;
use crate::output::Format;

/// Run, checkpoint and restore containers through the local migrate-agent.
#[derive(Debug, Parser)]
#[command(name = "migrate", version, propagate_version = true)]
pub struct Cli {
    /// Unix socket of the local migrate-agent.
    #[arg(
        long,
        global = true,
        env = "MIGRATE_SOCKET",
        value_name = "PATH",
        default_value = "/run/migrate/agent.sock"
    )]
    pub socket: PathBuf,

    /// Output format: aligned tables for people, one JSON object per line for scripts.
    #[arg(
        short,
        long,
        global = true,
        env = "MIGRATE_OUTPUT",
        value_enum,
        default_value_t = Format::Table
    )]
    pub output: Format,

    #[command(subcommand)]
    pub command: Command,
}

/// Every `migrate` command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and start a container from an OCI bundle.
    Run(cmd::run::Args),
    /// List containers.
    Ps,
    /// Show one container in detail.
    Inspect(cmd::inspect::Args),
    /// Print a container's stdout/stderr log.
    Logs(cmd::logs::Args),
    /// Run a command inside a running container.
    Exec(cmd::exec::Args),
    /// Stop a container: SIGTERM, then SIGKILL after a timeout.
    Stop(cmd::lifecycle::StopArgs),
    /// Send a signal to a container.
    Kill(cmd::lifecycle::KillArgs),
    /// Remove a stopped container.
    Rm(cmd::lifecycle::RmArgs),
    /// Freeze a running container.
    Pause(cmd::lifecycle::NameArgs),
    /// Thaw a paused container.
    Resume(cmd::lifecycle::NameArgs),
    /// Checkpoint a container into the agent's store.
    Checkpoint(cmd::checkpoint::CheckpointArgs),
    /// Restore a container from a checkpoint.
    Restore(cmd::checkpoint::RestoreArgs),
    /// Live-migrate a container to another host.
    Move(cmd::moves::Args),
    /// List checkpoints.
    Checkpoints(cmd::checkpoint::ListArgs),
    /// List recent operations, newest first.
    Ops(cmd::ops::Args),
    /// The local agent itself.
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// List peer hosts and their health.
    Hosts,
    /// Print a shell completion script.
    Completions(cmd::completions::Args),
}

/// `migrate agent ...`
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Versions, CRIU check and features, cgroups, kernel, and how many peers answer.
    Status,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
