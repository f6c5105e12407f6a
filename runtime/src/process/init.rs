//! The helper binary's side (`migrate-rt-init init|exec`): namespaces, the container's init,
//! and processes exec'd into a running container.
//!
//! This code runs in a fresh single-threaded process, so forking and mount work are safe here.

use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use oci_spec::runtime::{LinuxNamespaceType, LinuxSeccomp, Process};

use super::channel::{self, Message};
use super::plan::{ExecPlan, InitPlan};
use crate::rootfs::{self, StepError};
use crate::seccomp::Filter;
use crate::syscall::process::{self as sys, ForkResult};
use crate::syscall::tty;

/// The fd on which the helper finds its socket to the runtime.
pub const SYNC_FD: i32 = 3;

/// The fd on which the helper finds the console socket, when the process gets a terminal.
pub const CONSOLE_FD: i32 = 4;

/// Entry point of `migrate-rt-init`. Never returns.
pub fn main() -> ! {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let sock = match sys::inherited_fd(SYNC_FD) {
        Ok(fd) => UnixStream::from(fd),
        Err(e) => {
            eprintln!("migrate-rt-init: {e} (this helper is started by the runtime, not by hand)");
            std::process::exit(2);
        }
    };
    let code = match mode.as_str() {
        "init" => helper_init(sock),
        "exec" => helper_exec(sock),
        other => {
            eprintln!("migrate-rt-init: unknown mode {other:?}");
            2
        }
    };
    std::process::exit(code)
}

/// Set once `create` has been told the container is ready and stopped listening.
static READY_SENT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn fail(sock: &mut UnixStream, (step, message): StepError) -> i32 {
    if READY_SENT.load(std::sync::atomic::Ordering::Relaxed) {
        // `create` has returned and nobody reads the channel (the failure came between
        // `start` and exec): the container's stderr is where its owner will look.
        eprintln!("migrate-rt-init: {step}: {message}");
    }
    let _ = channel::send(sock, &Message::Failed { step, message });
    1
}

fn step<T, E: std::fmt::Display>(name: impl Into<String>, r: Result<T, E>) -> Result<T, StepError> {
    r.map_err(|e| (name.into(), e.to_string()))
}

/// Joins the namespaces that have a path, unshares the new ones, clones init, reports its PID.
fn helper_init(mut sock: UnixStream) -> i32 {
    let plan: InitPlan = match channel::recv(&mut sock) {
        Ok(plan) => plan,
        Err(e) => return fail(&mut sock, ("read plan".into(), e.to_string())),
    };
    let console = match console_socket(plan.console) {
        Ok(console) => console,
        Err(e) => return fail(&mut sock, e),
    };
    let namespaces = plan
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    let mut new = CloneFlags::empty();
    // A user namespace joined by path first: the others may belong to it.
    let (user, others): (Vec<_>, Vec<_>) = namespaces
        .iter()
        .partition(|ns| ns.typ() == LinuxNamespaceType::User);
    for ns in user.into_iter().chain(others) {
        let flag = CloneFlags::from_bits_truncate(ns.typ() as libc::c_int);
        match ns.path() {
            Some(path) => {
                if let Err(e) = join_namespace(path, flag) {
                    return fail(&mut sock, e);
                }
            }
            // The cgroup namespace is unshared by init once it sits in its cgroup.
            None if ns.typ() == LinuxNamespaceType::Cgroup => {}
            None => new |= flag,
        }
    }
    // Lowering it needs CAP_SYS_RESOURCE in the host's user namespace, which a new user
    // namespace no longer gives: set it here, as runc does, and init inherits it.
    let oom_score_adj = plan.spec.process().as_ref().and_then(|p| p.oom_score_adj());
    if let Some(adj) = oom_score_adj.filter(|_| new.contains(CloneFlags::CLONE_NEWUSER)) {
        let r = fs::write("/proc/self/oom_score_adj", adj.to_string());
        if let Err(e) = step("set oom_score_adj", r) {
            return fail(&mut sock, e);
        }
    }
    if let Err(e) = step("unshare namespaces", unshare(new)) {
        return fail(&mut sock, e);
    }
    match sys::clone_parent() {
        Err(e) => fail(&mut sock, ("clone init".into(), e.to_string())),
        Ok(ForkResult::Parent(pid)) => {
            drop(console);
            match channel::send(&mut sock, &Message::Pid(pid.as_raw())) {
                Ok(()) => 0,
                Err(_) => 1,
            }
        }
        Ok(ForkResult::Child) => {
            let err = container_init(&mut sock, &plan, console);
            fail(&mut sock, err)
        }
    }
}

/// The console socket the runtime passed on [`CONSOLE_FD`], when the plan says there is one.
fn console_socket(wanted: bool) -> Result<Option<OwnedFd>, StepError> {
    if !wanted {
        return Ok(None);
    }
    step("take console socket", sys::inherited_fd(CONSOLE_FD)).map(Some)
}

fn join_namespace(path: &Path, flag: CloneFlags) -> Result<(), StepError> {
    let name = format!("join namespace {}", path.display());
    let file = step(name.clone(), fs::File::open(path))?;
    step(name, setns(file, flag))
}

/// Runs as the container's init (PID 1 of its namespace). Returns only on failure.
fn container_init(sock: &mut UnixStream, plan: &InitPlan, console: Option<OwnedFd>) -> StepError {
    match prepare_init(sock, plan, console) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

enum Never {}

fn prepare_init(
    sock: &mut UnixStream,
    plan: &InitPlan,
    console: Option<OwnedFd>,
) -> Result<Never, StepError> {
    match step("wait for cgroup placement", channel::recv::<Message>(sock))? {
        Message::Go => {}
        other => {
            return Err((
                "wait for cgroup placement".into(),
                format!("unexpected {other:?}"),
            ))
        }
    }
    let spec = &plan.spec;
    let linux = spec.linux().as_ref();
    let has_ns = |t: LinuxNamespaceType| {
        linux
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|v| v.iter().any(|ns| ns.typ() == t && ns.path().is_none()))
    };
    if has_ns(LinuxNamespaceType::Cgroup) {
        step(
            "unshare cgroup namespace",
            unshare(CloneFlags::CLONE_NEWCGROUP),
        )?;
    }
    step("setsid", nix::unistd::setsid())?;
    // Opened before pivot_root, while the state directory is still reachable. Read-write so the
    // open does not block; `start` opens it for writing and sends one byte.
    let fifo = step(
        format!("open {}", plan.exec_fifo.display()),
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&plan.exec_fifo),
    )?;
    let process = spec
        .process()
        .as_ref()
        .ok_or(("read process".to_string(), "missing".to_string()))?;
    let prepared = rootfs::prepare(spec, &plan.rootfs)?;
    if linux
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|v| v.iter().any(|ns| ns.typ() == LinuxNamespaceType::User))
    {
        become_namespace_root()?;
    }
    rootfs::setup(spec, prepared, plan.cgroup_v2)?;
    // As runc: once the container's /dev/pts is in place, before the root turns read-only.
    if let Some(console) = console {
        setup_terminal(console, process, true)?;
    }
    if let Some(hostname) = spec.hostname() {
        step("set hostname", nix::unistd::sethostname(hostname))?;
    }
    if let Some(domain) = spec.domainname() {
        step("set domainname", set_domainname(domain))?;
    }
    for (key, value) in linux
        .and_then(|l| l.sysctl().as_ref())
        .into_iter()
        .flatten()
    {
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        step(format!("set sysctl {key}"), fs::write(&path, value))?;
    }
    rootfs::finalize(spec)?;
    // In a user namespace the helper set it already, and this file is no longer init's own.
    let current = fs::read_to_string("/proc/self/oom_score_adj").ok();
    if let Some(adj) = process
        .oom_score_adj()
        .filter(|adj| current.as_deref().map(str::trim) != Some(adj.to_string().as_str()))
    {
        step(
            "set oom_score_adj",
            fs::write("/proc/self/oom_score_adj", adj.to_string()),
        )?;
    }
    let seccomp = step("compile seccomp filter", Filter::from_spec(spec))?;
    let exe = finish_process(process, seccomp.as_ref())?;
    step("report ready", channel::send(sock, &Message::Ready))?;
    READY_SENT.store(true, std::sync::atomic::Ordering::Relaxed);
    wait_for_start(fifo)?;
    exec(&exe, process, seccomp.as_ref())
}

/// In a user namespace, init starts with the runtime's (unmapped) ids: it becomes the
/// namespace's root, so that what it creates from here on is the container root's. The runtime
/// wrote the mappings before it said "go".
fn become_namespace_root() -> Result<(), StepError> {
    let (uid, gid) = (nix::unistd::Uid::from_raw(0), nix::unistd::Gid::from_raw(0));
    let hint = |e: nix::Error| match e {
        nix::Error::EINVAL => format!("{e} (0 is not mapped in the user namespace)"),
        e => e.to_string(),
    };
    nix::unistd::setresgid(gid, gid, gid)
        .map_err(|e| ("become gid 0 in the user namespace".to_string(), hint(e)))?;
    nix::unistd::setresuid(uid, uid, uid)
        .map_err(|e| ("become uid 0 in the user namespace".to_string(), hint(e)))
}

/// Gives the calling session leader a terminal, as runc does: a pty from the container's own
/// devpts (so the slave is the container's), sized as `process.consoleSize` says; with
/// `mount_console` its slave is also bound on `/dev/console`. The master goes to the console
/// socket; the slave becomes stdin, stdout, stderr and the controlling terminal, owned by the
/// process's user (so it can reopen `/dev/tty`).
fn setup_terminal(
    console: OwnedFd,
    process: &Process,
    mount_console: bool,
) -> Result<(), StepError> {
    let pty = step(
        "allocate pty from /dev/pts/ptmx",
        tty::open_pty(Path::new("/dev/pts")),
    )?;
    if let Some(size) = process.console_size() {
        if size.height() != 0 && size.width() != 0 {
            let clamp = |v: u64| u16::try_from(v).unwrap_or(u16::MAX);
            step(
                format!("set console size {}x{}", size.height(), size.width()),
                tty::set_window_size(
                    pty.master.as_fd(),
                    clamp(size.height()),
                    clamp(size.width()),
                ),
            )?;
        }
    }
    if mount_console {
        mount_console_at(&pty.slave)?;
    }
    step(
        "send pty master to the console socket",
        tty::send_fd(console.as_fd(), tty::CONSOLE_NAME, pty.master.as_fd()),
    )?;
    drop((pty.master, console));
    let slave = step(
        format!("open {}", pty.slave.display()),
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(&pty.slave),
    )?;
    step(
        format!(
            "give {} to uid {}",
            pty.slave.display(),
            process.user().uid()
        ),
        nix::unistd::fchown(
            &slave,
            Some(nix::unistd::Uid::from_raw(process.user().uid())),
            None,
        ),
    )?;
    step("make the pty stdin", nix::unistd::dup2_stdin(&slave))?;
    step("make the pty stdout", nix::unistd::dup2_stdout(&slave))?;
    step("make the pty stderr", nix::unistd::dup2_stderr(&slave))?;
    step(
        "make the pty the controlling terminal",
        tty::set_controlling_terminal(std::io::stdin().as_fd()),
    )
}

/// Binds the pty slave on `/dev/console` (creating the mount point), as runc does.
fn mount_console_at(slave: &Path) -> Result<(), StepError> {
    let name = "mount the pty on /dev/console";
    match fs::symlink_metadata("/dev/console") {
        Ok(m) if m.file_type().is_symlink() => {
            return Err((name.into(), "/dev/console is a symbolic link".into()))
        }
        Ok(_) => {}
        // Not opened when it exists: it could be a device node.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            step(
                name,
                fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o666)
                    .custom_flags(libc::O_CLOEXEC)
                    .open("/dev/console"),
            )?;
        }
        Err(e) => return Err((name.into(), e.to_string())),
    }
    step(
        name,
        nix::mount::mount(
            Some(slave),
            "/dev/console",
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        ),
    )
}

/// Applies everything of `process` that belongs to the new process itself and resolves its
/// executable: rlimits, umask, user and groups, capabilities, no_new_privs, cwd.
fn finish_process(process: &Process, seccomp: Option<&Filter>) -> Result<PathBuf, StepError> {
    for rl in process.rlimits().iter().flatten() {
        let name = rl.typ().to_string();
        let resource =
            rlimit_resource(&name).ok_or((format!("set {name}"), "unknown rlimit".to_string()))?;
        step(
            format!("set {name} to {}/{}", rl.soft(), rl.hard()),
            nix::sys::resource::setrlimit(resource, rl.soft(), rl.hard()),
        )?;
    }
    if let Some(mask) = process.user().umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    // As runc: without no_new_privs the filter needs CAP_SYS_ADMIN, so it goes in before the
    // capabilities are dropped; with it, as late as possible (see `exec`).
    if let Some(filter) = seccomp.filter(|_| !process.no_new_privileges().unwrap_or(false)) {
        step("install seccomp filter", filter.install())?;
    }
    set_user_and_capabilities(process)?;
    if process.no_new_privileges().unwrap_or(false) {
        step("set no_new_privs", nix::sys::prctl::set_no_new_privs())?;
    }
    step(
        format!("chdir to {}", process.cwd().display()),
        nix::unistd::chdir(process.cwd()),
    )?;
    let args = process.args().as_deref().unwrap_or(&[]);
    find_executable(&args[0], process.env().as_deref().unwrap_or(&[]))
}

fn set_user_and_capabilities(process: &Process) -> Result<(), StepError> {
    use caps::CapSet;
    let user = process.user();
    let caps = process.capabilities().as_ref();
    let parse =
        |set: Option<&oci_spec::runtime::Capabilities>| -> Result<caps::CapsHashSet, StepError> {
            set.into_iter()
                .flatten()
                .map(|c| {
                    let name = format!("CAP_{c}");
                    caps::Capability::from_str(&name)
                        .map_err(|e| (format!("parse capability {name}"), e.to_string()))
                })
                .collect()
        };
    let bounding = parse(caps.and_then(|c| c.bounding().as_ref()))?;
    for cap in caps::all() {
        if !bounding.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            step(
                format!("drop {cap} from the bounding set"),
                caps::drop(None, CapSet::Bounding, cap),
            )?;
        }
    }
    step(
        "keep capabilities across setuid",
        nix::sys::prctl::set_keepcaps(true),
    )?;
    let gids: Vec<nix::unistd::Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    step("set additional groups", nix::unistd::setgroups(&gids))?;
    let gid = nix::unistd::Gid::from_raw(user.gid());
    let uid = nix::unistd::Uid::from_raw(user.uid());
    step(
        format!("set gid {gid}"),
        nix::unistd::setresgid(gid, gid, gid),
    )?;
    step(
        format!("set uid {uid}"),
        nix::unistd::setresuid(uid, uid, uid),
    )?;
    let sets = [
        (
            CapSet::Inheritable,
            parse(caps.and_then(|c| c.inheritable().as_ref()))?,
        ),
        (
            CapSet::Effective,
            parse(caps.and_then(|c| c.effective().as_ref()))?,
        ),
        (
            CapSet::Permitted,
            parse(caps.and_then(|c| c.permitted().as_ref()))?,
        ),
    ];
    // Effective may only shrink to a subset of permitted: widen effective to the target
    // permitted set first when needed, then set permitted, then the final effective set.
    let (_, permitted) = &sets[2];
    let (_, effective) = &sets[1];
    step(
        "set inheritable capabilities",
        caps::set(None, CapSet::Inheritable, &sets[0].1),
    )?;
    step(
        "set effective capabilities",
        caps::set(None, CapSet::Effective, &(effective & permitted)),
    )?;
    step(
        "set permitted capabilities",
        caps::set(None, CapSet::Permitted, permitted),
    )?;
    if !effective.is_subset(permitted) {
        return Err((
            "set effective capabilities".into(),
            "effective set is not a subset of permitted".into(),
        ));
    }
    for cap in parse(caps.and_then(|c| c.ambient().as_ref()))? {
        // As runc: an ambient capability also needs to be inheritable and permitted, and
        // `runc spec`'s template lists ambient ones without inheritable ones; warn, go on.
        if let Err(e) = caps::raise(None, CapSet::Ambient, cap) {
            eprintln!("warning: cannot raise ambient capability {cap}: {e}");
        }
    }
    step(
        "stop keeping capabilities",
        nix::sys::prctl::set_keepcaps(false),
    )
}

fn wait_for_start(mut fifo: fs::File) -> Result<(), StepError> {
    let mut byte = [0u8; 1];
    step("wait for start", fifo.read_exact(&mut byte))?;
    Ok(())
}

fn exec(exe: &Path, process: &Process, seccomp: Option<&Filter>) -> Result<Never, StepError> {
    let cstr = |s: &str| CString::new(s).map_err(|e| ("exec".to_string(), e.to_string()));
    let args: Vec<CString> = process
        .args()
        .iter()
        .flatten()
        .map(|a| cstr(a))
        .collect::<Result<_, _>>()?;
    let env: Vec<CString> = process
        .env()
        .iter()
        .flatten()
        .map(|e| cstr(e))
        .collect::<Result<_, _>>()?;
    let path = cstr(&exe.to_string_lossy())?;
    step("reset SIGPIPE", sys::reset_sigpipe())?;
    step("close inherited fds", sys::cloexec_from(3))?;
    // With no_new_privs the filter goes in last, so the profile only has to allow execve.
    if let Some(filter) = seccomp.filter(|_| process.no_new_privileges().unwrap_or(false)) {
        step("install seccomp filter", filter.install())?;
    }
    let err = nix::unistd::execve(&path, &args, &env).unwrap_err();
    Err((format!("exec {}", exe.display()), err.to_string()))
}

/// Finds `name` like execvp would, using the PATH of the process's environment.
fn find_executable(name: &str, env: &[String]) -> Result<PathBuf, StepError> {
    use std::os::unix::fs::PermissionsExt;
    let is_exe = |p: &Path| {
        fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return if is_exe(&p) {
            Ok(p)
        } else {
            Err((
                format!("find executable {name}"),
                "no such executable file".into(),
            ))
        };
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    path.split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| is_exe(p))
        .ok_or((
            format!("find executable {name}"),
            format!("not found in PATH {path}"),
        ))
}

fn rlimit_resource(name: &str) -> Option<nix::sys::resource::Resource> {
    use nix::sys::resource::Resource as R;
    Some(match name {
        "RLIMIT_CPU" => R::RLIMIT_CPU,
        "RLIMIT_FSIZE" => R::RLIMIT_FSIZE,
        "RLIMIT_DATA" => R::RLIMIT_DATA,
        "RLIMIT_STACK" => R::RLIMIT_STACK,
        "RLIMIT_CORE" => R::RLIMIT_CORE,
        "RLIMIT_RSS" => R::RLIMIT_RSS,
        "RLIMIT_NPROC" => R::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => R::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => R::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => R::RLIMIT_AS,
        "RLIMIT_LOCKS" => R::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => R::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => R::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => R::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => R::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => R::RLIMIT_RTTIME,
        _ => return None,
    })
}

fn set_domainname(name: &str) -> std::io::Result<()> {
    fs::write("/proc/sys/kernel/domainname", name)
}

/// Namespaces an exec'd process joins, in order (user first: the others belong to it; mount
/// last: it changes root and cwd).
const EXEC_NAMESPACES: [(&str, CloneFlags); 8] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("time", CloneFlags::from_bits_retain(libc::CLONE_NEWTIME)),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// Joins a running container's namespaces and runs a process there; exits with its status.
///
/// The helper itself stays outside the container's cgroup (so killing the container does not
/// kill it before it can report the exit status): it forks the process, reports its PID, and
/// the runtime moves that PID into the cgroup before saying "go". Setup and exec errors come
/// back over a close-on-exec pipe: EOF there means the exec succeeded.
fn helper_exec(mut sock: UnixStream) -> i32 {
    let plan: ExecPlan = match channel::recv(&mut sock) {
        Ok(plan) => plan,
        Err(e) => return fail(&mut sock, ("read plan".into(), e.to_string())),
    };
    let console = match console_socket(plan.console) {
        Ok(console) => console,
        Err(e) => return fail(&mut sock, e),
    };
    if let Err(e) = join_container(plan.init_pid) {
        return fail(&mut sock, e);
    }
    let pipes = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .and_then(|a| Ok((a, nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)));
    let ((go_r, go_w), (err_r, err_w)) = match pipes {
        Ok(p) => p,
        Err(e) => return fail(&mut sock, ("create pipes".into(), e.to_string())),
    };
    match sys::fork() {
        Err(e) => fail(&mut sock, ("fork".into(), e.to_string())),
        Ok(ForkResult::Child) => {
            drop((go_w, err_r));
            let err = match exec_child(go_r, &plan.process, plan.seccomp.as_ref(), console) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            let _ = fs::File::from(err_w).write_all(format!("{}\0{}", err.0, err.1).as_bytes());
            127
        }
        Ok(ForkResult::Parent(child)) => {
            drop((go_r, err_w, console));
            let started = relay_start(&mut sock, child.as_raw(), go_w, err_r);
            if started && plan.detach {
                // Orphaned, the process goes to the caller's subreaper, which reaps it.
                return 0;
            }
            let code = match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, code)) => code,
                Ok(WaitStatus::Signaled(_, sig, _)) => 128 + sig as i32,
                _ => 255,
            };
            if started {
                code
            } else {
                1
            }
        }
    }
}

/// Child half of exec: waits until it sits in the container's cgroup, takes its terminal if it
/// gets one (in a session of its own, as runc's exec does), and execs.
fn exec_child(
    go: OwnedFd,
    process: &Process,
    seccomp: Option<&LinuxSeccomp>,
    console: Option<OwnedFd>,
) -> Result<Never, StepError> {
    let seccomp = step(
        "compile seccomp filter",
        seccomp.map(crate::seccomp::compile).transpose(),
    )?;
    let mut byte = [0u8; 1];
    step(
        "wait for cgroup placement",
        fs::File::from(go).read_exact(&mut byte),
    )?;
    if let Some(console) = console {
        step("setsid", nix::unistd::setsid())?;
        setup_terminal(console, process, false)?;
    }
    let exe = finish_process(process, seccomp.as_ref())?;
    exec(&exe, process, seccomp.as_ref())
}

/// Parent half of exec: PID out, "go" in, then Ready or the child's error out. Returns whether
/// the process was exec'd.
fn relay_start(sock: &mut UnixStream, pid: i32, go: OwnedFd, err: OwnedFd) -> bool {
    if channel::send(sock, &Message::Pid(pid)).is_err() {
        return false;
    }
    match channel::recv::<Message>(sock) {
        Ok(Message::Go) => {}
        _ => return false,
    }
    if fs::File::from(go).write_all(&[0]).is_err() {
        return false;
    }
    let mut report = String::new();
    let _ = fs::File::from(err).read_to_string(&mut report);
    let msg = match report.split_once('\0') {
        None if report.is_empty() => Message::Ready,
        None => Message::Failed {
            step: "exec".into(),
            message: report,
        },
        Some((step, message)) => Message::Failed {
            step: step.into(),
            message: message.into(),
        },
    };
    let ok = msg == Message::Ready;
    let _ = channel::send(sock, &msg);
    ok
}

fn join_container(pid: i32) -> Result<(), StepError> {
    let mut files: Vec<(String, OwnedFd, CloneFlags)> = Vec::new();
    for (name, flag) in EXEC_NAMESPACES {
        let theirs = format!("/proc/{pid}/ns/{name}");
        let ours = format!("/proc/self/ns/{name}");
        // Joining a namespace we already share is pointless (and EINVAL for some types).
        if fs::read_link(&theirs).ok() == fs::read_link(&ours).ok() {
            continue;
        }
        let file = step(format!("open {theirs}"), fs::File::open(&theirs))?;
        files.push((theirs, file.into(), flag));
    }
    let same_mount_ns = !files.iter().any(|(_, _, f)| *f == CloneFlags::CLONE_NEWNS);
    for (path, fd, flag) in files {
        step(
            format!("join {path} (fd {})", fd.as_raw_fd()),
            setns(fd, flag),
        )?;
    }
    if same_mount_ns {
        // A container without a mount namespace of its own: its root is a chroot.
        let root = format!("/proc/{pid}/root");
        step(
            format!("chroot to {root}"),
            nix::unistd::chroot(root.as_str()),
        )?;
        step("chdir to /", nix::unistd::chdir("/"))?;
    }
    Ok(())
}
