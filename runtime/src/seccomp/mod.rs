//! `linux.seccomp`: the OCI profile compiled into a classic BPF program that the container's
//! process installs just before it execs (see `process::init`).
//!
//! The translation follows runc, which hands the profile to libseccomp:
//!
//! - Architectures: the host's (x86_64) is always filtered. `SCMP_ARCH_X86` adds the i386 ABI
//!   (`int 0x80`) and `SCMP_ARCH_X32` the x32 ABI, each with its own syscall numbers. A syscall
//!   made through an ABI the profile does not list is killed, as libseccomp's bad-arch action
//!   does (here `SECCOMP_RET_KILL_PROCESS`). Other architectures can never reach an x86_64
//!   kernel's filter and are accepted and ignored.
//! - Names this runtime does not know for an ABI are skipped, as runc skips names libseccomp
//!   cannot resolve; a rule whose action equals the default action is skipped too (libseccomp
//!   refuses such rules and runc drops them).
//! - `args` of one rule must all match (AND); when an argument index repeats, each condition
//!   becomes a rule of its own (OR), as runc does. `SCMP_CMP_MASKED_EQ` is
//!   `(arg & value) == valueTwo`. Comparisons are unsigned and 64-bit; on the 32-bit ABIs (i386,
//!   x32) only the low 32 bits are compared, as libseccomp does.
//! - For one syscall, rules with conditions are tried before an unconditional one, each in the
//!   profile's order; the first that matches decides. No match: the default action.
//! - `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE` return `errnoRet` (`defaultErrnoRet` for the default
//!   action), EPERM when unset. `SCMP_ACT_KILL` is `SCMP_ACT_KILL_THREAD`.
//! - `SCMP_ACT_NOTIFY` and `listenerPath` are refused: there is no seccomp agent support.
//!
//! The program checks the architecture, then the syscall number against each listed syscall in
//! turn (two instructions per syscall without conditions), so it stays far below the kernel's
//! 4096-instruction limit even for Docker's default profile on all three ABIs.

mod syscalls;

use std::collections::HashMap;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

/// The actions `compile` accepts, as the features document names them.
pub const ACTIONS: [&str; 8] = [
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
];

/// The argument operators `compile` accepts.
pub const OPERATORS: [&str; 7] = [
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];

/// The architectures whose syscalls the filter checks.
pub const ARCHES: [&str; 3] = ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32"];

/// The filter flags `compile` accepts.
pub const FLAGS: [&str; 3] = [
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
];

/// The kernel's limit on a classic BPF program (`BPF_MAXINSNS`).
const MAX_INSNS: usize = 4096;

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// Set in the syscall number of every x32 call (`__X32_SYSCALL_BIT`).
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Offsets in `struct seccomp_data`: `nr`, `arch`, then `args[6]` after the instruction pointer.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
const DATA_ARGS: u32 = 16;

/// Why a profile cannot be turned into a filter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeccompError {
    /// `SCMP_ACT_NOTIFY` needs a seccomp agent, which this runtime does not support.
    #[error("seccomp action SCMP_ACT_NOTIFY ({what}) is not supported: this runtime has no seccomp agent support")]
    Notify {
        /// Where the action appears (`defaultAction` or the syscall names).
        what: String,
    },
    /// `listenerPath` only serves `SCMP_ACT_NOTIFY`.
    #[error("linux.seccomp.listenerPath is not supported: this runtime has no seccomp agent support (SCMP_ACT_NOTIFY)")]
    ListenerPath,
    /// A filter flag this runtime does not apply.
    #[error("seccomp flag {flag} is not supported")]
    Flag {
        /// The flag as the spec names it.
        flag: String,
    },
    /// `errnoRet` (or `defaultErrnoRet`) with an action that returns no errno.
    #[error("seccomp {what}: errnoRet is only allowed with SCMP_ACT_ERRNO and SCMP_ACT_TRACE, not {action}")]
    ErrnoRetWithoutErrno {
        /// The syscall names or `defaultAction`.
        what: String,
        /// The action the errno came with.
        action: String,
    },
    /// `errnoRet` does not fit the 16 bits of `SECCOMP_RET_DATA`.
    #[error("seccomp {what}: errnoRet {errno} is above 65535")]
    ErrnoTooLarge {
        /// The syscall names or `defaultAction`.
        what: String,
        /// The value given.
        errno: u32,
    },
    /// An argument index beyond the six a syscall has.
    #[error("seccomp rule for {what}: argument index {index} is out of range (0-5)")]
    ArgIndex {
        /// The syscall names.
        what: String,
        /// The index given.
        index: usize,
    },
    /// The profile compiles to more instructions than the kernel loads.
    #[error("the seccomp profile needs {len} BPF instructions, more than the kernel's limit of {MAX_INSNS}")]
    TooLong {
        /// Instructions needed.
        len: usize,
    },
    /// A jump in the generated program is out of reach of a conditional jump (a bug).
    #[error("internal error: seccomp filter jump of {distance} instructions at {at}")]
    JumpTooFar {
        /// The instruction.
        at: usize,
        /// How far it had to jump.
        distance: usize,
    },
    /// This runtime generates filters for x86_64 hosts only.
    #[error("seccomp filters are only supported on x86_64 hosts, not {arch}")]
    HostArch {
        /// `std::env::consts::ARCH`.
        arch: &'static str,
    },
}

/// A compiled profile: the BPF program and the flags for `seccomp(SECCOMP_SET_MODE_FILTER)`.
#[derive(Clone)]
pub struct Filter {
    program: Vec<libc::sock_filter>,
    flags: libc::c_ulong,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("instructions", &self.program.len())
            .field("flags", &self.flags)
            .finish()
    }
}

impl Filter {
    /// The filter of a spec's `linux.seccomp`, if it has one.
    pub fn from_spec(spec: &oci_spec::runtime::Spec) -> Result<Option<Filter>, SeccompError> {
        spec.linux()
            .as_ref()
            .and_then(|l| l.seccomp().as_ref())
            .map(compile)
            .transpose()
    }

    /// Number of BPF instructions.
    pub fn len(&self) -> usize {
        self.program.len()
    }

    /// Whether the program is empty (never true for a compiled profile).
    pub fn is_empty(&self) -> bool {
        self.program.is_empty()
    }

    /// Installs the filter on the calling thread. Needs `no_new_privs` or `CAP_SYS_ADMIN`.
    /// Allocates nothing, so it can run as the last step before `execve`.
    pub fn install(&self) -> std::io::Result<()> {
        crate::syscall::seccomp::set_mode_filter(&self.program, self.flags)
    }
}

/// Compiles an OCI seccomp profile for this (x86_64) host.
pub fn compile(config: &LinuxSeccomp) -> Result<Filter, SeccompError> {
    if !cfg!(target_arch = "x86_64") {
        return Err(SeccompError::HostArch {
            arch: std::env::consts::ARCH,
        });
    }
    if config.listener_path().is_some() {
        return Err(SeccompError::ListenerPath);
    }
    let flags = flags(config.flags().as_deref().unwrap_or(&[]))?;
    let default = action(
        config.default_action(),
        config.default_errno_ret(),
        "defaultAction",
    )?;
    let rules = rules(config)?;
    let arches = config.architectures().as_deref().unwrap_or(&[]);
    let listed = |a: Arch| arches.contains(&a);

    let mut asm = Asm::default();
    let native = asm.label();
    let i386 = asm.label();
    let x32 = asm.label();
    // Dispatch on the ABI. Each far target is reached through an unconditional jump.
    asm.load(DATA_ARCH);
    let not_x86_64 = asm.label();
    asm.jump(JEQ, AUDIT_ARCH_X86_64, Next, At(not_x86_64));
    asm.ja(native);
    asm.bind(not_x86_64);
    if listed(Arch::ScmpArchX86) {
        let not_i386 = asm.label();
        asm.jump(JEQ, AUDIT_ARCH_I386, Next, At(not_i386));
        asm.ja(i386);
        asm.bind(not_i386);
    }
    asm.ret(libc::SECCOMP_RET_KILL_PROCESS);

    asm.bind(native);
    asm.load(DATA_NR);
    let below_x32 = asm.label();
    asm.jump(JGE, X32_SYSCALL_BIT, Next, At(below_x32));
    asm.ja(x32);
    asm.bind(below_x32);
    section(
        &mut asm,
        &rules,
        syscalls::X86_64,
        0,
        Width::Bits64,
        default,
    );

    asm.bind(x32);
    if listed(Arch::ScmpArchX32) {
        section(
            &mut asm,
            &rules,
            syscalls::X32,
            X32_SYSCALL_BIT,
            Width::Bits32,
            default,
        );
    } else {
        asm.ret(libc::SECCOMP_RET_KILL_PROCESS);
    }

    asm.bind(i386);
    if listed(Arch::ScmpArchX86) {
        asm.load(DATA_NR);
        section(&mut asm, &rules, syscalls::I386, 0, Width::Bits32, default);
    }
    let program = asm.finish()?;
    Ok(Filter { program, flags })
}

/// One rule after runc's splitting: syscall names, the action's return value, conditions.
struct Rule<'a> {
    names: &'a [String],
    action: u32,
    conds: Vec<Cond>,
}

#[derive(Clone, Copy)]
struct Cond {
    index: u32,
    op: LinuxSeccompOperator,
    value: u64,
    value_two: u64,
}

fn what(names: &[String]) -> String {
    names.join(",")
}

fn rules(config: &LinuxSeccomp) -> Result<Vec<Rule<'_>>, SeccompError> {
    let default = action(
        config.default_action(),
        config.default_errno_ret(),
        "defaultAction",
    )?;
    let mut out = Vec::new();
    for syscall in config.syscalls().iter().flatten() {
        let names = syscall.names().as_slice();
        let value = action(syscall.action(), syscall.errno_ret(), &what(names))?;
        let mut conds = Vec::new();
        let mut per_index = [0usize; 6];
        for arg in syscall.args().iter().flatten() {
            if arg.index() > 5 {
                return Err(SeccompError::ArgIndex {
                    what: what(names),
                    index: arg.index(),
                });
            }
            // A MASKED_EQ without valueTwo compares the masked argument with 0, as runc reads
            // it (libseccomp's datum defaults to 0).
            per_index[arg.index()] += 1;
            conds.push(Cond {
                index: arg.index() as u32,
                op: arg.op(),
                value: arg.value(),
                value_two: arg.value_two().unwrap_or(0),
            });
        }
        if value == default {
            continue;
        }
        if per_index.iter().any(|n| *n > 1) {
            for cond in conds {
                out.push(Rule {
                    names,
                    action: value,
                    conds: vec![cond],
                });
            }
        } else {
            out.push(Rule {
                names,
                action: value,
                conds,
            });
        }
    }
    Ok(out)
}

fn flags(flags: &[LinuxSeccompFilterFlag]) -> Result<libc::c_ulong, SeccompError> {
    let mut bits = 0;
    for flag in flags {
        bits |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            other => {
                return Err(SeccompError::Flag {
                    flag: other.to_string(),
                })
            }
        };
    }
    Ok(bits)
}

/// The `SECCOMP_RET_*` value of an action.
fn action(action: LinuxSeccompAction, errno: Option<u32>, what: &str) -> Result<u32, SeccompError> {
    use LinuxSeccompAction as A;
    let with_data = |base: u32| {
        let errno = errno.unwrap_or(libc::EPERM as u32);
        if errno > 0xffff {
            return Err(SeccompError::ErrnoTooLarge {
                what: what.to_string(),
                errno,
            });
        }
        Ok(base | errno)
    };
    if errno.is_some() && !matches!(action, A::ScmpActErrno | A::ScmpActTrace) {
        return Err(SeccompError::ErrnoRetWithoutErrno {
            what: what.to_string(),
            action: action.to_string(),
        });
    }
    Ok(match action {
        A::ScmpActAllow => libc::SECCOMP_RET_ALLOW,
        A::ScmpActErrno => with_data(libc::SECCOMP_RET_ERRNO)?,
        A::ScmpActTrace => with_data(libc::SECCOMP_RET_TRACE)?,
        A::ScmpActKill | A::ScmpActKillThread => libc::SECCOMP_RET_KILL_THREAD,
        A::ScmpActKillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        A::ScmpActTrap => libc::SECCOMP_RET_TRAP,
        A::ScmpActLog => libc::SECCOMP_RET_LOG,
        A::ScmpActNotify => {
            return Err(SeccompError::Notify {
                what: what.to_string(),
            })
        }
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Width {
    Bits64,
    Bits32,
}

/// The checks for one ABI: `A` holds the syscall number; every path ends in a return.
fn section(
    asm: &mut Asm,
    rules: &[Rule<'_>],
    table: &[(&str, u32)],
    bias: u32,
    width: Width,
    default: u32,
) {
    // Syscall number → its rules, in the order the profile first names each syscall.
    let mut order: Vec<u32> = Vec::new();
    let mut by_nr: HashMap<u32, Vec<&Rule<'_>>> = HashMap::new();
    for rule in rules {
        for name in rule.names {
            let Ok(i) = table.binary_search_by(|(n, _)| n.cmp(&name.as_str())) else {
                continue; // unknown on this ABI: skipped, as runc does
            };
            let nr = table[i].1 | bias;
            let list = by_nr.entry(nr).or_insert_with(|| {
                order.push(nr);
                Vec::new()
            });
            list.push(rule);
        }
    }
    for nr in order {
        let mut list = by_nr.remove(&nr).unwrap_or_default();
        // Stable: conditional rules keep their order and come before unconditional ones.
        list.sort_by_key(|r| r.conds.is_empty());
        let next = asm.label();
        if list[0].conds.is_empty() {
            asm.jump(JEQ, nr, Next, At(next));
            asm.ret(list[0].action);
            asm.bind(next);
            continue;
        }
        let body = asm.label();
        asm.jump(JEQ, nr, At(body), Next);
        asm.ja(next);
        asm.bind(body);
        let mut decided = false;
        for rule in list {
            let fail = asm.label();
            for cond in &rule.conds {
                condition(asm, cond, width, fail);
            }
            asm.ret(rule.action);
            asm.bind(fail);
            if rule.conds.is_empty() {
                decided = true;
                break;
            }
        }
        if !decided {
            asm.ret(default);
        }
        asm.bind(next);
    }
    asm.ret(default);
}

/// Falls through when `cond` holds, jumps to `fail` otherwise.
fn condition(asm: &mut Asm, cond: &Cond, width: Width, fail: Label) {
    use LinuxSeccompOperator as Op;
    let lo_at = DATA_ARGS + 8 * cond.index;
    let hi_at = lo_at + 4;
    let (v_hi, v_lo) = ((cond.value >> 32) as u32, cond.value as u32);
    let (d_hi, d_lo) = ((cond.value_two >> 32) as u32, cond.value_two as u32);
    if width == Width::Bits32 {
        asm.load(lo_at);
        match cond.op {
            Op::ScmpCmpEq => asm.jump(JEQ, v_lo, Next, At(fail)),
            Op::ScmpCmpNe => asm.jump(JEQ, v_lo, At(fail), Next),
            Op::ScmpCmpGt => asm.jump(JGT, v_lo, Next, At(fail)),
            Op::ScmpCmpGe => asm.jump(JGE, v_lo, Next, At(fail)),
            Op::ScmpCmpLt => asm.jump(JGE, v_lo, At(fail), Next),
            Op::ScmpCmpLe => asm.jump(JGT, v_lo, At(fail), Next),
            Op::ScmpCmpMaskedEq => {
                asm.and(v_lo);
                asm.jump(JEQ, d_lo, Next, At(fail));
            }
        }
        return;
    }
    let pass = asm.label();
    asm.load(hi_at);
    match cond.op {
        Op::ScmpCmpEq => {
            asm.jump(JEQ, v_hi, Next, At(fail));
            asm.load(lo_at);
            asm.jump(JEQ, v_lo, Next, At(fail));
        }
        Op::ScmpCmpNe => {
            asm.jump(JEQ, v_hi, Next, At(pass));
            asm.load(lo_at);
            asm.jump(JEQ, v_lo, At(fail), Next);
        }
        Op::ScmpCmpGt | Op::ScmpCmpGe => {
            asm.jump(JGT, v_hi, At(pass), Next);
            asm.jump(JEQ, v_hi, Next, At(fail));
            asm.load(lo_at);
            let op = if cond.op == Op::ScmpCmpGt { JGT } else { JGE };
            asm.jump(op, v_lo, Next, At(fail));
        }
        Op::ScmpCmpLt | Op::ScmpCmpLe => {
            asm.jump(JGT, v_hi, At(fail), Next);
            asm.jump(JEQ, v_hi, Next, At(pass));
            asm.load(lo_at);
            // a < v ⇔ !(a >= v); a <= v ⇔ !(a > v)
            let op = if cond.op == Op::ScmpCmpLt { JGE } else { JGT };
            asm.jump(op, v_lo, At(fail), Next);
        }
        Op::ScmpCmpMaskedEq => {
            asm.and(v_hi);
            asm.jump(JEQ, d_hi, Next, At(fail));
            asm.load(lo_at);
            asm.and(v_lo);
            asm.jump(JEQ, d_lo, Next, At(fail));
        }
    }
    asm.bind(pass);
}

// Classic BPF opcodes (linux/bpf_common.h).
const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const ALU_AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const JA: u16 = 0x05; // BPF_JMP | BPF_JA
const JEQ: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JGT: u16 = 0x25; // BPF_JMP | BPF_JGT | BPF_K
const JGE: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// A place in the program, bound once its position is known.
#[derive(Clone, Copy)]
struct Label(usize);

/// Where a conditional jump goes: the next instruction or a label.
#[derive(Clone, Copy)]
enum Target {
    Next,
    At(Label),
}
use Target::{At, Next};

/// A tiny assembler: instructions whose jump targets are labels, resolved by `finish`.
#[derive(Default)]
struct Asm {
    insns: Vec<(u16, Target, Target, u32)>,
    labels: Vec<Option<usize>>,
}

impl Asm {
    fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    fn bind(&mut self, label: Label) {
        self.labels[label.0] = Some(self.insns.len());
    }

    fn load(&mut self, offset: u32) {
        self.insns.push((LD_W_ABS, Next, Next, offset));
    }

    fn and(&mut self, k: u32) {
        self.insns.push((ALU_AND_K, Next, Next, k));
    }

    fn jump(&mut self, op: u16, k: u32, jt: Target, jf: Target) {
        self.insns.push((op, jt, jf, k));
    }

    fn ja(&mut self, to: Label) {
        self.insns.push((JA, At(to), Next, 0));
    }

    fn ret(&mut self, value: u32) {
        self.insns.push((RET_K, Next, Next, value));
    }

    fn finish(self) -> Result<Vec<libc::sock_filter>, SeccompError> {
        if self.insns.len() > MAX_INSNS {
            return Err(SeccompError::TooLong {
                len: self.insns.len(),
            });
        }
        let distance = |at: usize, target: Target| -> usize {
            match target {
                Next => 0,
                At(label) => {
                    let to = self.labels[label.0].expect("every label is bound");
                    to - (at + 1)
                }
            }
        };
        let short = |at: usize, target: Target| -> Result<u8, SeccompError> {
            let d = distance(at, target);
            u8::try_from(d).map_err(|_| SeccompError::JumpTooFar { at, distance: d })
        };
        self.insns
            .iter()
            .enumerate()
            .map(|(at, &(code, jt, jf, k))| {
                Ok(if code == JA {
                    libc::sock_filter {
                        code,
                        jt: 0,
                        jf: 0,
                        k: distance(at, jt) as u32,
                    }
                } else {
                    libc::sock_filter {
                        code,
                        jt: short(at, jt)?,
                        jf: short(at, jf)?,
                        k,
                    }
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
