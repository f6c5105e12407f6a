//! Turning any error into the CLI's one-line `error: ...` and its exit code.

use std::io;
use std::process::ExitCode;

/// Prints `error: <message>` on stderr and returns the failure exit code (1).
///
/// A closed stdout (`migrate ps | head -1`) is not a failure of the command: it exits 0 quietly.
pub fn report(err: &anyhow::Error) -> ExitCode {
    if is_broken_pipe(err) {
        return ExitCode::SUCCESS;
    }
    eprintln!("error: {}", one_line(err));
    ExitCode::FAILURE
}

/// The error's chain joined with ": " on one line. A gRPC status contributes only its message:
/// the agent already wrote it for people, and its code and transport details are noise here.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut parts = Vec::new();
    for cause in err.chain() {
        if let Some(status) = cause.downcast_ref::<tonic::Status>() {
            parts.push(status_message(status));
            break;
        }
        parts.push(cause.to_string());
    }
    let text = parts.join(": ");
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The status's message, or a description of its code when the message is empty.
fn status_message(status: &tonic::Status) -> String {
    let message = status.message().trim();
    if message.is_empty() {
        status.code().description().to_string()
    } else {
        message.to_string()
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|cause| cause.downcast_ref::<io::Error>())
        .any(|io_error| io_error.kind() == io::ErrorKind::BrokenPipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_prints_only_its_message() {
        let err = anyhow::Error::new(tonic::Status::not_found("container web does not exist"));
        assert_eq!(one_line(&err), "container web does not exist");
    }

    #[test]
    fn context_and_multiline_messages_stay_on_one_line() {
        let err = anyhow::Error::new(tonic::Status::internal("dump failed\ncriu: exit 1\n"))
            .context("checkpoint web");
        assert_eq!(one_line(&err), "checkpoint web: dump failed; criu: exit 1");
    }

    #[test]
    fn empty_status_message_falls_back_to_the_code() {
        let err = anyhow::Error::new(tonic::Status::unavailable(""));
        assert_eq!(one_line(&err), "The service is currently unavailable");
    }
}
