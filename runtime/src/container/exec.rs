//! `exec`: run another process inside a running container, in all its namespaces and cgroup.

use std::process::Child;

use oci_spec::runtime::{BoxBuilder, Process};

use super::Container;
use crate::error::{Error, Result};
use crate::process::channel::{self, Message};
use crate::process::plan::ExecPlan;
use crate::process::spawn::{expect, spawn_helper, ContainerStdio, Stdio};
use crate::state::Status;

/// What to run with `exec`.
pub struct ExecOpts {
    /// Arguments; `args[0]` is looked up in the process's PATH inside the container.
    pub args: Vec<String>,
    /// Extra `KEY=VALUE` entries on top of the container process's environment.
    pub env: Vec<String>,
    /// Working directory; defaults to the container process's.
    pub cwd: Option<std::path::PathBuf>,
    /// The process's stdio; [`Stdio::Terminal`] gives it a pty of the container's.
    pub stdio: Stdio,
    /// Rows and columns of the terminal, with [`Stdio::Terminal`].
    pub console_size: Option<(u16, u16)>,
    /// Leave the process to the caller's reaper, as `runc exec -d` does: the helper exits as
    /// soon as it runs, so it becomes a child of the nearest child subreaper (conmon, a
    /// containerd shim), which collects its exit status. [`ExecProcess::wait`] then only
    /// waits for the helper.
    pub detach: bool,
}

impl ExecOpts {
    /// Runs `args` with piped stdio and the container process's environment, user and cwd.
    pub fn new<S: Into<String>>(args: impl IntoIterator<Item = S>) -> ExecOpts {
        ExecOpts {
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            cwd: None,
            stdio: Stdio::Pipes,
            console_size: None,
            detach: false,
        }
    }
}

/// A process started with `exec`.
pub struct ExecProcess {
    /// Host PID of the process.
    pub pid: i32,
    helper: Child,
}

impl ExecProcess {
    /// Waits for the process; returns its exit code (128 + signal when killed).
    pub fn wait(mut self) -> Result<i32> {
        let status = self
            .helper
            .wait()
            .map_err(|e| Error::io("wait for exec helper", "migrate-rt-init", e))?;
        Ok(status.code().unwrap_or(-1))
    }
}

impl Container {
    /// Starts a process in the container. Its user, capabilities and environment are the
    /// container process's, with `opts` on top.
    pub fn exec(&self, opts: ExecOpts) -> Result<(ExecProcess, ContainerStdio)> {
        self.require(&[Status::Running], "exec")?;
        if opts.args.is_empty() || opts.args[0].is_empty() {
            return Err(Error::Init {
                step: "exec".into(),
                message: "no command given".into(),
            });
        }
        let spec = self.spec()?;
        let mut process: Process = spec.process().clone().unwrap_or_default();
        process.set_args(Some(opts.args));
        let mut env = process.env().clone().unwrap_or_default();
        env.extend(opts.env);
        process.set_env(Some(env));
        if let Some(cwd) = opts.cwd {
            process.set_cwd(cwd);
        }
        let terminal = matches!(opts.stdio, Stdio::Terminal { .. });
        process.set_terminal(Some(terminal));
        process.set_console_size(opts.console_size.map(|(rows, cols)| {
            BoxBuilder::default()
                .height(u64::from(rows))
                .width(u64::from(cols))
                .build()
                .expect("box has every field")
        }));
        let (fds, stdio) = opts.stdio.into_helper_stdio()?;
        let plan = ExecPlan {
            init_pid: self.state.pid,
            process,
            console: fds.console.is_some(),
            seccomp: spec.linux().as_ref().and_then(|l| l.seccomp().clone()),
            detach: opts.detach,
        };
        let mut helper = spawn_helper(&self.helper, "exec", fds)?;
        let started = self.start_exec(&mut helper.sock, &plan);
        match started {
            Ok(pid) => Ok((
                ExecProcess {
                    pid,
                    helper: helper.child,
                },
                stdio,
            )),
            Err(e) => {
                let _ = helper.child.kill();
                let _ = helper.child.wait();
                Err(e)
            }
        }
    }
}

impl Container {
    /// Sends the plan, moves the forked process into the cgroup, releases it, and waits until
    /// it exec'd. Returns its host PID.
    fn start_exec(
        &self,
        sock: &mut std::os::unix::net::UnixStream,
        plan: &ExecPlan,
    ) -> Result<i32> {
        channel::send(sock, plan).map_err(|e| Error::io("send exec plan to", &self.helper, e))?;
        let pid = match expect(sock, "exec pid")? {
            Message::Pid(pid) => pid,
            other => {
                return Err(Error::Init {
                    step: "exec".into(),
                    message: format!("unexpected {other:?}"),
                })
            }
        };
        self.cgroup().add_process(pid)?;
        channel::send(sock, &Message::Go)
            .map_err(|e| Error::io("release exec'd process via", &self.helper, e))?;
        match expect(sock, "exec")? {
            Message::Ready => Ok(pid),
            other => Err(Error::Init {
                step: "exec".into(),
                message: format!("unexpected {other:?}"),
            }),
        }
    }
}
