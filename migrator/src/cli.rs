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
    /// Scheduled and on-demand backups: list, verify, restore.
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// Failover drills: run a drill file, check it, list and show past runs.
    Drill {
        #[command(subcommand)]
        command: DrillCommand,
    },
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
    /// End the failure a drill's fail-host put this host in; removes the containers the failure
    /// killed (they were restored elsewhere).
    Unfence,
}

/// `migrate drill ...`
#[derive(Debug, Subcommand)]
pub enum DrillCommand {
    /// Run a drill file: check it, run its steps, print the report and write it as Markdown;
    /// exit 1 unless the drill passed.
    Run(cmd::drill::RunArgs),
    /// Check a drill file, here and against the hosts and containers it names; change nothing.
    Validate(cmd::drill::ValidateArgs),
    /// List the drill runs this agent coordinated, newest first.
    Ls,
    /// Show one drill run's report.
    Show(cmd::drill::ShowArgs),
}

/// `migrate backup ...`
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Back a container up on a schedule (replaces its schedule, if any).
    Schedule(cmd::backup::ScheduleArgs),
    /// Stop backing a container up on a schedule; its backups stay.
    Unschedule(cmd::lifecycle::NameArgs),
    /// List backup schedules.
    Schedules,
    /// Back a container up now.
    Now(cmd::backup::NowArgs),
    /// List backups on this host, newest first, with their total size.
    Ls(cmd::backup::ListArgs),
    /// Show one backup in detail.
    Show(cmd::backup::IdArgs),
    /// Delete a backup.
    Rm(cmd::backup::IdArgs),
    /// Re-hash the chunks of a backup (or of every backup); fails if any is damaged.
    Verify(cmd::backup::VerifyArgs),
    /// Restore a container from a backup, here or on a peer.
    Restore(cmd::backup::RestoreArgs),
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;
    use clap::{CommandFactory, Parser};

    use super::{AgentCommand, BackupCommand, Cli, Command, DrillCommand};

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("migrate").chain(args.iter().copied()))
    }

    fn parse_error(args: &[&str]) -> ErrorKind {
        parse(args)
            .expect_err("the command line was accepted")
            .kind()
    }

    #[test]
    fn backup_schedule_every() {
        let cli = parse(&[
            "backup", "schedule", "web", "--every", "1h30m", "--keep", "3",
        ])
        .unwrap();
        let Command::Backup {
            command: BackupCommand::Schedule(args),
        } = cli.command
        else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(args.name, "web");
        assert_eq!(args.every, Some(5400));
        assert_eq!(args.at, None);
        assert_eq!(args.keep, 3);
        assert_eq!(args.keep_daily, 0);
        assert_eq!(args.replicate_to, None);
    }

    #[test]
    fn backup_schedule_at() {
        let cli = parse(&[
            "backup",
            "schedule",
            "web",
            "--at",
            "0 3 * * *",
            "--keep",
            "1",
            "--keep-daily",
            "7",
            "--replicate-to",
            "host2",
        ])
        .unwrap();
        let Command::Backup {
            command: BackupCommand::Schedule(args),
        } = cli.command
        else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(args.every, None);
        assert_eq!(args.at.as_deref(), Some("0 3 * * *"));
        assert_eq!(args.keep_daily, 7);
        assert_eq!(args.replicate_to.as_deref(), Some("host2"));
    }

    #[test]
    fn backup_schedule_needs_exactly_one_of_every_and_at() {
        assert_eq!(
            parse_error(&[
                "backup",
                "schedule",
                "web",
                "--every",
                "15m",
                "--at",
                "0 3 * * *",
                "--keep",
                "3"
            ]),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            parse_error(&["backup", "schedule", "web", "--keep", "3"]),
            ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn backup_schedule_refuses_bad_values() {
        let base = ["backup", "schedule", "web", "--every", "15m"];
        assert_eq!(
            parse_error(&[&base[..], &["--keep", "0"]].concat()),
            ErrorKind::ValueValidation
        );
        assert_eq!(parse_error(&base), ErrorKind::MissingRequiredArgument);
        for every in ["0s", "15", "15x", ""] {
            let args = ["backup", "schedule", "web", "--every", every, "--keep", "3"];
            assert_eq!(parse_error(&args), ErrorKind::ValueValidation, "{every:?}");
        }
    }

    #[test]
    fn backup_other_commands() {
        assert!(parse(&["backup", "unschedule", "web"]).is_ok());
        assert!(parse(&["backup", "schedules"]).is_ok());
        assert!(parse(&["backup", "now", "web", "--replicate-to", "host2"]).is_ok());
        assert!(parse(&["backup", "ls"]).is_ok());
        assert!(parse(&["backup", "ls", "web"]).is_ok());
        assert!(parse(&["backup", "show", "b1"]).is_ok());
        assert!(parse(&["backup", "rm", "b1"]).is_ok());
        assert!(parse(&["backup", "verify"]).is_ok());
        assert!(parse(&["-o", "json", "backup", "verify", "b1", "--restore-test"]).is_ok());
        assert_eq!(
            parse_error(&["backup", "show"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse_error(&["backup"]),
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );

        let cli = parse(&[
            "backup", "restore", "web", "--from", "b1", "--on", "host2", "--as", "web2",
        ])
        .unwrap();
        let Command::Backup {
            command: BackupCommand::Restore(args),
        } = cli.command
        else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(args.name, "web");
        assert_eq!(args.from.as_deref(), Some("b1"));
        assert_eq!(args.on.as_deref(), Some("host2"));
        assert_eq!(args.new_name.as_deref(), Some("web2"));
    }

    #[test]
    fn drill_commands() {
        let cli = parse(&[
            "drill",
            "run",
            "deploy/drills/host-loss.toml",
            "--dry-run",
            "--report",
            "out.md",
        ])
        .unwrap();
        let Command::Drill {
            command: DrillCommand::Run(args),
        } = cli.command
        else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(args.file.to_str(), Some("deploy/drills/host-loss.toml"));
        assert!(args.dry_run);
        assert_eq!(args.report.unwrap().to_str(), Some("out.md"));

        assert!(parse(&["drill", "validate", "d.toml"]).is_ok());
        assert!(parse(&["drill", "ls"]).is_ok());
        assert!(parse(&["-o", "json", "drill", "show", "op-1", "--report", "r.md"]).is_ok());
        assert_eq!(
            parse_error(&["drill", "run"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse_error(&["drill", "show"]),
            ErrorKind::MissingRequiredArgument
        );
        let cli = parse(&["agent", "unfence"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Agent {
                command: AgentCommand::Unfence
            }
        ));
    }
}
