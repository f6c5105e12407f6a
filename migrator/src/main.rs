//! The `migrate` CLI: parses arguments, calls the local migrate-agent over its unix socket, and
//! prints results on stdout (tables for people, JSON lines for scripts), progress and errors on
//! stderr. Exit codes: 0 success, 1 failure, 2 usage error (clap), or an `exec`ed command's own.

#![forbid(unsafe_code)]

mod cli;
mod client;
mod cmd;
mod error;
mod output;
mod progress;
mod view;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // On a usage error clap prints the message and exits with 2 itself.
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return error::report(&anyhow::Error::new(err).context("failed to start")),
    };
    match runtime.block_on(cmd::dispatch(cli)) {
        Ok(code) => code,
        Err(err) => error::report(&err),
    }
}
