//! A real `migrate-agent` process on a temp state directory and socket, driven through the real
//! `migrate` CLI (or the gRPC client). Its `Drop` stops the agent and removes every container,
//! shim, cgroup and directory it made.
//!
//! An agent can run in other namespaces than the test's: a named network namespace, or the
//! network and mount namespaces of a test host (see `hosts.rs`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use runtime::cgroups::Cgroup;

use crate::rt::wait_for;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Path of a workspace binary in `target/<profile>/`: next to the running binary (the demo and
/// benchmarks) or one directory up (test binaries live in `target/<profile>/deps/`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let here = exe.parent().expect("exe dir");
    let candidates = [
        here.join(name),
        here.parent().map(|d| d.join(name)).unwrap_or_default(),
    ];
    match candidates.iter().find(|p| p.is_file()) {
        Some(p) => p.clone(),
        None => panic!(
            "{} is missing; build it with `cargo build --workspace --bins` (deploy/test.sh does)",
            candidates[1].display()
        ),
    }
}

/// Namespaces a test agent runs in instead of the test's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentNs {
    /// The named network namespace `/run/netns/<name>`; only the network namespace changes, so
    /// `/sys` and `/run/netns` stay the test's.
    Net(String),
    /// The network and mount namespaces of process `pid`, a test host's namespace holder.
    Host(u32),
}

/// A running agent.
pub struct TestAgent {
    /// Its node name.
    pub node: String,
    /// Its config file.
    pub config: PathBuf,
    /// Its local socket.
    pub socket: PathBuf,
    /// Its state directory.
    pub state_dir: PathBuf,
    /// Its cgroup parent.
    pub cgroup_parent: String,
    /// The namespaces it runs in; `None`: the test's own.
    pub ns: Option<AgentNs>,
    env: BTreeMap<String, String>,
    /// Where its moves keep their images.
    pub scratch: tempfile::TempDir,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl TestAgent {
    /// Writes a config (with `extra` TOML appended) and starts the agent.
    pub fn start(node: &str, extra: &str) -> TestAgent {
        TestAgent::start_in(node, extra, None)
    }

    /// Like [`TestAgent::start`], but runs the agent (and every restart of it) in `ns`.
    pub fn start_in(node: &str, extra: &str, ns: Option<AgentNs>) -> TestAgent {
        crate::prereq::require_runtime();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = tempfile::Builder::new()
            .prefix("migrate-agent-")
            .tempdir_in("/run")
            .expect("agent dir");
        let state_dir = dir.path().join("state");
        let socket = dir.path().join("agent.sock");
        let cgroup_parent = format!("/migrate-test-agent-{}-{n}", std::process::id());
        let config = dir.path().join("agent.toml");
        // Moves keep their images on tmpfs (as in production), in a directory of this agent's
        // own so tests can check it is left empty.
        let scratch = tempfile::Builder::new()
            .prefix("migrate-test-scratch-")
            .tempdir_in("/dev/shm")
            .expect("scratch dir on /dev/shm");
        let text = format!(
            "node = \"{node}\"\nstate_dir = \"{}\"\nsocket = \"{}\"\ncgroup_parent = \"{cgroup_parent}\"\nscratch_dir = \"{}\"\n{extra}\n",
            state_dir.display(),
            socket.display(),
            scratch.path().display()
        );
        std::fs::write(&config, text).expect("write config");
        let mut agent = TestAgent {
            node: node.into(),
            config,
            socket,
            state_dir,
            cgroup_parent,
            ns,
            env: BTreeMap::new(),
            scratch,
            dir,
            child: None,
        };
        agent.restart();
        agent
    }

    /// (Re)starts the agent process and waits for its socket.
    pub fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .expect("log");
        let child = self
            .command()
            .arg("--config")
            .arg(&self.config)
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start migrate-agent: {e} (nsenter comes from util-linux; run `{}`)",
                    crate::prereq::SETUP
                )
            });
        self.child = Some(child);
        let sock = self.socket.clone();
        wait_for("the agent's socket", Duration::from_secs(20), || {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("migrate-agent exited with {status}:\n{}", self.log());
                }
            }
            std::os::unix::net::UnixStream::connect(&sock).ok()
        });
    }

    /// The agent's command line without its arguments: the binary, entered into the agent's
    /// namespaces when it has its own.
    fn command(&self) -> Command {
        let agent = binary("migrate-agent");
        let enter: Vec<String> = match &self.ns {
            None => return Command::new(agent),
            Some(AgentNs::Net(name)) => vec![format!("--net=/run/netns/{name}")],
            Some(AgentNs::Host(pid)) => {
                vec![format!("--target={pid}"), "--mount".into(), "--net".into()]
            }
        };
        let mut cmd = Command::new("nsenter");
        cmd.args(enter).arg("--").arg(agent);
        cmd
    }

    /// Sets (or, with an empty `value`, removes) an environment variable of the agent process
    /// and restarts the agent so it takes effect (or starts it, if it is not running).
    pub fn set_env(&mut self, key: &str, value: &str) {
        if value.is_empty() {
            self.env.remove(key);
        } else {
            self.env.insert(key.to_string(), value.to_string());
        }
        self.stop();
        self.restart();
    }

    /// Stops the agent if it runs: SIGTERM, then SIGKILL after 10 s (containers survive both).
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        if let Ok(None) = c.try_wait() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let exited = std::iter::repeat_with(|| {
                std::thread::sleep(Duration::from_millis(20));
                c.try_wait()
            })
            .take(500)
            .any(|r| !matches!(r, Ok(None)));
            if !exited {
                let _ = c.kill();
            }
        }
        let _ = c.wait();
    }

    /// SIGKILLs the agent (containers must survive).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERMs the agent and waits for it to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("agent running");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        c.wait().expect("wait agent")
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// Runs the real `migrate` CLI against this agent.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(binary("migrate"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run migrate")
    }

    /// Starts the real `migrate` CLI against this agent without waiting (stdout and stderr
    /// piped; collect them with `wait_with_output`).
    pub fn spawn_cli(&self, args: &[&str]) -> Child {
        Command::new(binary("migrate"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run migrate")
    }

    /// Runs the CLI and returns stdout, panicking with stderr and the agent log if it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        if !out.status.success() {
            panic!(
                "migrate {args:?} failed ({}): {}\n--- agent log ---\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs the CLI with `--output json` and parses its lines (one JSON value each).
    pub fn json(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        self.ok(&all)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// Ids of the containers this agent reports running.
    pub fn running(&self) -> Vec<String> {
        self.json(&["ps"])
            .into_iter()
            .filter(|c| c["status"] == "running")
            .map(|c| c["id"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// The runtime's state root of this agent.
    pub fn runtime(&self) -> runtime::Runtime {
        runtime::Runtime::new(self.state_dir.join("containers"))
            .expect("runtime")
            .with_cgroup_parent(self.cgroup_parent.clone())
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.kill9();
        if let Ok(rt) = runtime::Runtime::new(self.state_dir.join("containers")) {
            for c in rt.list().unwrap_or_default() {
                let _ = c.delete(true);
            }
            let _ = Cgroup::open(rt.cgroup_layout(), &self.cgroup_parent).destroy();
        }
    }
}
