//! `migrate-runc`: runc's command line over the migrate runtime library, so tools that drive
//! runtimes through runc's interface (podman, containerd shims, the OCI validation suite) can
//! use it. Argument handling only: every action is the `runtime` crate's.
//!
//! Errors go to stderr as runc writes them (`time="…" level=error msg="…"`, or one JSON object
//! with `--log-format json`, and to `--log` too), and the exit code is 1; usage errors exit 2.

mod cli;
mod console;

use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use nix::sys::signal::Signal;
use runtime::{
    CheckpointOpts, CreateOpts, ExecOpts, RestoreOpts, RootfsMode, Runtime, Status, Stdio,
};

use cli::{Cli, Command, LogFormat, RunArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(msg) => {
            report(&cli, &msg);
            ExitCode::from(1)
        }
    }
}

/// Writes an error as runc does: to stderr, and to `--log` if given.
fn report(cli: &Cli, msg: &str) {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let line = match cli.log_format {
        LogFormat::Text => format!("time={now:?} level=error msg={msg:?}"),
        LogFormat::Json => {
            serde_json::json!({"level": "error", "msg": msg, "time": now}).to_string()
        }
    };
    eprintln!("{line}");
    if let Some(log) = &cli.log {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

type Result<T> = std::result::Result<T, String>;

/// An error with its causes, on one line.
fn err(e: impl std::error::Error) -> String {
    runtime::error::chain(&e)
}

/// The caller's own stdio, handed to the container (as runc does without a terminal). A
/// stdin that is a file of the host (conmon gives `/dev/null`) becomes an empty pipe, which
/// reads the same (end of file at once) and, unlike a host file, can be checkpointed.
fn inherited_stdio() -> Result<Stdio> {
    let dup = |fd: std::os::fd::BorrowedFd<'_>| fd.try_clone_to_owned().map_err(err);
    let stdin = std::io::stdin();
    let tty = nix::unistd::isatty(stdin.as_fd()).unwrap_or(false);
    let host_file = !tty
        && nix::sys::stat::fstat(stdin.as_fd()).is_ok_and(|st| {
            let kind = st.st_mode & libc_mode::S_IFMT;
            kind == libc_mode::S_IFCHR || kind == libc_mode::S_IFREG
        });
    let stdin = if host_file {
        let (read, write) = nix::unistd::pipe().map_err(err)?;
        drop(write);
        read
    } else {
        dup(stdin.as_fd())?
    };
    Ok(Stdio::Fds {
        stdin,
        stdout: dup(std::io::stdout().as_fd())?,
        stderr: dup(std::io::stderr().as_fd())?,
    })
}

/// File type bits of `st_mode`.
mod libc_mode {
    pub const S_IFMT: u32 = 0o170000;
    pub const S_IFCHR: u32 = 0o020000;
    pub const S_IFREG: u32 = 0o100000;
}

fn write_pid_file(path: &Option<PathBuf>, pid: i32) -> Result<()> {
    if let Some(p) = path {
        // Atomically, as runc does: readers never see a partial file.
        let tmp = p.with_extension("tmp-pid");
        std::fs::write(&tmp, pid.to_string())
            .and_then(|()| std::fs::rename(&tmp, p))
            .map_err(|e| format!("write pid file {}: {e}", p.display()))?;
    }
    Ok(())
}

/// The process's stdio after runc's terminal checks: a terminal (see [`console`]) or the
/// caller's own stdio; and where a terminal's master goes.
fn process_stdio(
    detach: bool,
    terminal: bool,
    console_socket: &Option<PathBuf>,
) -> Result<(Stdio, Option<console::Console>)> {
    console::check(detach, terminal, console_socket)?;
    if terminal {
        let (stdio, console) = console::terminal_stdio(console_socket)?;
        Ok((stdio, Some(console)))
    } else {
        Ok((inherited_stdio()?, None))
    }
}

/// Starts relaying a terminal whose master comes to us (a foreground `run` or `exec`).
fn relay(console: Option<console::Console>) -> Result<Option<console::Relay>> {
    console.map(console::relay).transpose().map(Option::flatten)
}

/// `process.terminal` of the bundle's spec; false when it cannot be read (create says why).
fn spec_terminal(bundle: &Path) -> bool {
    std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["process"]["terminal"].as_bool())
        .unwrap_or(false)
}

fn load(rt: &Runtime, id: &str) -> Result<runtime::Container> {
    rt.load(id).map_err(|e| match e {
        runtime::Error::NotFound { .. } => "container does not exist".to_string(),
        e => err(e),
    })
}

/// Parses a signal as runc does: `KILL`, `SIGKILL`, or a number.
pub fn parse_signal(s: &str) -> Result<Signal> {
    runtime::container::parse_signal(s).ok_or_else(|| format!("invalid signal {s:?}"))
}

fn run(cli: &Cli) -> Result<ExitCode> {
    let rt = Runtime::new(&cli.root).map_err(err)?;
    match &cli.command {
        Command::Create(a) => {
            // Always detached: a terminal's master goes to --console-socket.
            let (stdio, _) = process_stdio(true, spec_terminal(&a.bundle), &a.console_socket)?;
            let opts = CreateOpts {
                stdio,
                // The bundle's rootfs in place, as runc uses it (the caller prepared it).
                rootfs: RootfsMode::Plain,
                ..Default::default()
            };
            let (c, _) = rt.create(&a.id, &a.bundle, opts).map_err(|e| match e {
                runtime::Error::AlreadyExists { .. } => {
                    format!("container with id exists: {}", a.id)
                }
                e => err(e),
            })?;
            write_pid_file(&a.pid_file, c.pid())?;
        }
        Command::Start { id } => {
            let c = load(&rt, id)?;
            match c.status() {
                Status::Created => c.start().map_err(err)?,
                Status::Stopped => return Err("cannot start a container that has stopped".into()),
                s => return Err(format!("cannot start an already running container ({s})")),
            }
        }
        Command::Run(RunArgs { create: a, detach }) => {
            let (stdio, console) =
                process_stdio(*detach, spec_terminal(&a.bundle), &a.console_socket)?;
            let opts = CreateOpts {
                stdio,
                // The bundle's rootfs in place, as runc uses it (the caller prepared it).
                rootfs: RootfsMode::Plain,
                ..Default::default()
            };
            let (c, _) = rt.create(&a.id, &a.bundle, opts).map_err(err)?;
            let relay = relay(console).inspect_err(|_| {
                let _ = c.clone().delete(true);
            })?;
            write_pid_file(&a.pid_file, c.pid())?;
            c.start().map_err(err)?;
            if !detach {
                let code = c.wait().map_err(err)?;
                if let Some(relay) = relay {
                    relay.finish();
                }
                c.delete(true).map_err(err)?;
                return Ok(ExitCode::from(code.clamp(0, 255) as u8));
            }
        }
        Command::State { id } => {
            let c = load(&rt, id)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&c.oci_state()).map_err(err)?
            );
        }
        Command::Kill { id, signal, all } => {
            let c = load(&rt, id)?;
            c.kill(parse_signal(signal)?, *all).map_err(err)?;
        }
        Command::Delete { id, force } => match rt.load(id) {
            Ok(c) => {
                if c.status() != Status::Stopped && !force {
                    return Err(format!(
                        "cannot delete container {id} that is not stopped: {}",
                        c.status()
                    ));
                }
                c.delete(*force).map_err(err)?;
            }
            Err(runtime::Error::NotFound { .. }) if *force => {}
            Err(e) => {
                return Err(match e {
                    runtime::Error::NotFound { .. } => "container does not exist".into(),
                    e => err(e),
                })
            }
        },
        Command::Pause { id } => load(&rt, id)?.pause().map_err(err)?,
        Command::Resume { id } => load(&rt, id)?.resume().map_err(err)?,
        Command::Ps { id, format } => {
            let pids = load(&rt, id)?.processes().map_err(err)?;
            if format == "json" {
                println!("{}", serde_json::to_string(&pids).map_err(err)?);
            } else {
                println!("PID");
                for p in pids {
                    println!("{p}");
                }
            }
        }
        Command::List { format, quiet } => {
            let all = rt.list().map_err(err)?;
            if *quiet {
                for c in &all {
                    println!("{}", c.id());
                }
            } else if format == "json" {
                let states: Vec<_> = all.iter().map(|c| c.oci_state()).collect();
                println!("{}", serde_json::to_string(&states).map_err(err)?);
            } else {
                println!("ID\tPID\tSTATUS\tBUNDLE");
                for c in &all {
                    let s = c.oci_state();
                    println!(
                        "{}\t{}\t{}\t{}",
                        c.id(),
                        s["pid"],
                        c.status(),
                        s["bundle"].as_str().unwrap_or_default()
                    );
                }
            }
        }
        Command::Exec(a) => {
            let c = load(&rt, &a.id)?;
            // As runc: a process file says whether it gets a terminal, else --tty does.
            let (mut opts, terminal) = match &a.process {
                Some(path) => process_from_json(path)?,
                None => {
                    if a.command.is_empty() {
                        return Err("exec needs a command or --process".into());
                    }
                    (ExecOpts::new(a.command.clone()), a.tty)
                }
            };
            opts.env.extend(a.env.iter().cloned());
            if let Some(cwd) = &a.cwd {
                opts.cwd = Some(cwd.clone());
            }
            let (stdio, console) = process_stdio(a.detach, terminal, &a.console_socket)?;
            opts.stdio = stdio;
            opts.detach = a.detach;
            let (p, _) = c.exec(opts).map_err(err)?;
            let relay = relay(console)?;
            write_pid_file(&a.pid_file, p.pid)?;
            if !a.detach {
                let code = p.wait().map_err(err)?;
                if let Some(relay) = relay {
                    relay.finish();
                }
                return Ok(ExitCode::from(code.clamp(0, 255) as u8));
            }
        }
        Command::Checkpoint(a) => {
            let c = load(&rt, &a.id)?;
            let dir = a.criu.image_dir();
            let opts = CheckpointOpts {
                leave_running: a.leave_running,
                tcp_established: a.criu.tcp_established,
                ext_unix_sk: a.criu.ext_unix_sk,
                file_locks: a.criu.file_locks,
            };
            c.checkpoint(&dir, opts).map_err(err)?;
            copy_logs(&dir, &a.criu.work_path);
            if !a.leave_running {
                // Like runc: a checkpointed (stopped) container is removed.
                if let Ok(c) = rt.load(&a.id) {
                    let _ = c.delete(true);
                }
            }
        }
        Command::Restore(a) => {
            let dir = a.criu.image_dir();
            let (stdio, console) = process_stdio(a.detach, spec_terminal(&dir), &a.console_socket)?;
            let opts = RestoreOpts {
                stdio,
                bundle: a.bundle.clone(),
                // Back into the cgroup the spec names, as runc does.
                cgroup_path: spec_cgroups_path(&dir.join("config.json")),
                ..Default::default()
            };
            let (c, _, _) = rt.restore(&dir, &a.id, opts).map_err(err)?;
            copy_logs(&dir, &a.criu.work_path);
            let relay = relay(console)?;
            write_pid_file(&a.pid_file, c.pid())?;
            if !a.detach {
                let code = c.wait().map_err(err)?;
                if let Some(relay) = relay {
                    relay.finish();
                }
                c.delete(true).map_err(err)?;
                return Ok(ExitCode::from(code.clamp(0, 255) as u8));
            }
        }
        Command::Spec { bundle } => {
            let dir = bundle.clone().unwrap_or_else(|| PathBuf::from("."));
            let path = dir.join("config.json");
            if path.exists() {
                return Err(format!("File {} exists. Remove it first", path.display()));
            }
            std::fs::write(
                &path,
                serde_json::to_vec_pretty(&cli::default_spec()).map_err(err)?,
            )
            .map_err(|e| format!("write {}: {e}", path.display()))?;
        }
        Command::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&cli::features()).map_err(err)?
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `linux.cgroupsPath` of the spec at `path`, if it sets one.
fn spec_cgroups_path(path: &Path) -> Option<String> {
    let spec: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    spec["linux"]["cgroupsPath"].as_str().map(String::from)
}

/// An `exec --process` file: the OCI process object (args, env, cwd, consoleSize), and its
/// `terminal`.
fn process_from_json(path: &Path) -> Result<(ExecOpts, bool)> {
    let text = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| format!("parse {}: {e}", path.display()))?;
    let strings = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let args = strings("args");
    if args.is_empty() {
        return Err(format!("{}: process.args is empty", path.display()));
    }
    let mut opts = ExecOpts::new(args);
    opts.env = strings("env");
    opts.cwd = v["cwd"].as_str().map(PathBuf::from);
    let size = |key: &str| {
        v["consoleSize"][key]
            .as_u64()
            .map(|n| u16::try_from(n).unwrap_or(u16::MAX))
    };
    opts.console_size = size("height").zip(size("width"));
    Ok((opts, v["terminal"].as_bool().unwrap_or(false)))
}

/// With `--work-path`, CRIU's logs go there too (runc keeps them in the work dir).
fn copy_logs(images: &Path, work: &Option<PathBuf>) {
    if let Some(work) = work {
        let _ = std::fs::create_dir_all(work);
        for log in ["dump.log", "restore.log"] {
            let _ = std::fs::copy(images.join(log), work.join(log));
        }
    }
}
