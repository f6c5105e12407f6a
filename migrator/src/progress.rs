//! Following a long operation's event stream: a spinner (or a byte bar) on stderr while it runs,
//! and the final event's result.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};
use proto::v1::{OperationEvent, OperationResult};
use tonic::Streaming;

use crate::output::Format;

/// Consumes `events` until the final one and returns its result; a failed operation becomes an
/// error carrying the agent's one-line reason.
pub async fn follow(
    events: Streaming<OperationEvent>,
    format: Format,
) -> anyhow::Result<OperationResult> {
    let (result, operation_id) = follow_to_end(events, format).await?;
    finish(result, &operation_id)
}

/// Consumes `events` until the final one and returns its result and the operation's id, whether
/// the operation succeeded or not: for callers that print a failed operation's report too.
pub async fn follow_to_end(
    mut events: Streaming<OperationEvent>,
    format: Format,
) -> anyhow::Result<(OperationResult, String)> {
    let progress = Progress::new(format);
    while let Some(event) = events.message().await? {
        match event.done {
            Some(result) => return Ok((result, event.operation_id)),
            None => progress.show(&event),
        }
    }
    bail!("the agent ended the operation's event stream without a result")
}

/// Success stays a result; failure becomes the error line.
pub fn finish(result: OperationResult, operation_id: &str) -> anyhow::Result<OperationResult> {
    if result.success {
        return Ok(result);
    }
    let error = result.error.trim();
    if error.is_empty() {
        Err(anyhow!("operation {operation_id} failed"))
    } else {
        Err(anyhow!("{error}"))
    }
}

/// The progress display on stderr; hidden for scripts (JSON output or stderr not a terminal).
/// Dropping it clears it, so the result or error line is printed on a clean terminal.
struct Progress {
    bar: ProgressBar,
}

impl Progress {
    fn new(format: Format) -> Self {
        if format == Format::Json || !std::io::stderr().is_terminal() {
            return Self {
                bar: ProgressBar::hidden(),
            };
        }
        let bar = ProgressBar::new_spinner().with_style(spinner_style());
        bar.enable_steady_tick(Duration::from_millis(100));
        Self { bar }
    }

    /// Shows the event's phase and message, with a byte bar when the agent knows the total.
    fn show(&self, event: &OperationEvent) {
        self.bar.set_prefix(event.phase.clone());
        self.bar.set_message(event.message.clone());
        if event.total_bytes > 0 {
            self.bar.set_style(bytes_style());
            self.bar.set_length(event.total_bytes);
            self.bar.set_position(event.done_bytes);
        } else {
            self.bar.set_style(spinner_style());
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg}")
        .expect("the spinner template is valid")
}

fn bytes_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{spinner} {prefix:.bold} [{bar:30}] {bytes}/{total_bytes} {wide_msg}",
    )
    .expect("the byte bar template is valid")
    .progress_chars("=> ")
}
