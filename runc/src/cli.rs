//! runc's flags and commands, and the documents `spec` and `features` print.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};

/// runc-compatible command line for the migrate runtime.
#[derive(Debug, Parser)]
#[command(name = "migrate-runc", version)]
pub struct Cli {
    /// Where container state lives.
    #[arg(long, global = true, default_value = "/run/migrate-runc")]
    pub root: PathBuf,
    /// Also write errors to this file.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// How errors are written: text or json.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Accepted for compatibility (nothing more is logged).
    #[arg(long, global = true)]
    pub debug: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container (its process waits for `start`).
    Create(CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Create and start a container; without --detach, wait and exit with its code.
    Run(RunArgs),
    /// Print the OCI state of a container.
    State { id: String },
    /// Send a signal (default TERM) to the container's init, or with --all to every process.
    Kill {
        id: String,
        #[arg(default_value = "TERM")]
        signal: String,
        #[arg(short, long)]
        all: bool,
    },
    /// Delete a stopped container (a running one with --force).
    Delete {
        id: String,
        #[arg(short, long)]
        force: bool,
    },
    /// Freeze all processes of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// List the processes of a container.
    Ps {
        id: String,
        #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
    },
    /// List containers.
    List {
        #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Run a process in a running container.
    Exec(ExecArgs),
    /// Checkpoint a running container with CRIU.
    Checkpoint(CheckpointArgs),
    /// Restore a container from a checkpoint.
    Restore(RestoreArgs),
    /// Write a default config.json.
    Spec {
        #[arg(short, long)]
        bundle: Option<PathBuf>,
    },
    /// Print what this runtime supports (JSON).
    Features,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    pub id: String,
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// With `process.terminal`: the unix socket that receives the pty master.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Accepted for compatibility.
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for compatibility.
    #[arg(long)]
    pub no_new_keyring: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    #[arg(short, long)]
    pub detach: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    pub id: String,
    /// The command (unless --process).
    #[arg(trailing_var_arg = true)]
    pub command: Vec<String>,
    /// An OCI process JSON file.
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Give the process a terminal (ignored with --process: its `terminal` decides).
    #[arg(short, long)]
    pub tty: bool,
    #[arg(short, long)]
    pub detach: bool,
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// With --tty and --detach: the unix socket that receives the pty master.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    #[arg(short, long)]
    pub env: Vec<String>,
    #[arg(long)]
    pub cwd: Option<PathBuf>,
}

/// runc's flags that `checkpoint` and `restore` share.
#[derive(Debug, Args)]
pub struct CriuArgs {
    /// The checkpoint's directory (default `./checkpoint`).
    #[arg(long)]
    pub image_path: Option<PathBuf>,
    /// Where CRIU's logs are copied.
    #[arg(long)]
    pub work_path: Option<PathBuf>,
    /// Dump established TCP connections (restore uses the checkpoint's own choice).
    #[arg(long)]
    pub tcp_established: bool,
    /// Allow external unix sockets (restore uses the checkpoint's own choice).
    #[arg(long)]
    pub ext_unix_sk: bool,
    /// Dump file locks (restore uses the checkpoint's own choice).
    #[arg(long)]
    pub file_locks: bool,
    /// Accepted for compatibility (cgroups are restored softly).
    #[arg(long)]
    pub manage_cgroups_mode: Option<String>,
}

impl CriuArgs {
    /// The checkpoint's directory.
    pub fn image_dir(&self) -> PathBuf {
        self.image_path
            .clone()
            .unwrap_or_else(|| PathBuf::from("checkpoint"))
    }
}

#[derive(Debug, Args)]
pub struct CheckpointArgs {
    pub id: String,
    #[command(flatten)]
    pub criu: CriuArgs,
    #[arg(long)]
    pub leave_running: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    pub id: String,
    #[command(flatten)]
    pub criu: CriuArgs,
    #[arg(short, long)]
    pub bundle: Option<PathBuf>,
    #[arg(short, long)]
    pub detach: bool,
    /// For a container with a terminal, detached: the unix socket that receives the new master.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
}

/// What `spec` writes: a minimal container running `sh` in `rootfs/`, close to runc's.
pub fn default_spec() -> Value {
    json!({
        "ociVersion": "1.2.0",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
            "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

/// What `features` prints (the OCI features document).
pub fn features() -> Value {
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": ["ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "bind", "rbind", "private", "rprivate", "shared", "rshared", "slave", "rslave", "relatime", "strictatime", "noatime"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {
                "enabled": true,
                "actions": runtime::seccomp::ACTIONS,
                "operators": runtime::seccomp::OPERATORS,
                "archs": runtime::seccomp::ARCHES,
                "knownFlags": runtime::seccomp::FLAGS,
                "supportedFlags": runtime::seccomp::FLAGS
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false}
        },
        "annotations": {"org.migrate.runtime": "migrate-runc"}
    })
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_what_podman_and_containerd_pass() {
        let cli = Cli::try_parse_from([
            "migrate-runc",
            "--root",
            "/r",
            "--log",
            "/l",
            "--log-format",
            "json",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/p",
            "c1",
        ])
        .unwrap();
        assert_eq!(cli.root, PathBuf::from("/r"));
        match cli.command {
            Command::Create(a) => {
                assert_eq!(a.id, "c1");
                assert_eq!(a.bundle, PathBuf::from("/b"));
                assert_eq!(a.pid_file, Some(PathBuf::from("/p")));
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from([
            "migrate-runc",
            "checkpoint",
            "--image-path",
            "/i",
            "--work-path",
            "/w",
            "--leave-running",
            "--tcp-established",
            "--file-locks",
            "--manage-cgroups-mode",
            "soft",
            "c1",
        ])
        .unwrap();
        assert!(
            matches!(cli.command, Command::Checkpoint(ref a) if a.leave_running && a.criu.tcp_established && a.criu.file_locks)
        );
        let cli = Cli::try_parse_from(["migrate-runc", "kill", "--all", "c1", "9"]).unwrap();
        assert!(
            matches!(cli.command, Command::Kill { ref signal, all: true, .. } if signal == "9")
        );
        let cli =
            Cli::try_parse_from(["migrate-runc", "exec", "c1", "sh", "-c", "echo hi"]).unwrap();
        assert!(
            matches!(cli.command, Command::Exec(ref a) if a.command == ["sh", "-c", "echo hi"])
        );
        let cli = Cli::try_parse_from([
            "migrate-runc",
            "exec",
            "-t",
            "-d",
            "--console-socket",
            "/s",
            "c1",
            "sh",
        ])
        .unwrap();
        assert!(
            matches!(cli.command, Command::Exec(ref a) if a.tty && a.detach && a.console_socket == Some(PathBuf::from("/s")) && a.command == ["sh"])
        );
        assert!(Cli::try_parse_from(["migrate-runc", "list", "--format", "yaml"]).is_err());
        assert!(Cli::try_parse_from(["migrate-runc", "start"]).is_err());
    }

    #[test]
    fn signals_by_name_and_number() {
        use nix::sys::signal::Signal;
        assert_eq!(crate::parse_signal("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(crate::parse_signal("sigterm").unwrap(), Signal::SIGTERM);
        assert_eq!(crate::parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(crate::parse_signal("NOPE").is_err());
        assert!(crate::parse_signal("999").is_err());
    }

    #[test]
    fn the_default_spec_loads_as_a_bundle() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::to_vec(&default_spec()).unwrap(),
        )
        .unwrap();
        runtime::spec::Bundle::load(dir.path()).unwrap();
    }
}
