//! Building the container's root filesystem inside its new mount namespace: the overlay (or
//! plain bind) root, the spec's mounts, `/dev`, `pivot_root`, masked and read-only paths.
//! Without a mount namespace of its own, the same mounts go under the state directory in the
//! runtime's namespace and init enters them with `chroot` (`delete` unmounts them).
//!
//! Runs in the container's init before exec; every error names the step that failed.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, LinuxNamespaceType, Mount, Spec};

use crate::process::plan::RootfsPlan;
use crate::state::RootfsMode;

/// A failed step and why.
pub type StepError = (String, String);

fn step<T, E: std::fmt::Display>(name: impl Into<String>, r: Result<T, E>) -> Result<T, StepError> {
    r.map_err(|e| (name.into(), e.to_string()))
}

/// Device nodes every container gets: path, major, minor.
const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// True when init has a mount namespace of its own (new or joined by path). Without one it
/// works in the runtime's: nothing may change the host's propagation, and init enters its
/// root with `chroot` (as runc does).
pub fn own_mount_namespace(spec: &Spec) -> bool {
    has_namespace(spec, LinuxNamespaceType::Mount)
}

fn has_namespace(spec: &Spec, typ: LinuxNamespaceType) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|v| v.iter().any(|ns| ns.typ() == typ))
}

/// What [`prepare`] leaves for [`setup`], which starts in the container's state directory.
pub struct Prepared {
    /// The overlay [`setup`] mounts (as the user namespace's root), its paths relative to the
    /// state directory.
    overlay: Option<String>,
    /// The root's mount point, relative to the state directory.
    root: PathBuf,
}

/// First half of the rootfs, with the runtime's credentials: these steps need host paths (the
/// bundle, the state directory) that the root of a user namespace may not reach. Mounts the
/// container's root on `plan.mountpoint` (in a user namespace, only the overlay's lower layer
/// there) and moves to the state directory.
pub fn prepare(spec: &Spec, plan: &RootfsPlan) -> Result<Prepared, StepError> {
    if own_mount_namespace(spec) {
        step(
            "make mounts private",
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            ),
        )?;
    }
    let dir = plan.mountpoint.parent().unwrap_or(Path::new("/"));
    let relative = |p: &Path| {
        p.strip_prefix(dir).map(Path::to_path_buf).map_err(|_| {
            (
                "plan rootfs".to_string(),
                format!("{} is not in {}", p.display(), dir.display()),
            )
        })
    };
    let root = relative(&plan.mountpoint)?;
    let userns = has_namespace(spec, LinuxNamespaceType::User);
    let overlay = if userns && plan.mode == RootfsMode::Overlay {
        // The kernel makes the overlay's work directory for the mounter, who must be the
        // namespace's root to use it. That root may not reach the bundle: the lower layer is
        // bound on the mount point now, and the overlay goes over it in `setup`. Its metadata
        // goes to `user.overlay.*` xattrs (`trusted.*` needs the host's CAP_SYS_ADMIN).
        bind_root(&plan.lower, &plan.mountpoint)?;
        Some(format!(
            "lowerdir={},upperdir={},workdir={},userxattr",
            root.display(),
            relative(&plan.upper)?.display(),
            relative(&plan.work)?.display()
        ))
    } else {
        mount_root(plan)?;
        None
    };
    step(
        format!("chdir to {}", dir.display()),
        nix::unistd::chdir(dir),
    )?;
    Ok(Prepared { overlay, root })
}

/// Second half of the rootfs, from the state directory [`prepare`] left: the overlay still to
/// mount, the spec's mounts, `/dev`, then `pivot_root` (or `chroot` without a mount namespace
/// of its own); then [`finalize`].
pub fn setup(spec: &Spec, prepared: Prepared, cgroup_v2: bool) -> Result<(), StepError> {
    if let Some(data) = &prepared.overlay {
        step(
            "mount overlay rootfs in the user namespace",
            mount(
                Some("overlay"),
                &prepared.root,
                Some("overlay"),
                MsFlags::empty(),
                Some(data.as_str()),
            ),
        )?;
    }
    step(
        format!("chdir to {}", prepared.root.display()),
        nix::unistd::chdir(&prepared.root),
    )?;
    let root = Path::new(".");
    let mounts = spec.mounts().clone().unwrap_or_default();
    let has = |dest: &str| mounts.iter().any(|m| m.destination() == Path::new(dest));
    if !has("/dev") {
        mount_fs(
            root,
            "/dev",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
            "mode=755,size=65536k",
        )?;
    }
    for m in &mounts {
        mount_spec(root, m, cgroup_v2)?;
    }
    if !has("/dev/pts") {
        mount_fs(
            root,
            "/dev/pts",
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620",
        )?;
    }
    if !has("/dev/shm") {
        mount_fs(
            root,
            "/dev/shm",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            "mode=1777,size=65536k",
        )?;
    }
    let linux = spec.linux().as_ref();
    create_devices(
        root,
        linux
            .and_then(|l| l.devices().as_ref())
            .map(Vec::as_slice)
            .unwrap_or(&[]),
    )?;
    if !own_mount_namespace(spec) {
        // In the runtime's mount namespace; rootfsPropagation is left alone, as runc does
        // (it would apply to a mount the host shares).
        step("chroot to rootfs", nix::unistd::chroot("."))?;
        return step("chdir to /", nix::unistd::chdir("/"));
    }
    pivot(root)?;
    // After pivot_root: the flag is for the container's own "/" (before it, a shared "/" makes
    // pivot_root fail with EINVAL, and the flag would land on the old root).
    if let Some(prop) = linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        let (flags, _) = parse_options(&[prop.to_string()]);
        step(
            "set rootfs propagation",
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                flags.propagation,
                None::<&str>,
            ),
        )?;
    }
    Ok(())
}

/// After the spec's sysctls are written (they need a writable `/proc/sys`): masks and
/// read-only paths, and a read-only root if the spec asks, as runc orders them.
pub fn finalize(spec: &Spec) -> Result<(), StepError> {
    let linux = spec.linux().as_ref();
    for path in linux
        .and_then(|l| l.masked_paths().as_ref())
        .into_iter()
        .flatten()
    {
        mask(Path::new(path))?;
    }
    for path in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        readonly(Path::new(path))?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        step(
            "remount / read-only",
            remount_bind(Path::new("/"), MsFlags::MS_RDONLY),
        )?;
    }
    Ok(())
}

/// Mounts the container's root (overlay or bind) on `plan.mountpoint`.
pub(crate) fn mount_root(plan: &RootfsPlan) -> Result<(), StepError> {
    let target = &plan.mountpoint;
    match plan.mode {
        RootfsMode::Overlay => {
            let data = format!(
                "lowerdir={},upperdir={},workdir={}",
                plan.lower.display(),
                plan.upper.display(),
                plan.work.display()
            );
            step(
                format!("mount overlay rootfs on {}", target.display()),
                mount(
                    Some("overlay"),
                    target,
                    Some("overlay"),
                    MsFlags::empty(),
                    Some(data.as_str()),
                ),
            )
        }
        RootfsMode::Plain => bind_root(&plan.lower, target),
    }
}

fn bind_root(source: &Path, target: &Path) -> Result<(), StepError> {
    step(
        format!("bind rootfs {} on {}", source.display(), target.display()),
        mount(
            Some(source),
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        ),
    )
}

fn mount_fs(
    root: &Path,
    dest: &str,
    fstype: &str,
    flags: MsFlags,
    data: &str,
) -> Result<(), StepError> {
    let target =
        resolve_in_root(root, Path::new(dest)).map_err(|e| (format!("mount {dest}"), e))?;
    step(
        format!("create mount point {dest}"),
        fs::create_dir_all(&target),
    )?;
    step(
        format!("mount {fstype} on {dest}"),
        mount(Some(fstype), &target, Some(fstype), flags, Some(data)),
    )
}

/// Mount flags parsed from OCI mount options.
#[derive(Debug, PartialEq)]
pub struct MountFlags {
    /// Flags for the mount itself.
    pub flags: MsFlags,
    /// Flags that must be cleared (e.g. `rw`, `suid`).
    pub clear: MsFlags,
    /// Propagation flags applied in a second call.
    pub propagation: MsFlags,
}

/// Splits OCI mount options into flags, propagation and the filesystem's data string.
pub fn parse_options(options: &[String]) -> (MountFlags, String) {
    let mut out = MountFlags {
        flags: MsFlags::empty(),
        clear: MsFlags::empty(),
        propagation: MsFlags::empty(),
    };
    let mut data = Vec::new();
    for opt in options {
        let (set, clear, prop) = match opt.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty(), MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY, MsFlags::empty()),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty(), MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID, MsFlags::empty()),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty(), MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV, MsFlags::empty()),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty(), MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty(), MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty(), MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty(), MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty(), MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty(), MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty(), MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty(), MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME, MsFlags::empty()),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty(), MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty(), MsFlags::empty()),
            "rbind" => (
                MsFlags::MS_BIND | MsFlags::MS_REC,
                MsFlags::empty(),
                MsFlags::empty(),
            ),
            "private" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_PRIVATE),
            "rprivate" => (
                MsFlags::empty(),
                MsFlags::empty(),
                MsFlags::MS_PRIVATE | MsFlags::MS_REC,
            ),
            "shared" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_SHARED),
            "rshared" => (
                MsFlags::empty(),
                MsFlags::empty(),
                MsFlags::MS_SHARED | MsFlags::MS_REC,
            ),
            "slave" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_SLAVE),
            "rslave" => (
                MsFlags::empty(),
                MsFlags::empty(),
                MsFlags::MS_SLAVE | MsFlags::MS_REC,
            ),
            "unbindable" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_UNBINDABLE),
            "runbindable" => (
                MsFlags::empty(),
                MsFlags::empty(),
                MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
            ),
            other => {
                data.push(other.to_string());
                continue;
            }
        };
        out.flags = (out.flags | set) & !clear;
        out.clear |= clear;
        out.propagation |= prop;
    }
    (out, data.join(","))
}

fn mount_spec(root: &Path, m: &Mount, cgroup_v2: bool) -> Result<(), StepError> {
    let dest_in = m.destination();
    let name = format!("mount {}", dest_in.display());
    let dest = resolve_in_root(root, dest_in).map_err(|e| (name.clone(), e))?;
    let (flags, data) = parse_options(m.options().as_deref().unwrap_or(&[]));
    let mut fstype = m.typ().clone().unwrap_or_else(|| "bind".into());
    let is_bind = flags.flags.contains(MsFlags::MS_BIND) || fstype == "bind";
    if is_bind {
        let source = m.source().clone().unwrap_or_default();
        if source.is_dir() {
            step(
                format!("{name}: create directory"),
                fs::create_dir_all(&dest),
            )?;
        } else {
            if let Some(parent) = dest.parent() {
                step(
                    format!("{name}: create directory"),
                    fs::create_dir_all(parent),
                )?;
            }
            if !dest.exists() {
                step(format!("{name}: create file"), fs::File::create(&dest))?;
            }
        }
        let bind = MsFlags::MS_BIND | (flags.flags & MsFlags::MS_REC);
        step(
            name.clone(),
            mount(Some(&source), &dest, None::<&str>, bind, None::<&str>),
        )?;
        let extra = flags.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !extra.is_empty() {
            step(
                format!("{name}: remount with options"),
                remount_bind(&dest, extra),
            )?;
        }
    } else {
        step(
            format!("{name}: create directory"),
            fs::create_dir_all(&dest),
        )?;
        let mut data = data;
        let mut mflags = flags.flags;
        if fstype == "cgroup" || fstype == "cgroup2" {
            if cgroup_v2 {
                fstype = "cgroup2".into();
                data.clear();
            } else {
                // A v1 hierarchy mounted inside a container cannot be checkpointed (its
                // controller mounts share peers with the host), so v1 hosts get an empty,
                // read-only tmpfs there instead.
                fstype = "tmpfs".into();
                data = "mode=755,size=4k".into();
                mflags |= MsFlags::MS_RDONLY;
            }
        }
        let source = m.source().clone().unwrap_or_else(|| PathBuf::from(&fstype));
        let data = (!data.is_empty()).then_some(data);
        let r = mount(
            Some(&source),
            &dest,
            Some(fstype.as_str()),
            mflags,
            data.as_deref(),
        );
        if fstype == "sysfs" && r == Err(nix::Error::EPERM) {
            return Err((
                name,
                "sysfs needs its own network namespace (add a network namespace to the spec)"
                    .into(),
            ));
        }
        step(name.clone(), r)?;
    }
    if !flags.propagation.is_empty() {
        step(
            format!("{name}: set propagation"),
            mount(
                None::<&str>,
                &dest,
                None::<&str>,
                flags.propagation,
                None::<&str>,
            ),
        )?;
    }
    Ok(())
}

fn create_devices(root: &Path, extra: &[LinuxDevice]) -> Result<(), StepError> {
    let dev = root.join("dev");
    for (path, major, minor) in DEFAULT_DEVICES {
        make_node(
            root,
            Path::new(path),
            SFlag::S_IFCHR,
            major,
            minor,
            0o666,
            0,
            0,
        )?;
    }
    for d in extra {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => continue,
        };
        make_node(
            root,
            d.path(),
            kind,
            d.major() as u64,
            d.minor() as u64,
            d.file_mode().unwrap_or(0o666),
            d.uid().unwrap_or(0),
            d.gid().unwrap_or(0),
        )?;
    }
    let links = [
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("pts/ptmx", "ptmx"),
    ];
    for (target, name) in links {
        let link = dev.join(name);
        if link.symlink_metadata().is_ok() {
            step(format!("replace /dev/{name}"), fs::remove_file(&link))?;
        }
        step(format!("create /dev/{name}"), symlink(target, &link))?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn make_node(
    root: &Path,
    path: &Path,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<(), StepError> {
    let name = format!("create device {}", path.display());
    let target = resolve_in_root(root, path).map_err(|e| (name.clone(), e))?;
    if let Some(parent) = target.parent() {
        step(name.clone(), fs::create_dir_all(parent))?;
    }
    let _ = fs::remove_file(&target);
    match mknod(
        &target,
        kind,
        Mode::from_bits_truncate(mode & 0o7777),
        makedev(major, minor),
    ) {
        Ok(()) => {
            step(
                name.clone(),
                fs::set_permissions(&target, fs::Permissions::from_mode(mode & 0o7777)),
            )?;
            step(
                name,
                nix::unistd::chown(&target, Some(uid.into()), Some(gid.into())),
            )
        }
        // Without CAP_MKNOD, bind the host's node instead (as runc does for rootless).
        Err(nix::Error::EPERM) => {
            step(name.clone(), fs::File::create(&target))?;
            step(
                name,
                mount(
                    Some(path),
                    &target,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                ),
            )
        }
        Err(e) => Err((name, e.to_string())),
    }
}

fn pivot(root: &Path) -> Result<(), StepError> {
    step("chdir to rootfs", nix::unistd::chdir(root))?;
    step("pivot_root", nix::unistd::pivot_root(".", "."))?;
    step("detach old root", umount2(".", MntFlags::MNT_DETACH))?;
    step("chdir to /", nix::unistd::chdir("/"))
}

fn mask(path: &Path) -> Result<(), StepError> {
    let name = format!("mask {}", path.display());
    match fs::metadata(path) {
        Err(_) => Ok(()),
        Ok(meta) if meta.is_dir() => step(
            name,
            mount(
                Some("tmpfs"),
                path,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                Some("size=0k"),
            ),
        ),
        Ok(_) => step(
            name,
            mount(
                Some("/dev/null"),
                path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            ),
        ),
    }
}

fn readonly(path: &Path) -> Result<(), StepError> {
    let name = format!("make {} read-only", path.display());
    if fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    step(
        name.clone(),
        mount(
            Some(path),
            path,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        ),
    )?;
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    step(name, remount_bind(path, flags))
}

/// Remounts the bind mount at `path` with `flags`. In a user namespace the kernel refuses to
/// drop the flags of a mount that came from the host (they are locked): on EPERM, try again
/// keeping the ones the mount has, as runc does.
fn remount_bind(path: &Path, flags: MsFlags) -> nix::Result<()> {
    use nix::sys::statvfs::{statvfs, FsFlags};
    let remount = |flags: MsFlags| {
        mount(
            None::<&str>,
            path,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags,
            None::<&str>,
        )
    };
    match remount(flags) {
        Err(nix::Error::EPERM) => {}
        other => return other,
    }
    let has = statvfs(path)?.flags();
    let lockable = [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ];
    let kept = lockable
        .iter()
        .filter(|(st, _)| has.contains(*st))
        .fold(MsFlags::empty(), |acc, (_, ms)| acc | *ms);
    if kept.is_empty() || flags.contains(kept) {
        return Err(nix::Error::EPERM);
    }
    remount(flags | kept)
}

/// Joins `path` onto `root`, following symlinks as if `root` were `/`, so the result never
/// leaves `root`. Components that do not exist yet are appended as they are.
pub fn resolve_in_root(root: &Path, path: &Path) -> Result<PathBuf, String> {
    let mut out = root.to_path_buf();
    let mut pending: Vec<PathBuf> = path
        .components()
        .rev()
        .map(|c| PathBuf::from(c.as_os_str()))
        .collect();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        match Path::new(&part).components().next() {
            Some(Component::RootDir) | Some(Component::CurDir) | None => continue,
            Some(Component::ParentDir) => {
                if out != root {
                    out.pop();
                }
                continue;
            }
            _ => {}
        }
        let next = out.join(&part);
        match fs::read_link(&next) {
            Ok(target) => {
                links += 1;
                if links > 40 {
                    return Err(format!("too many symlinks resolving {}", path.display()));
                }
                if target.is_absolute() {
                    out = root.to_path_buf();
                }
                pending.extend(
                    target
                        .components()
                        .rev()
                        .map(|c| PathBuf::from(c.as_os_str())),
                );
            }
            Err(_) => out = next,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let opts: Vec<String> = ["nosuid", "ro", "rbind", "rslave", "size=64k", "mode=755"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (flags, data) = parse_options(&opts);
        assert_eq!(
            flags.flags,
            MsFlags::MS_NOSUID | MsFlags::MS_RDONLY | MsFlags::MS_BIND | MsFlags::MS_REC
        );
        assert_eq!(flags.propagation, MsFlags::MS_SLAVE | MsFlags::MS_REC);
        assert_eq!(data, "size=64k,mode=755");
        let (flags, _) = parse_options(&["ro".into(), "rw".into()]);
        assert!(!flags.flags.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn resolve_stays_inside_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("real/sub")).unwrap();
        symlink("/real", root.join("abs")).unwrap();
        symlink("../../../../etc", root.join("escape")).unwrap();
        symlink("real/sub", root.join("rel")).unwrap();
        assert_eq!(
            resolve_in_root(root, Path::new("/abs/sub")).unwrap(),
            root.join("real/sub")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("/escape/passwd")).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("/rel/x")).unwrap(),
            root.join("real/sub/x")
        );
        symlink("loop", root.join("loop")).unwrap();
        assert!(resolve_in_root(root, Path::new("/loop")).is_err());
    }
}
