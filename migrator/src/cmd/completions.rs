//! `migrate completions bash|zsh|fish|...`: a completion script on stdout.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to complete for.
    pub shell: Shell,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "migrate", &mut std::io::stdout());
    Ok(())
}
