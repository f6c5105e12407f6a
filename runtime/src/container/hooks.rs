//! OCI hooks: each gets the container's state as JSON on stdin, runs with its own args and
//! env, and is killed when its `timeout` (seconds) passes. `prestart`, `createRuntime`,
//! `poststart` and `poststop` run in the runtime's namespaces; `createContainer` and
//! `startContainer` in the container's (through `nsenter`, into init's namespaces, and for
//! `startContainer` its root).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Spec};

use crate::error::{Error, Result};

/// Where a hook runs.
#[derive(Debug, Clone, Copy)]
pub enum Place {
    /// The runtime's namespaces.
    Runtime,
    /// Init's namespaces; with `root`, also init's root directory (after pivot_root).
    Container { pid: i32, root: bool },
}

/// The hooks of `kind` (`prestart`, `createRuntime`, `createContainer`, `startContainer`,
/// `poststart`, `poststop`) in `spec`.
pub fn of(spec: &Spec, kind: &str) -> Vec<Hook> {
    let Some(h) = spec.hooks().as_ref() else {
        return Vec::new();
    };
    #[allow(deprecated)]
    let list = match kind {
        "prestart" => h.prestart(),
        "createRuntime" => h.create_runtime(),
        "createContainer" => h.create_container(),
        "startContainer" => h.start_container(),
        "poststart" => h.poststart(),
        "poststop" => h.poststop(),
        _ => &None,
    };
    list.clone().unwrap_or_default()
}

/// Runs the hooks of `kind` in order; the first that fails (non-zero exit, cannot start, or
/// out of time) is the error.
pub fn run(spec: &Spec, kind: &str, state: &serde_json::Value, place: Place) -> Result<()> {
    for (i, hook) in of(spec, kind).iter().enumerate() {
        run_one(hook, state, place).map_err(|message| Error::Hook {
            hook: format!("{kind}[{i}] {}", hook.path().display()),
            message,
        })?;
    }
    Ok(())
}

/// Runs every hook of `kind`, in order, whatever the earlier ones did; the failures are
/// returned (for `poststart` and `poststop`, which the spec says only warn).
pub fn run_all(spec: &Spec, kind: &str, state: &serde_json::Value, place: Place) -> Vec<Error> {
    of(spec, kind)
        .iter()
        .enumerate()
        .filter_map(|(i, hook)| {
            run_one(hook, state, place)
                .err()
                .map(|message| Error::Hook {
                    hook: format!("{kind}[{i}] {}", hook.path().display()),
                    message,
                })
        })
        .collect()
}

fn run_one(
    hook: &Hook,
    state: &serde_json::Value,
    place: Place,
) -> std::result::Result<(), String> {
    let args = hook.args().clone().unwrap_or_default();
    let mut cmd = match place {
        Place::Runtime => {
            let mut c = Command::new(hook.path());
            if let Some(arg0) = args.first() {
                c.arg0(arg0);
            }
            c.args(args.iter().skip(1));
            c
        }
        Place::Container { pid, root } => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--target={pid}"));
            // A container with a user namespace: join it first, as the runtime's root (the
            // hook keeps its credentials, so it can still reach its own files).
            let ns = |p: String| std::fs::read_link(p).ok();
            if ns(format!("/proc/{pid}/ns/user")) != ns("/proc/self/ns/user".to_string()) {
                c.args(["--user", "--preserve-credentials"]);
            }
            c.args(["--mount", "--uts", "--ipc", "--net", "--pid"]);
            if root {
                c.args(["--root", "--wd"]);
            }
            c.arg("--").arg(hook.path()).args(args.iter().skip(1));
            c
        }
    };
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run it: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin must not fail the write.
        let _ = stdin.write_all(state.to_string().as_bytes());
    }
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                return Err(format!("{status}: {}", err.trim()));
            }
            Ok(None) => {}
            Err(e) => return Err(format!("cannot wait for it: {e}")),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "timed out after {} s",
                hook.timeout().unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
