//! The compiled programs run on a small classic-BPF interpreter, so every rule, operator and
//! architecture path is checked without installing anything.

use super::*;

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const KILL_PROCESS: u32 = libc::SECCOMP_RET_KILL_PROCESS;
const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;

/// What the kernel would do with a syscall: runs the program over a `seccomp_data`.
fn run(filter: &Filter, arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, arg) in args.iter().enumerate() {
        let at = 16 + 8 * i;
        data[at..at + 8].copy_from_slice(&arg.to_le_bytes());
    }
    let mut a: u32 = 0;
    let mut pc = 0usize;
    for _ in 0..filter.program.len() {
        let i = filter.program[pc];
        let k = i.k;
        pc += 1;
        match i.code {
            LD_W_ABS => {
                let at = k as usize;
                a = u32::from_le_bytes(data[at..at + 4].try_into().unwrap());
            }
            ALU_AND_K => a &= k,
            JA => pc += k as usize,
            JEQ | JGT | JGE => {
                let taken = match i.code {
                    JEQ => a == k,
                    JGT => a > k,
                    _ => a >= k,
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            RET_K => return k,
            other => panic!("unexpected opcode {other:#x}"),
        }
        assert!(pc < filter.program.len(), "ran off the end of the program");
    }
    panic!("the program loops")
}

fn x86_64(filter: &Filter, name: &str, args: [u64; 6]) -> u32 {
    run(filter, AUDIT_ARCH_X86_64, nr(syscalls::X86_64, name), args)
}

fn nr(table: &[(&str, u32)], name: &str) -> u32 {
    table
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("{name} is not in the table"))
        .1
}

fn profile(v: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(v).expect("profile parses")
}

fn compiled(v: serde_json::Value) -> Filter {
    compile(&profile(v)).expect("profile compiles")
}

fn errno(e: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | e as u32
}

#[test]
fn tables_are_sorted_and_know_the_usual_numbers() {
    for table in [syscalls::X86_64, syscalls::I386, syscalls::X32] {
        assert!(table.windows(2).all(|w| w[0].0 < w[1].0));
    }
    assert_eq!(nr(syscalls::X86_64, "mkdir"), 83);
    assert_eq!(nr(syscalls::X86_64, "listns"), 470);
    assert_eq!(nr(syscalls::I386, "mkdir"), 39);
    assert_eq!(nr(syscalls::X32, "ioctl"), 514);
}

#[test]
fn a_denied_syscall_returns_its_errno_and_the_rest_is_allowed() {
    let f = compiled(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mkdir", "no_such_syscall"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
        ]
    }));
    assert_eq!(x86_64(&f, "mkdir", [0; 6]), EPERM);
    assert_eq!(x86_64(&f, "rmdir", [0; 6]), errno(libc::ENOSYS));
    assert_eq!(x86_64(&f, "mkdirat", [0; 6]), ALLOW);
    assert_eq!(x86_64(&f, "read", [0; 6]), ALLOW);
}

#[test]
fn an_allowlist_returns_the_default_errno_for_everything_else() {
    let f = compiled(serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}]
    }));
    assert_eq!(x86_64(&f, "read", [0; 6]), ALLOW);
    assert_eq!(x86_64(&f, "exit_group", [0; 6]), ALLOW);
    assert_eq!(x86_64(&f, "openat", [0; 6]), EPERM);
}

#[test]
fn every_action_maps_to_its_kernel_value() {
    let cases = [
        ("SCMP_ACT_KILL", None, libc::SECCOMP_RET_KILL_THREAD),
        ("SCMP_ACT_KILL_THREAD", None, libc::SECCOMP_RET_KILL_THREAD),
        (
            "SCMP_ACT_KILL_PROCESS",
            None,
            libc::SECCOMP_RET_KILL_PROCESS,
        ),
        ("SCMP_ACT_TRAP", None, libc::SECCOMP_RET_TRAP),
        ("SCMP_ACT_TRACE", None, libc::SECCOMP_RET_TRACE | 1),
        ("SCMP_ACT_TRACE", Some(7), libc::SECCOMP_RET_TRACE | 7),
        ("SCMP_ACT_LOG", None, libc::SECCOMP_RET_LOG),
        ("SCMP_ACT_ERRNO", Some(13), errno(libc::EACCES)),
    ];
    for (name, ret, want) in cases {
        let mut rule = serde_json::json!({"names": ["getpid"], "action": name});
        if let Some(ret) = ret {
            rule["errnoRet"] = ret.into();
        }
        let f =
            compiled(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule]}));
        assert_eq!(x86_64(&f, "getpid", [0; 6]), want, "{name}");
    }
}

#[test]
fn abis_the_profile_does_not_list_are_killed() {
    let deny_mkdir = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "ioctl"], "action": "SCMP_ACT_ERRNO"}]
    });
    let f = compiled(deny_mkdir.clone());
    let i386_mkdir = nr(syscalls::I386, "mkdir");
    let x32_mkdir = nr(syscalls::X32, "mkdir") | X32_SYSCALL_BIT;
    assert_eq!(run(&f, AUDIT_ARCH_I386, i386_mkdir, [0; 6]), KILL_PROCESS);
    assert_eq!(run(&f, AUDIT_ARCH_X86_64, x32_mkdir, [0; 6]), KILL_PROCESS);
    assert_eq!(run(&f, 0xc000_00b7, 83, [0; 6]), KILL_PROCESS, "aarch64");

    let mut all = deny_mkdir;
    all["architectures"] = serde_json::json!([
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X32",
        "SCMP_ARCH_AARCH64"
    ]);
    let f = compiled(all);
    assert_eq!(run(&f, AUDIT_ARCH_I386, i386_mkdir, [0; 6]), EPERM);
    assert_eq!(
        run(&f, AUDIT_ARCH_I386, 83, [0; 6]),
        ALLOW,
        "83 is not mkdir on i386"
    );
    assert_eq!(run(&f, AUDIT_ARCH_X86_64, x32_mkdir, [0; 6]), EPERM);
    let x32_ioctl = nr(syscalls::X32, "ioctl") | X32_SYSCALL_BIT;
    assert_eq!(run(&f, AUDIT_ARCH_X86_64, x32_ioctl, [0; 6]), EPERM);
    assert_eq!(run(&f, AUDIT_ARCH_X86_64, 83, [0; 6]), EPERM);
    assert_eq!(run(&f, 0xc000_00b7, 83, [0; 6]), KILL_PROCESS, "aarch64");
}

#[test]
fn every_operator_compares_unsigned_64_bit_values() {
    use LinuxSeccompOperator as Op;
    let samples: [u64; 9] = [
        0,
        1,
        5,
        0xffff_ffff,
        0x1_0000_0000,
        0x1_0000_0005,
        0x5_0000_0000,
        u64::MAX - 1,
        u64::MAX,
    ];
    let ops = [
        ("SCMP_CMP_EQ", Op::ScmpCmpEq),
        ("SCMP_CMP_NE", Op::ScmpCmpNe),
        ("SCMP_CMP_LT", Op::ScmpCmpLt),
        ("SCMP_CMP_LE", Op::ScmpCmpLe),
        ("SCMP_CMP_GT", Op::ScmpCmpGt),
        ("SCMP_CMP_GE", Op::ScmpCmpGe),
        ("SCMP_CMP_MASKED_EQ", Op::ScmpCmpMaskedEq),
    ];
    let holds = |op: Op, arg: u64, value: u64, two: u64| match op {
        Op::ScmpCmpEq => arg == value,
        Op::ScmpCmpNe => arg != value,
        Op::ScmpCmpLt => arg < value,
        Op::ScmpCmpLe => arg <= value,
        Op::ScmpCmpGt => arg > value,
        Op::ScmpCmpGe => arg >= value,
        Op::ScmpCmpMaskedEq => arg & value == two,
    };
    for (name, op) in ops {
        for value in samples {
            let two = value & 0x1_0000_0001;
            let f = compiled(serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86"],
                "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 2, "value": value, "valueTwo": two, "op": name}]}]
            }));
            for arg in samples {
                let mut args = [0; 6];
                args[2] = arg;
                let want = if holds(op, arg, value, two) {
                    EPERM
                } else {
                    ALLOW
                };
                assert_eq!(
                    x86_64(&f, "kill", args),
                    want,
                    "{name} arg {arg:#x} value {value:#x}"
                );
                // The 32-bit ABI compares the low words only.
                let (a32, v32, t32) = (arg & 0xffff_ffff, value & 0xffff_ffff, two & 0xffff_ffff);
                let want = if holds(op, a32, v32, t32) {
                    EPERM
                } else {
                    ALLOW
                };
                let got = run(&f, AUDIT_ARCH_I386, nr(syscalls::I386, "kill"), args);
                assert_eq!(got, want, "i386 {name} arg {arg:#x} value {value:#x}");
            }
        }
    }
}

#[test]
fn args_of_a_rule_must_all_match_unless_an_index_repeats() {
    // socket(AF_INET, SOCK_STREAM | flags): both conditions (AND).
    let f = compiled(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "args": [
            {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
            {"index": 1, "value": 15, "valueTwo": 1, "op": "SCMP_CMP_MASKED_EQ"}
        ]}]
    }));
    let socket = |domain, typ| x86_64(&f, "socket", [domain, typ, 0, 0, 0, 0]);
    assert_eq!(socket(2, 1), errno(libc::EACCES));
    assert_eq!(
        socket(2, 1 | libc::SOCK_CLOEXEC as u64),
        errno(libc::EACCES)
    );
    assert_eq!(socket(2, 2), ALLOW, "udp");
    assert_eq!(socket(16, 1), ALLOW, "netlink");
    // The same index twice: either condition (OR), as runc splits them.
    let f = compiled(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": 9, "op": "SCMP_CMP_EQ"}
        ]}]
    }));
    for (persona, want) in [(8, EPERM), (9, EPERM), (10, ALLOW)] {
        assert_eq!(x86_64(&f, "personality", [persona, 0, 0, 0, 0, 0]), want);
    }
}

#[test]
fn conditional_rules_come_before_an_unconditional_one() {
    let f = compiled(serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["clone"], "action": "SCMP_ACT_KILL_PROCESS",
             "args": [{"index": 0, "value": 0x1000_0000, "valueTwo": 0x1000_0000, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["mkdir"], "action": "SCMP_ACT_ALLOW"}
        ]
    }));
    assert_eq!(
        x86_64(&f, "clone", [0x1000_0011, 0, 0, 0, 0, 0]),
        KILL_PROCESS
    );
    assert_eq!(x86_64(&f, "clone", [0x11, 0, 0, 0, 0, 0]), ALLOW);
    // The mkdir rule with the default action is dropped (runc): mkdir is always allowed.
    assert_eq!(x86_64(&f, "mkdir", [0, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(x86_64(&f, "read", [0; 6]), EPERM);
}

#[test]
fn a_conditional_rule_that_does_not_match_falls_back_to_the_default() {
    let f = compiled(serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]}]
    }));
    assert_eq!(x86_64(&f, "personality", [0; 6]), ALLOW);
    assert_eq!(
        x86_64(&f, "personality", [0xffff_ffff, 0, 0, 0, 0, 0]),
        errno(libc::ENOSYS)
    );
}

#[test]
fn a_large_profile_on_three_abis_fits_the_kernel_limit() {
    let names: Vec<&str> = syscalls::X86_64.iter().map(|(n, _)| *n).collect();
    let f = compiled(serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": names, "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288u64, "op": "SCMP_CMP_MASKED_EQ"}]}
        ]
    }));
    assert!(f.len() < MAX_INSNS, "{} instructions", f.len());
    assert_eq!(x86_64(&f, "listns", [0; 6]), ALLOW);
}

#[test]
fn settings_without_support_are_refused_with_their_name() {
    let cases = [
        (
            serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}),
            "seccomp action SCMP_ACT_NOTIFY (defaultAction) is not supported: this runtime has no seccomp agent support",
        ),
        (
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir", "rmdir"], "action": "SCMP_ACT_NOTIFY"}]}),
            "seccomp action SCMP_ACT_NOTIFY (mkdir,rmdir) is not supported: this runtime has no seccomp agent support",
        ),
        (
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}),
            "linux.seccomp.listenerPath is not supported: this runtime has no seccomp agent support (SCMP_ACT_NOTIFY)",
        ),
        (
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}),
            "seccomp flag SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV is not supported",
        ),
        (
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_KILL", "errnoRet": 1}]}),
            "seccomp mkdir: errnoRet is only allowed with SCMP_ACT_ERRNO and SCMP_ACT_TRACE, not SCMP_ACT_KILL",
        ),
        (
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}),
            "seccomp defaultAction: errnoRet is only allowed with SCMP_ACT_ERRNO and SCMP_ACT_TRACE, not SCMP_ACT_ALLOW",
        ),
        (
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
            "seccomp rule for kill: argument index 6 is out of range (0-5)",
        ),
        (
            serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}),
            "seccomp defaultAction: errnoRet 70000 is above 65535",
        ),
    ];
    for (v, want) in cases {
        let err = compile(&profile(v)).unwrap_err();
        assert_eq!(err.to_string(), want);
    }
}

#[test]
fn supported_flags_are_passed_to_the_kernel() {
    let f = compiled(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"]
    }));
    assert_eq!(
        f.flags,
        libc::SECCOMP_FILTER_FLAG_LOG
            | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            | libc::SECCOMP_FILTER_FLAG_TSYNC
    );
    assert_eq!(x86_64(&f, "mkdir", [0; 6]), ALLOW);
}
