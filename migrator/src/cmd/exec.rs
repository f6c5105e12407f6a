//! `migrate exec NAME [-e KEY=VALUE] -- CMD...`: the command's stdout and stderr pass through to
//! ours, and we exit with its exit code.

use std::io::Write;
use std::process::ExitCode;

use proto::v1::ExecRequest;

use super::Ctx;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Container id.
    pub name: String,
    /// Environment variable for the command, repeatable.
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// The command and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

pub async fn run(ctx: &mut Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let request = ExecRequest {
        id: args.name,
        args: args.command,
        env: args.env,
    };
    let response = ctx.client.exec(request).await?.into_inner();
    std::io::stderr().write_all(&response.stderr)?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&response.stdout)?;
    stdout.flush()?;
    Ok(exit_code(response.exit_code))
}

/// The command's exit code as ours; codes a process cannot exit with (negative, > 255) become 1.
fn exit_code(code: i32) -> ExitCode {
    u8::try_from(code).map_or(ExitCode::FAILURE, ExitCode::from)
}
