//! Installing a seccomp filter: `seccomp(SECCOMP_SET_MODE_FILTER)`.

use std::io;

/// Installs the classic BPF `program` as a seccomp filter of the calling thread, with `flags`
/// (`SECCOMP_FILTER_FLAG_*`). The caller needs `no_new_privs` or `CAP_SYS_ADMIN`. Allocates
/// nothing.
pub fn set_mode_filter(program: &[libc::sock_filter], flags: libc::c_ulong) -> io::Result<()> {
    let len =
        u16::try_from(program.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let prog = libc::sock_fprog {
        len,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at `len` initialized instructions in `program`, which outlives the
    // call; the kernel only reads them (it copies the program) and keeps no pointer.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const libc::sock_fprog,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
