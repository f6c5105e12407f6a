//! One module per command group. Each is thin: build the request, call the agent, print.

pub mod agent;
pub mod backup;
pub mod checkpoint;
pub mod completions;
pub mod drill;
pub mod exec;
pub mod hosts;
pub mod inspect;
pub mod lifecycle;
pub mod logs;
pub mod moves;
pub mod ops;
pub mod ps;
pub mod run;

use std::process::ExitCode;

use crate::cli::{AgentCommand, BackupCommand, Cli, Command};
use crate::client::{self, Client};
use crate::output::Format;

/// What every command that talks to the agent gets.
pub struct Ctx {
    pub client: Client,
    pub format: Format,
}

/// Runs the parsed command and returns the process's exit code.
pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    // Completions need no agent.
    if let Command::Completions(args) = &cli.command {
        return completions::run(args).map(|()| ExitCode::SUCCESS);
    }
    // Drill commands read their file before dialling the agent.
    let command = match cli.command {
        Command::Drill { command } => {
            return drill::dispatch(command, &cli.socket, cli.output)
                .await
                .map(|()| ExitCode::SUCCESS)
        }
        command => command,
    };
    let mut ctx = Ctx {
        client: client::connect(&cli.socket).await?,
        format: cli.output,
    };
    let done = match command {
        Command::Run(args) => run::run(&mut ctx, args).await,
        Command::Ps => ps::run(&mut ctx).await,
        Command::Inspect(args) => inspect::run(&mut ctx, args).await,
        Command::Logs(args) => logs::run(&mut ctx, args).await,
        Command::Exec(args) => return exec::run(&mut ctx, args).await,
        Command::Stop(args) => lifecycle::stop(&mut ctx, args).await,
        Command::Kill(args) => lifecycle::kill(&mut ctx, args).await,
        Command::Rm(args) => lifecycle::rm(&mut ctx, args).await,
        Command::Pause(args) => lifecycle::pause(&mut ctx, args).await,
        Command::Resume(args) => lifecycle::resume(&mut ctx, args).await,
        Command::Checkpoint(args) => checkpoint::checkpoint(&mut ctx, args).await,
        Command::Restore(args) => checkpoint::restore(&mut ctx, args).await,
        Command::Checkpoints(args) => checkpoint::list(&mut ctx, args).await,
        Command::Move(args) => moves::run(&mut ctx, args).await,
        Command::Ops(args) => ops::run(&mut ctx, args).await,
        Command::Backup { command } => match command {
            BackupCommand::Schedule(args) => backup::schedule(&mut ctx, args).await,
            BackupCommand::Unschedule(args) => backup::unschedule(&mut ctx, args).await,
            BackupCommand::Schedules => backup::schedules(&mut ctx).await,
            BackupCommand::Now(args) => backup::now(&mut ctx, args).await,
            BackupCommand::Ls(args) => backup::list(&mut ctx, args).await,
            BackupCommand::Show(args) => backup::show(&mut ctx, args).await,
            BackupCommand::Rm(args) => backup::rm(&mut ctx, args).await,
            BackupCommand::Verify(args) => backup::verify(&mut ctx, args).await,
            BackupCommand::Restore(args) => backup::restore(&mut ctx, args).await,
        },
        Command::Agent { command } => match command {
            AgentCommand::Status => agent::status(&mut ctx).await,
            AgentCommand::Unfence => agent::unfence(&mut ctx).await,
        },
        Command::Hosts => hosts::run(&mut ctx).await,
        Command::Completions(_) | Command::Drill { .. } => unreachable!("handled above"),
    };
    done.map(|()| ExitCode::SUCCESS)
}
