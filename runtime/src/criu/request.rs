//! What a dump or restore asks of CRIU, and its translation into CRIU's `criu_opts`.
//!
//! Descriptors meant for CRIU's own fd table (`inherit_fd`, the page-server socket) are
//! collected in [`ChildFds`] and installed as fds 4, 5, ... of the `criu swrk` child; fd 3 is
//! the RPC socket. Directory descriptors (`images_dir_fd`, `work_dir_fd`) stay in our table:
//! CRIU reopens them through `/proc/<our pid>/fd/<n>` (CRIU-NOTES §2 item 5).

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use protobuf::MessageField;
use rust_criu::rust_criu_protobuf::rpc;

use super::error::CriuError;

/// The fd number of the RPC socket in the `criu swrk` child (`criu swrk 3`).
pub(crate) const SWRK_FD: RawFd = 3;

/// The log level used when a request does not set one: 4, everything (as runc and crun do).
pub const DEFAULT_LOG_LEVEL: u32 = 4;

/// Log file names; CRIU wants bare names and writes them into the work dir, which is the
/// images dir unless a request names another (then the log is copied next to the images).
pub(crate) mod log_name {
    pub const DUMP: &str = "dump.log";
    pub const PRE_DUMP: &str = "pre-dump.log";
    pub const RESTORE: &str = "restore.log";
    pub const CPUINFO_DUMP: &str = "cpuinfo-dump.log";
    pub const CPUINFO_CHECK: &str = "cpuinfo-check.log";
}

/// How CRIU treats the cgroups of the tree (`--manage-cgroups`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CgroupMode {
    /// Leave cgroups alone.
    Ignore,
    /// Restore tasks into the same cgroups, touch no properties.
    None,
    /// Restore properties only.
    Props,
    /// Create missing cgroups with saved properties, keep existing ones as they are.
    Soft,
    /// Create and configure every cgroup.
    Full,
    /// Like full, but fail when a cgroup already exists.
    Strict,
    /// CRIU's default (soft).
    Default,
}

impl From<CgroupMode> for rpc::Criu_cg_mode {
    fn from(mode: CgroupMode) -> rpc::Criu_cg_mode {
        match mode {
            CgroupMode::Ignore => rpc::Criu_cg_mode::IGNORE,
            CgroupMode::None => rpc::Criu_cg_mode::CG_NONE,
            CgroupMode::Props => rpc::Criu_cg_mode::PROPS,
            CgroupMode::Soft => rpc::Criu_cg_mode::SOFT,
            CgroupMode::Full => rpc::Criu_cg_mode::FULL,
            CgroupMode::Strict => rpc::Criu_cg_mode::STRICT,
            CgroupMode::Default => rpc::Criu_cg_mode::DEFAULT,
        }
    }
}

/// How CRIU locks the network of a dumped netns while it works (`--network-lock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetworkLock {
    /// `iptables-restore` rules (CRIU's default; needs the iptables package).
    Iptables,
    /// An nftables table.
    Nftables,
    /// No lock; the caller locks the network itself (e.g. in `network-lock`).
    Skip,
}

impl From<NetworkLock> for rpc::Criu_network_lock_method {
    fn from(lock: NetworkLock) -> rpc::Criu_network_lock_method {
        match lock {
            NetworkLock::Iptables => rpc::Criu_network_lock_method::IPTABLES,
            NetworkLock::Nftables => rpc::Criu_network_lock_method::NFTABLES,
            NetworkLock::Skip => rpc::Criu_network_lock_method::SKIP,
        }
    }
}

/// Where a dump's memory pages go instead of the images dir, or, with lazy pages, where
/// CRIU serves them from.
#[derive(Debug, Default)]
pub struct PageServer {
    /// The page server's address (lazy: the address to listen on).
    pub address: Option<String>,
    /// Its TCP port (lazy: the port to listen on).
    pub port: Option<u16>,
    /// A connected socket to use instead of connecting or listening; CRIU gets a copy. With
    /// lazy pages CRIU serves pages on it (the peer is the lazy-pages daemon, or a relay to it),
    /// so no TCP port is opened.
    pub fd: Option<OwnedFd>,
}

/// A namespace the restored tree joins instead of getting a new one (`--join-ns`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinNamespace {
    /// The namespace kind: `uts`, `ipc`, `time`, `net`, ...
    pub ns: String,
    /// A path to the namespace (`/proc/<pid>/ns/uts`) or a pid.
    pub ns_file: String,
    /// Extra option (the user namespace's uid/gid for `user`).
    pub extra_opt: Option<String>,
}

/// A `DUMP` (or `PRE_DUMP`) request.
///
/// `DumpRequest { images_dir, pid, ..Default::default() }` dumps `pid`'s tree into
/// `images_dir` and kills it.
#[derive(Debug, Default)]
pub struct DumpRequest {
    /// Where the images go; must exist. `dump.log` lands here too.
    pub images_dir: PathBuf,
    /// CRIU's work dir (its log and temporary mounts); the images dir when `None`.
    pub work_dir: Option<PathBuf>,
    /// The root of the tree to dump, as a host pid.
    pub pid: i32,
    /// Keep the tree running after the dump (a snapshot) instead of killing it.
    pub leave_running: bool,
    /// Dump established TCP connections (the destination needs the same IP).
    pub tcp_established: bool,
    /// Skip TCP connections still in the handshake.
    pub tcp_skip_in_flight: bool,
    /// Allow UNIX sockets connected to the outside.
    pub ext_unix_sk: bool,
    /// Dump file locks.
    pub file_locks: bool,
    /// Allow a tree whose session or terminal lives outside it.
    pub shell_job: bool,
    /// Link-remap unlinked files that are still open.
    pub link_remap: bool,
    /// Freeze the tree through this freezer cgroup (v1 `.../freezer/<path>` or a v2 dir)
    /// instead of seizing task by task.
    pub freeze_cgroup: Option<PathBuf>,
    /// How CRIU treats the tree's cgroups.
    pub manage_cgroups_mode: Option<CgroupMode>,
    /// External bind mounts: (mountpoint in the tree, key written to the images).
    pub ext_mounts: Vec<(String, String)>,
    /// `--external` specs: `mnt[...]`, `net[<ino>]:extRootNetNS`, `tty[...]`, ...
    pub external: Vec<String>,
    /// Do not dump the netns contents (links, addresses, routes); restore into an empty one.
    pub empty_net_ns: bool,
    /// The tree owns ptys whose master is outside it (a terminal container).
    pub orphan_pts_master: bool,
    /// How to lock the network during the dump.
    pub network_lock: Option<NetworkLock>,
    /// Seconds CRIU waits for the freezer and other steps (CRIU's default is 10).
    pub timeout_secs: Option<u32>,
    /// Largest deleted-but-open file CRIU copies into the images (default 1 MiB).
    pub ghost_limit: Option<u32>,
    /// Post-copy: leave private memory behind and serve it through `page_server`.
    pub lazy_pages: bool,
    /// Send pages to (or, with `lazy_pages`, serve them from) a page server.
    pub page_server: Option<PageServer>,
    /// The previous (pre-)dump's images dir, relative to `images_dir`; pages unchanged since
    /// then are not written again.
    pub parent_img: Option<PathBuf>,
    /// CRIU's log level, 0..=4; [`DEFAULT_LOG_LEVEL`] when `None`.
    pub log_level: Option<u32>,
}

/// The config file that hands a lazy dump its page-server socket (in the work dir).
pub(crate) const PS_SOCKET_CONF: &str = "ps-socket.conf";

/// A `RESTORE` request.
#[derive(Debug, Default)]
pub struct RestoreRequest {
    /// The images to restore; must exist. `restore.log` lands here too.
    pub images_dir: PathBuf,
    /// CRIU's work dir; the images dir when `None`.
    pub work_dir: Option<PathBuf>,
    /// The root filesystem to restore into: a mount point whose parent is not overmounted.
    pub root: Option<PathBuf>,
    /// Make the restored root task a child of the caller (not of CRIU), so the caller can
    /// `waitpid` it. Almost always wanted.
    pub rst_sibling: bool,
    /// How CRIU treats the tree's cgroups.
    pub manage_cgroups_mode: Option<CgroupMode>,
    /// Restore into these cgroups instead of the dumped ones: (controller or `None` for all,
    /// path).
    pub cg_root: Vec<(Option<String>, String)>,
    /// External bind mounts: (key from the dump, host path to mount there now).
    pub ext_mounts: Vec<(String, String)>,
    /// `--external` specs.
    pub external: Vec<String>,
    /// Descriptors that replace dumped ones: (key such as `pipe:[1234]` or `extRootNetNS`,
    /// the descriptor to use). CRIU gets a copy.
    pub inherit_fds: Vec<(String, OwnedFd)>,
    /// Existing namespaces to join.
    pub join_ns: Vec<JoinNamespace>,
    /// Restore established TCP connections.
    pub tcp_established: bool,
    /// Close restored TCP connections instead of reviving them.
    pub tcp_close: bool,
    /// Allow UNIX sockets connected to the outside.
    pub ext_unix_sk: bool,
    /// Restore file locks.
    pub file_locks: bool,
    /// The tree was dumped as a shell job.
    pub shell_job: bool,
    /// Let device files be restored even if their major/minor moved.
    pub evasive_devices: bool,
    /// Recreate orphan ptys; their masters arrive through the `orphan-pts-master` notification.
    pub orphan_pts_master: bool,
    /// Post-copy: fault memory in from the lazy-pages daemon.
    pub lazy_pages: bool,
    /// Restore into an empty netns (configure it in `setup-namespaces`).
    pub empty_net_ns: bool,
    /// How to lock the network until the restored tree resumes.
    pub network_lock: Option<NetworkLock>,
    /// LSM profile for the restored tasks, when the dumped one does not exist here.
    pub lsm_profile: Option<String>,
    /// CRIU's log level, 0..=4; [`DEFAULT_LOG_LEVEL`] when `None`.
    pub log_level: Option<u32>,
}

/// Descriptors to install in the `criu swrk` child, in order, from fd 4 on.
#[derive(Debug, Default)]
pub(crate) struct ChildFds<'a> {
    fds: Vec<BorrowedFd<'a>>,
}

impl<'a> ChildFds<'a> {
    /// Schedules `fd` for the child and returns its number there.
    pub(crate) fn add(&mut self, fd: BorrowedFd<'a>) -> RawFd {
        self.fds.push(fd);
        // A request passes a handful of fds: the count always fits an fd number.
        SWRK_FD + self.fds.len() as RawFd
    }

    /// (our fd, child fd) pairs, excluding the RPC socket.
    pub(crate) fn pairs(&self) -> Vec<(RawFd, RawFd)> {
        (SWRK_FD + 1..)
            .zip(&self.fds)
            .map(|(target, fd)| (fd.as_raw_fd(), target))
            .collect()
    }
}

/// The images dir and work dir of one request, opened for as long as CRIU runs.
#[derive(Debug)]
pub(crate) struct Dirs {
    pub images_path: PathBuf,
    pub images: File,
    pub work_path: Option<PathBuf>,
    pub work: Option<File>,
}

impl Dirs {
    pub(crate) fn open(images_dir: &Path, work_dir: Option<&Path>) -> Result<Dirs, CriuError> {
        let work_path = work_dir.filter(|w| *w != images_dir).map(Path::to_path_buf);
        let work = work_path.as_deref().map(open_dir).transpose()?;
        Ok(Dirs {
            images_path: images_dir.to_path_buf(),
            images: open_dir(images_dir)?,
            work_path,
            work,
        })
    }

    /// Where CRIU writes a log named `name`.
    pub(crate) fn log_path(&self, name: &str) -> PathBuf {
        self.work_path
            .as_deref()
            .unwrap_or(&self.images_path)
            .join(name)
    }

    /// Fills the directory and logging fields of `opts`.
    pub(crate) fn apply(&self, opts: &mut rpc::Criu_opts, log_name: &str, log_level: Option<u32>) {
        opts.images_dir_fd = Some(self.images.as_raw_fd());
        opts.work_dir_fd = self.work.as_ref().map(AsRawFd::as_raw_fd);
        opts.log_file = Some(log_name.to_string());
        let level = log_level
            .unwrap_or(DEFAULT_LOG_LEVEL)
            .min(DEFAULT_LOG_LEVEL);
        // `min` above keeps the level in 0..=4.
        opts.log_level = Some(i32::try_from(level).unwrap_or(4));
    }

    /// Copies the log written in a separate work dir next to the images, so every dump and
    /// restore keeps its log with its images.
    pub(crate) fn keep_log(&self, name: &str) -> PathBuf {
        let written = self.log_path(name);
        if self.work_path.is_some() {
            let beside = self.images_path.join(name);
            // Best effort: the log in the work dir stays the reference if the copy fails.
            if std::fs::copy(&written, &beside).is_ok() {
                return beside;
            }
        }
        written
    }
}

fn open_dir(path: &Path) -> Result<File, CriuError> {
    let io = |source| CriuError::Io {
        what: "open directory",
        path: path.to_path_buf(),
        source,
    };
    let dir = File::open(path).map_err(io)?;
    if !dir.metadata().map_err(io)?.is_dir() {
        return Err(io(std::io::Error::from_raw_os_error(libc::ENOTDIR)));
    }
    Ok(dir)
}

fn path_string(path: &Path, what: &str) -> Result<String, CriuError> {
    path.to_str()
        .map(str::to_string)
        .ok_or_else(|| CriuError::InvalidRequest(format!("{what} {path:?} is not valid UTF-8")))
}

fn ext_mounts(pairs: &[(String, String)]) -> Vec<rpc::Ext_mount_map> {
    pairs
        .iter()
        .map(|(key, val)| rpc::Ext_mount_map {
            key: Some(key.clone()),
            val: Some(val.clone()),
            ..Default::default()
        })
        .collect()
}

fn flag(value: bool) -> Option<bool> {
    value.then_some(true)
}

impl DumpRequest {
    /// The `criu_opts` of this request; descriptors CRIU must inherit go into `fds`.
    pub(crate) fn to_opts<'a>(
        &'a self,
        dirs: &Dirs,
        log_name: &str,
        fds: &mut ChildFds<'a>,
    ) -> Result<rpc::Criu_opts, CriuError> {
        if self.pid <= 0 {
            return Err(CriuError::InvalidRequest(format!(
                "dump needs the pid of the tree's root, got {}",
                self.pid
            )));
        }
        let mut opts = rpc::Criu_opts::new();
        dirs.apply(&mut opts, log_name, self.log_level);
        opts.pid = Some(self.pid);
        opts.notify_scripts = Some(true);
        opts.leave_running = flag(self.leave_running);
        opts.tcp_established = flag(self.tcp_established);
        opts.tcp_skip_in_flight = flag(self.tcp_skip_in_flight);
        opts.ext_unix_sk = flag(self.ext_unix_sk);
        opts.file_locks = flag(self.file_locks);
        opts.shell_job = flag(self.shell_job);
        opts.link_remap = flag(self.link_remap);
        opts.orphan_pts_master = flag(self.orphan_pts_master);
        opts.lazy_pages = flag(self.lazy_pages);
        if self.empty_net_ns {
            opts.empty_ns = Some(libc::CLONE_NEWNET as u32);
        }
        if let Some(cg) = &self.freeze_cgroup {
            opts.freeze_cgroup = Some(path_string(cg, "freeze cgroup")?);
        }
        if let Some(mode) = self.manage_cgroups_mode {
            opts.set_manage_cgroups_mode(mode.into());
        }
        opts.ext_mnt = ext_mounts(&self.ext_mounts);
        opts.external = self.external.clone();
        if let Some(lock) = self.network_lock {
            opts.set_network_lock(lock.into());
        }
        opts.timeout = self.timeout_secs;
        opts.ghost_limit = self.ghost_limit;
        if let Some(parent) = &self.parent_img {
            opts.parent_img = Some(path_string(parent, "parent images dir")?);
        }
        match (&self.page_server, self.lazy_pages) {
            (Some(PageServer { fd: Some(fd), .. }), true) => {
                // CRIU reads `ps.fd` only for a non-lazy dump; its lazy page server takes a
                // pre-connected socket from `--ps-socket`, which a config file can set.
                let child_fd = fds.add(fd.as_fd());
                let conf = dirs.log_path(PS_SOCKET_CONF);
                std::fs::write(&conf, format!("ps-socket {child_fd}\n")).map_err(|e| {
                    CriuError::InvalidRequest(format!("cannot write {}: {e}", conf.display()))
                })?;
                opts.config_file = Some(path_string(&conf, "config file")?);
            }
            (Some(ps), _) => {
                let mut info = rpc::Criu_page_server_info::new();
                info.address = ps.address.clone();
                info.port = ps.port.map(i32::from);
                if let Some(fd) = &ps.fd {
                    info.fd = Some(fds.add(fd.as_fd()));
                }
                opts.ps = MessageField::some(info);
            }
            (None, true) => {
                return Err(CriuError::InvalidRequest(
                    "lazy pages need a page server: an address and port to listen on, or a socket"
                        .into(),
                ));
            }
            (None, false) => {}
        }
        Ok(opts)
    }
}

impl RestoreRequest {
    /// The `criu_opts` of this request; descriptors CRIU must inherit go into `fds`.
    pub(crate) fn to_opts<'a>(
        &'a self,
        dirs: &Dirs,
        log_name: &str,
        fds: &mut ChildFds<'a>,
    ) -> Result<rpc::Criu_opts, CriuError> {
        let mut opts = rpc::Criu_opts::new();
        dirs.apply(&mut opts, log_name, self.log_level);
        opts.notify_scripts = Some(true);
        if let Some(root) = &self.root {
            opts.root = Some(path_string(root, "root")?);
        }
        opts.rst_sibling = flag(self.rst_sibling);
        if let Some(mode) = self.manage_cgroups_mode {
            opts.set_manage_cgroups_mode(mode.into());
        }
        opts.cg_root = self
            .cg_root
            .iter()
            .map(|(ctrl, path)| rpc::Cgroup_root {
                ctrl: ctrl.clone(),
                path: Some(path.clone()),
                ..Default::default()
            })
            .collect();
        opts.ext_mnt = ext_mounts(&self.ext_mounts);
        opts.external = self.external.clone();
        for (key, fd) in &self.inherit_fds {
            opts.inherit_fd.push(rpc::Inherit_fd {
                key: Some(key.clone()),
                fd: Some(fds.add(fd.as_fd())),
                ..Default::default()
            });
        }
        opts.join_ns = self
            .join_ns
            .iter()
            .map(|j| rpc::Join_namespace {
                ns: Some(j.ns.clone()),
                ns_file: Some(j.ns_file.clone()),
                extra_opt: j.extra_opt.clone(),
                ..Default::default()
            })
            .collect();
        opts.tcp_established = flag(self.tcp_established);
        opts.tcp_close = flag(self.tcp_close);
        opts.ext_unix_sk = flag(self.ext_unix_sk);
        opts.file_locks = flag(self.file_locks);
        opts.shell_job = flag(self.shell_job);
        opts.evasive_devices = flag(self.evasive_devices);
        opts.orphan_pts_master = flag(self.orphan_pts_master);
        opts.lazy_pages = flag(self.lazy_pages);
        if self.empty_net_ns {
            opts.empty_ns = Some(libc::CLONE_NEWNET as u32);
        }
        if let Some(lock) = self.network_lock {
            opts.set_network_lock(lock.into());
        }
        opts.lsm_profile = self.lsm_profile.clone();
        Ok(opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs() -> (tempfile::TempDir, Dirs) {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = Dirs::open(tmp.path(), None).unwrap();
        (tmp, dirs)
    }

    #[test]
    fn dump_options_map_one_to_one() {
        let (tmp, dirs) = dirs();
        let (sock, _peer) = crate::syscall::criu::seqpacket_pair().unwrap();
        let req = DumpRequest {
            images_dir: tmp.path().into(),
            pid: 42,
            tcp_established: true,
            freeze_cgroup: Some("/sys/fs/cgroup/freezer/c1".into()),
            manage_cgroups_mode: Some(CgroupMode::Soft),
            ext_mounts: vec![("/data".into(), "/data".into())],
            external: vec!["net[4026531992]:extRootNetNS".into()],
            network_lock: Some(NetworkLock::Nftables),
            timeout_secs: Some(30),
            page_server: Some(PageServer {
                fd: Some(sock),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut fds = ChildFds::default();
        let opts = req.to_opts(&dirs, log_name::DUMP, &mut fds).unwrap();
        assert_eq!(opts.pid, Some(42));
        assert_eq!(opts.images_dir_fd, Some(dirs.images.as_raw_fd()));
        assert_eq!(opts.work_dir_fd, None);
        assert_eq!(opts.log_file.as_deref(), Some("dump.log"));
        assert_eq!(opts.log_level, Some(4));
        assert_eq!(opts.notify_scripts, Some(true));
        assert_eq!(opts.leave_running, None);
        assert_eq!(opts.tcp_established, Some(true));
        assert_eq!(
            opts.freeze_cgroup.as_deref(),
            Some("/sys/fs/cgroup/freezer/c1")
        );
        assert_eq!(
            opts.manage_cgroups_mode(),
            rpc::Criu_cg_mode::SOFT,
            "cgroup mode"
        );
        assert_eq!(opts.ext_mnt[0].key(), "/data");
        assert_eq!(opts.external.len(), 1);
        assert_eq!(opts.network_lock(), rpc::Criu_network_lock_method::NFTABLES);
        assert_eq!(opts.timeout, Some(30));
        assert_eq!(opts.ps.fd, Some(4), "page-server socket is child fd 4");
        assert_eq!(fds.pairs().len(), 1);
        assert_eq!(fds.pairs()[0].1, 4);
    }

    #[test]
    fn restore_inherit_fds_follow_the_swrk_socket() {
        let (tmp, dirs) = dirs();
        let (a, b) = crate::syscall::criu::seqpacket_pair().unwrap();
        let req = RestoreRequest {
            images_dir: tmp.path().into(),
            rst_sibling: true,
            cg_root: vec![(None, "/rt-dst".into())],
            inherit_fds: vec![("pipe:[1]".into(), a), ("extRootNetNS".into(), b)],
            join_ns: vec![JoinNamespace {
                ns: "uts".into(),
                ns_file: "/proc/1/ns/uts".into(),
                extra_opt: None,
            }],
            ..Default::default()
        };
        let mut fds = ChildFds::default();
        let opts = req.to_opts(&dirs, log_name::RESTORE, &mut fds).unwrap();
        assert_eq!(opts.rst_sibling, Some(true));
        assert!(!opts.cg_root[0].has_ctrl());
        assert_eq!(opts.cg_root[0].path(), "/rt-dst");
        let inherited: Vec<(&str, i32)> =
            opts.inherit_fd.iter().map(|i| (i.key(), i.fd())).collect();
        assert_eq!(inherited, [("pipe:[1]", 4), ("extRootNetNS", 5)]);
        let targets: Vec<RawFd> = fds.pairs().iter().map(|p| p.1).collect();
        assert_eq!(targets, [4, 5]);
        assert_eq!(opts.join_ns[0].ns(), "uts");
    }

    #[test]
    fn bad_requests_are_refused_before_criu_runs() {
        let (tmp, dirs) = dirs();
        let mut fds = ChildFds::default();
        let no_pid = DumpRequest {
            images_dir: tmp.path().into(),
            ..Default::default()
        };
        assert!(matches!(
            no_pid.to_opts(&dirs, log_name::DUMP, &mut fds),
            Err(CriuError::InvalidRequest(_))
        ));
        let lazy_without_server = DumpRequest {
            images_dir: tmp.path().into(),
            pid: 1,
            lazy_pages: true,
            ..Default::default()
        };
        assert!(lazy_without_server
            .to_opts(&dirs, log_name::DUMP, &mut fds)
            .is_err());
        assert!(Dirs::open(&tmp.path().join("missing"), None).is_err());
    }

    #[test]
    fn log_lands_in_the_work_dir_and_is_kept_beside_the_images() {
        let images = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let dirs = Dirs::open(images.path(), Some(work.path())).unwrap();
        assert_eq!(dirs.log_path("dump.log"), work.path().join("dump.log"));
        std::fs::write(work.path().join("dump.log"), "log").unwrap();
        assert_eq!(dirs.keep_log("dump.log"), images.path().join("dump.log"));
        assert_eq!(
            std::fs::read_to_string(images.path().join("dump.log")).unwrap(),
            "log"
        );
        let same = Dirs::open(images.path(), Some(images.path())).unwrap();
        assert!(same.work.is_none());
    }
}
