//! The channel daemon's default-deny seccomp allow-list.
//!
//! Measured, not guessed: `scripts/measure-syscalls.sh` runs every channel
//! test (all five platforms, with names resolved through getaddrinfo) with
//! each daemon under `strace -f` and lists what it calls after this filter
//! is installed. That set, plus the close neighbours of the same calls
//! (epoll_pwait beside epoll_wait, sendmsg beside sendto, the glibc
//! resolver's sendmmsg and poll, clone as the fallback of clone3), is
//! `ALLOWED`. Anything else fails with EPERM: no execve, no ptrace, no
//! mount, no namespaces, no bind/listen/accept, no AF_UNIX or netlink
//! sockets. Refused syscalls of a legitimate path show up as EPERM in a
//! daemon's status; measure again, never turn this into a deny-list.
//!
//! The list is by name and compiled for the running architecture by
//! seccompiler, so the same list serves x86_64 and aarch64 (a unit test
//! compiles it for both); the few x86_64-only names are kept apart.

use std::collections::HashMap;

use oxibot_proto::syscalls::CLONE_NEW_MASK;
use seccompiler::{BpfProgram, TargetArch};
use serde_json::{json, Value};

/// Allowed with any arguments, on every architecture.
const ALLOWED: &[&str] = &[
    // memory
    "brk",
    "mmap",
    "munmap",
    "mprotect",
    "mremap",
    "madvise",
    // threads (clone, tgkill and prctl are filtered below; clone3 gets ENOSYS)
    "clone3",
    "set_robust_list",
    "rseq",
    "sigaltstack",
    "rt_sigprocmask",
    "rt_sigaction",
    "rt_sigreturn",
    "gettid",
    "getpid",
    "exit",
    "exit_group",
    "futex",
    "sched_getaffinity",
    "sched_yield",
    "restart_syscall",
    // time
    "clock_gettime",
    "clock_nanosleep",
    "nanosleep",
    "gettimeofday",
    // files (Landlock decides which)
    "openat",
    "read",
    "pread64",
    "readv",
    "write",
    "writev",
    "close",
    "lseek",
    "fstat",
    "newfstatat",
    "statx",
    "fcntl",
    "getdents64",
    // event loop
    "epoll_create1",
    "epoll_ctl",
    "epoll_pwait",
    "epoll_pwait2",
    "eventfd2",
    "ppoll",
    // network (socket is filtered below): connect and talk, never bind or listen
    "connect",
    "sendto",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "sendmmsg",
    "shutdown",
    "setsockopt",
    "getsockopt",
    "getsockname",
    "getpeername",
    // misc
    "getrandom",
    "uname",
];

/// Allowed on x86_64 only, where glibc and mio still use the older calls.
const X86_64_ONLY: &[&str] = &["epoll_wait", "poll"];

/// ioctl requests: non-blocking and close-on-exec toggles, and the terminal
/// queries a logger makes. Never TIOCSTI (inject into a terminal).
const IOCTLS: &[u64] = &[
    libc::FIONBIO,
    libc::FIOCLEX,
    libc::FIONCLEX,
    libc::FIONREAD,
    libc::TCGETS,
    libc::TIOCGWINSZ,
];

/// prctl options: thread names (tokio names its workers), glibc's VMA names.
const PRCTLS: &[u64] = &[
    libc::PR_SET_NAME as u64,
    libc::PR_GET_NAME as u64,
    0x5356_4d41, /* PR_SET_VMA */
];

fn arg(index: u8, kind: &str, op: Value, val: u64) -> Value {
    json!({"index": index, "type": kind, "op": op, "val": val})
}

/// The rules, in seccompiler's JSON form (one entry per alternative).
/// `own_pid` is the daemon's process id: the only process it may signal
/// (its own threads: a panic's abort), so that even on a kernel without
/// Landlock's signal scoping a daemon sharing the broker's uid cannot stop
/// or kill it.
fn rules(arch: TargetArch, own_pid: u32) -> Vec<Value> {
    let mut names: Vec<&str> = ALLOWED.to_vec();
    if arch == TargetArch::x86_64 {
        names.extend(X86_64_ONLY);
    }
    let mut out: Vec<Value> = names.into_iter().map(|n| json!({"syscall": n})).collect();
    for family in [libc::AF_INET, libc::AF_INET6] {
        out.push(json!({"syscall": "socket", "args": [arg(0, "dword", json!("eq"), family as u64)]}));
    }
    // Threads only: CLONE_THREAD set, no CLONE_NEW* flag. A channel daemon
    // never forks (it cannot exec), so a fork is an attacker's.
    out.push(json!({"syscall": "clone",
                    "args": [arg(0, "qword", json!({"masked_eq": CLONE_NEW_MASK}), 0),
                             arg(0, "qword", json!({"masked_eq": libc::CLONE_THREAD as u64}), libc::CLONE_THREAD as u64)]}));
    out.push(json!({"syscall": "tgkill", "args": [arg(0, "dword", json!("eq"), u64::from(own_pid))]}));
    for request in IOCTLS {
        out.push(json!({"syscall": "ioctl", "args": [arg(1, "dword", json!("eq"), *request)]}));
    }
    for option in PRCTLS {
        out.push(json!({"syscall": "prctl", "args": [arg(0, "dword", json!("eq"), *option)]}));
    }
    out
}

/// The two filters for `arch`: clone3 → ENOSYS (installed first; its flags
/// live in memory a filter cannot read, so glibc must fall back to clone),
/// then the allow-list (which passes clone3 on, so that ENOSYS is what the
/// kernel answers).
pub fn programs(arch: TargetArch, own_pid: u32) -> Result<(BpfProgram, BpfProgram), String> {
    let spec = json!({
        "clone3": {
            "mismatch_action": "allow",
            "match_action": {"errno": libc::ENOSYS},
            "filter": [{"syscall": "clone3"}]
        },
        "main": {
            "mismatch_action": {"errno": libc::EPERM},
            "match_action": "allow",
            "filter": rules(arch, own_pid)
        }
    });
    let mut compiled: HashMap<String, BpfProgram> =
        seccompiler::compile_from_json(spec.to_string().as_bytes(), arch).map_err(|e| e.to_string())?;
    let clone3 = compiled.remove("clone3").ok_or("no clone3 filter")?;
    let main = compiled.remove("main").ok_or("no main filter")?;
    Ok((clone3, main))
}

/// Installs both filters on every thread of the process.
pub fn install() -> Result<(), String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| e.to_string())?;
    let (clone3, main) = programs(arch, std::process::id())?;
    seccompiler::apply_filter_all_threads(&clone3).map_err(|e| format!("seccomp (clone3): {e}"))?;
    seccompiler::apply_filter_all_threads(&main).map_err(|e| format!("seccomp: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_compiles_for_both_architectures_by_name() {
        // Every name must exist on each architecture we ship for: a name
        // missing on aarch64 (open, stat, poll, epoll_wait…) fails here.
        assert!(programs(TargetArch::x86_64, 1).is_ok());
        assert!(
            programs(TargetArch::aarch64, 1).is_ok(),
            "{:?}",
            programs(TargetArch::aarch64, 1).err()
        );
        for denied in [
            "execve",
            "execveat",
            "ptrace",
            "mount",
            "unshare",
            "setns",
            "bind",
            "listen",
            "accept4",
            "socketpair",
            "kill",
            "tkill",
            "tgkill",
            "rt_sigqueueinfo",
            "rt_tgsigqueueinfo",
            "pidfd_send_signal",
            "fork",
            "vfork",
            "process_vm_readv",
            "bpf",
            "keyctl",
            "io_uring_setup",
            "setuid",
            "memfd_create",
            "seccomp",
        ] {
            assert!(
                !ALLOWED.contains(&denied) && !X86_64_ONLY.contains(&denied),
                "{denied} must not be allowed"
            );
        }
    }
}
