//! `migrate-agent`: argument parsing, logging and the tokio runtime; the daemon lives in the
//! library. `migrate-agent shim ...` is the per-container shim (started by the agent itself).

#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use agent::config::{Config, LogFormat, DEFAULT_CONFIG};

#[derive(Parser)]
#[command(
    name = "migrate-agent",
    version,
    about = "Per-host agent of the migrate service"
)]
struct Cli {
    /// Config file.
    #[arg(long, short, global = true, default_value = DEFAULT_CONFIG, env = "MIGRATE_AGENT_CONFIG")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the agent (the default).
    Run,
    /// Check the config file and exit.
    CheckConfig,
    /// Cluster certificates for the peer API.
    #[command(subcommand)]
    Certs(CertsCmd),
    /// Internal: the per-container shim.
    #[command(hide = true)]
    Shim { spec: String },
}

#[derive(Subcommand)]
enum CertsCmd {
    /// Create the cluster CA (ca.crt, ca.key) in DIR.
    Init {
        /// Directory for the CA files.
        #[arg(long, default_value = "/etc/migrate/pki")]
        dir: PathBuf,
        /// Cluster name written into the CA certificate.
        #[arg(long, default_value = "migrate")]
        cluster: String,
        /// Overwrite an existing CA.
        #[arg(long)]
        force: bool,
    },
    /// Issue a certificate for NODE, signed by the CA in --dir, into --out.
    Issue {
        /// Node name (as in the agents' configs).
        node: String,
        /// Directory holding ca.crt and ca.key.
        #[arg(long, default_value = "/etc/migrate/pki")]
        dir: PathBuf,
        /// Output directory (default: the CA directory).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Some(Cmd::Shim { spec }) = &cli.command {
        agent::shim::main(spec);
    }
    if let Err(e) = run(cli) {
        let mut msg = e.to_string();
        for cause in e.chain().skip(1) {
            msg.push_str(": ");
            msg.push_str(&cause.to_string());
        }
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Cmd::Run) {
        Cmd::Certs(CertsCmd::Init {
            dir,
            cluster,
            force,
        }) => {
            let ca = agent::certs::init_ca(&dir, &cluster, force)?;
            println!(
                "created cluster CA {} (key {})",
                ca.cert.display(),
                ca.key.display()
            );
            Ok(())
        }
        Cmd::Certs(CertsCmd::Issue {
            node,
            dir,
            out,
            force,
        }) => {
            let out = out.unwrap_or_else(|| dir.clone());
            let files = agent::certs::issue(&dir, &node, &out, force)?;
            println!(
                "issued {} (key {}) for node {node}",
                files.cert.display(),
                files.key.display()
            );
            Ok(())
        }
        Cmd::CheckConfig => {
            let config = Config::load(&cli.config)?;
            println!(
                "config {} is valid (node {})",
                cli.config.display(),
                config.node
            );
            Ok(())
        }
        Cmd::Shim { .. } => unreachable!("handled before"),
        Cmd::Run => {
            let config = Config::load(&cli.config)?;
            init_tracing(config.log_format);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start tokio")?;
            rt.block_on(async move {
                let agent = agent::daemon::Agent::open(config)?;
                agent::server::serve(agent).await
            })
        }
    }
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("MIGRATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Text => builder.init(),
    }
}
