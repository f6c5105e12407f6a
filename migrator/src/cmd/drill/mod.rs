//! `migrate drill run | validate | ls | show`: failover drills. The local agent coordinates a
//! drill; the CLI reads the drill file (`file`), has the agent check it, follows the run with
//! progress on stderr, and shows the report (`report`) and keeps it as Markdown.

pub mod file;
pub mod report;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use proto::v1::{DrillRef, ListDrillsRequest, RunDrillRequest};
use serde::Serialize;

use self::file::{DrillFile, Place, Problem};
use self::report::ReportView;
use super::Ctx;
use crate::cli::DrillCommand;
use crate::client;
use crate::output::{self, Format};
use crate::progress;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The drill file (TOML; see docs/drills.md).
    pub file: PathBuf,
    /// Only validate the drill and show its plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Write the Markdown report here (default: drill-<ID>.md in the current directory).
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The drill file (TOML; see docs/drills.md).
    pub file: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// Drill run id (from `migrate drill ls`).
    pub id: String,
    /// Also write the report as Markdown to this file.
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
}

/// Runs a `drill` command. A drill file is read and parsed before the agent is dialled, so its
/// own problems show even when no agent answers.
pub async fn dispatch(command: DrillCommand, socket: &Path, format: Format) -> anyhow::Result<()> {
    match command {
        DrillCommand::Run(args) => {
            let file = load(&args.file, format, false)?;
            run(&mut connect(socket, format).await?, args, file).await
        }
        DrillCommand::Validate(args) => {
            let file = load(&args.file, format, true)?;
            validate(&mut connect(socket, format).await?, &args.file, file).await
        }
        DrillCommand::Ls => list(&mut connect(socket, format).await?).await,
        DrillCommand::Show(args) => show(&mut connect(socket, format).await?, args).await,
    }
}

async fn connect(socket: &Path, format: Format) -> anyhow::Result<Ctx> {
    Ok(Ctx {
        client: client::connect(socket).await?,
        format,
    })
}

/// Reads and parses a drill file; its problems are printed and end the command.
fn load(path: &Path, format: Format, validating: bool) -> anyhow::Result<DrillFile> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("failed to read drill file {}", path.display()))?;
    file::parse(&text).map_err(|problems| refuse(path, None, &problems, format, validating))
}

/// Prints the problems — one `FILE:LINE: ...` line each on stderr, or for `validate --output
/// json` the validation object on stdout — and returns the command's error.
fn refuse(
    path: &Path,
    file: Option<&DrillFile>,
    problems: &[Problem],
    format: Format,
    validating: bool,
) -> anyhow::Error {
    if validating && format == Format::Json {
        let view = ValidationView::new(path, file, problems);
        if let Err(err) = output::note(format, "", &view) {
            return err;
        }
    } else {
        for problem in problems {
            eprintln!("{}", problem.render(path));
        }
    }
    let count = count(problems.len(), "problem");
    if validating {
        anyhow!("{}: {count}", path.display())
    } else {
        anyhow!("{}: {count}; the drill was not run", path.display())
    }
}

/// The agent's check of the drill against the cluster; its problems placed on the file's lines.
async fn check(ctx: &mut Ctx, file: &DrillFile) -> anyhow::Result<Vec<Problem>> {
    let response = ctx.client.validate_drill(file.drill.clone()).await?;
    Ok(file.place(response.into_inner().problems))
}

async fn validate(ctx: &mut Ctx, path: &Path, file: DrillFile) -> anyhow::Result<()> {
    let problems = check(ctx, &file).await?;
    if !problems.is_empty() {
        return Err(refuse(path, Some(&file), &problems, ctx.format, true));
    }
    let view = ValidationView::new(path, Some(&file), &[]);
    let text = format!(
        "{}: ok ({}, {})",
        path.display(),
        count(view.steps, "step"),
        count(view.cleanup_steps, "cleanup step")
    );
    output::note(ctx.format, &text, &view)
}

async fn run(ctx: &mut Ctx, args: RunArgs, file: DrillFile) -> anyhow::Result<()> {
    let problems = check(ctx, &file).await?;
    if !problems.is_empty() {
        return Err(refuse(
            &args.file,
            Some(&file),
            &problems,
            ctx.format,
            false,
        ));
    }
    let request = RunDrillRequest {
        drill: Some(file.drill),
        dry_run: args.dry_run,
    };
    let events = ctx.client.run_drill(request).await?.into_inner();
    // A drill that ran and failed still has a report: print it and keep it, then exit 1.
    let (result, operation_id) = progress::follow_to_end(events, ctx.format).await?;
    let Some(report) = result.drill.clone() else {
        progress::finish(result, &operation_id)?;
        bail!("the agent reported success but no drill report");
    };
    let view = ReportView::from(report);
    print(ctx.format, &view)?;
    let path = args.report.unwrap_or_else(|| view.default_report_path());
    write_markdown(&path, &view)?;
    view.outcome()
}

async fn list(ctx: &mut Ctx) -> anyhow::Result<()> {
    let response = ctx.client.list_drills(ListDrillsRequest {}).await?;
    let views: Vec<ReportView> = response
        .into_inner()
        .drills
        .into_iter()
        .map(ReportView::from)
        .collect();
    output::list(ctx.format, &views)
}

/// Shows a past run; exits 0 whatever its verdict (it is `drill run` that judges).
async fn show(ctx: &mut Ctx, args: ShowArgs) -> anyhow::Result<()> {
    let request = DrillRef { drill_id: args.id };
    let report = ctx.client.show_drill(request).await?.into_inner();
    let view = ReportView::from(report);
    print(ctx.format, &view)?;
    match args.report {
        Some(path) => write_markdown(&path, &view),
        None => Ok(()),
    }
}

/// The report on stdout: the table and lines, or one JSON object.
fn print(format: Format, view: &ReportView) -> anyhow::Result<()> {
    output::note(format, view.text().trim_end(), view)
}

fn write_markdown(path: &Path, view: &ReportView) -> anyhow::Result<()> {
    fs::write(path, view.markdown())
        .with_context(|| format!("failed to write the drill report {}", path.display()))?;
    eprintln!("report written to {}", path.display());
    Ok(())
}

/// `3 steps`, `1 cleanup step`
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `drill validate --output json`: the verdict and every problem.
#[derive(Debug, Serialize)]
struct ValidationView {
    file: String,
    valid: bool,
    steps: usize,
    cleanup_steps: usize,
    problems: Vec<ProblemView>,
}

#[derive(Debug, Serialize)]
struct ProblemView {
    line: usize,
    /// Step index from 0, as in the API; -1 for the drill's own keys.
    step: i64,
    cleanup: bool,
    action: String,
    field: String,
    message: String,
}

impl ValidationView {
    fn new(path: &Path, file: Option<&DrillFile>, problems: &[Problem]) -> Self {
        let problems = problems
            .iter()
            .map(|p| {
                let (step, cleanup, action) = match &p.place {
                    Place::Drill => (-1, false, String::new()),
                    Place::Step {
                        index,
                        cleanup,
                        action,
                    } => (
                        i64::try_from(*index).unwrap_or(i64::MAX),
                        *cleanup,
                        action.clone().unwrap_or_default(),
                    ),
                };
                ProblemView {
                    line: p.line,
                    step,
                    cleanup,
                    action,
                    field: p.field.clone().unwrap_or_default(),
                    message: p.message.clone(),
                }
            })
            .collect::<Vec<_>>();
        Self {
            file: path.display().to_string(),
            valid: problems.is_empty(),
            steps: file.map_or(0, |f| f.drill.steps.len()),
            cleanup_steps: file.map_or(0, |f| f.drill.cleanup.len()),
            problems,
        }
    }
}
