//! What the benchmark binaries share: argument errors, exit codes, and their `main`.

use std::process::ExitCode;

/// Runs a benchmark: `parse` gives the arguments (an empty error means "print usage"), `run`
/// does the work. Usage errors exit 2, failures 1 with one `error:` line.
pub fn main<A>(
    usage: &str,
    parse: impl FnOnce() -> Result<A, String>,
    run: impl FnOnce(&A) -> anyhow::Result<()>,
) -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(msg) if msg.is_empty() => {
            println!("{usage}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("error: {msg}\n{usage}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
