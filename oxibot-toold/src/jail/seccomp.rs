//! The default-deny seccomp allow-list that toold and every command it runs
//! inherit. The list comes from `strace -f` of a measured workload (sh,
//! coreutils, grep/sed/awk, tar, python3, git; docs/ARCHITECTURE.md) plus
//! what toold itself needs (tokio's epoll, eventfd, futex, pidfd).
//! Anything else fails with EPERM; `clone3` fails with ENOSYS so that glibc
//! falls back to `clone`, whose flags we can inspect.
//!
//! A legitimate command that fails with EPERM is missing a syscall here.
//! Debug it with `oxibot-toold --seccomp-log` (`tools.seccompLog` in the
//! config: logs instead of failing, see `dmesg`), never by turning this
//! into a deny-list.

use oxibot_sandbox::seccomp::{self, eq, masked_eq, masked_eq64, AllowList, Filters, Otherwise, TargetArch, Threads};
use oxibot_sandbox::syscalls::CLONE_NEW_MASK;

use super::{step, JailError};

/// Plain syscalls allowed with any arguments, by name: seccompiler compiles
/// the list for the architecture it runs on (a unit test compiles it for
/// x86_64 and aarch64, so a name missing on either fails the build's tests).
const ALLOWED: &[&str] = &[
    // files and directories
    "read",
    "write",
    "readv",
    "writev",
    "pread64",
    "pwrite64",
    "close",
    "close_range",
    "lseek",
    "fstat",
    "newfstatat",
    "statx",
    "statfs",
    "fstatfs",
    "faccessat",
    "faccessat2",
    "getdents64",
    "getcwd",
    "chdir",
    "fchdir",
    "unlinkat",
    "renameat",
    "renameat2",
    "linkat",
    "symlinkat",
    "readlinkat",
    "fchown",
    "fchownat",
    "umask",
    "utimensat",
    "truncate",
    "ftruncate",
    "fallocate",
    "fsync",
    "fdatasync",
    "sync_file_range",
    "flock",
    "fadvise64",
    "copy_file_range",
    "sendfile",
    "splice",
    "tee",
    "getxattr",
    "lgetxattr",
    "fgetxattr",
    "listxattr",
    "llistxattr",
    "flistxattr",
    "setxattr",
    "lsetxattr",
    "fsetxattr",
    "removexattr",
    "lremovexattr",
    "fremovexattr",
    "dup",
    "dup3",
    "fcntl",
    "pipe2",
    "inotify_init1",
    "inotify_add_watch",
    "inotify_rm_watch",
    "memfd_create",
    // memory
    "brk",
    "mmap",
    "munmap",
    "mprotect",
    "mremap",
    "madvise",
    "msync",
    "mincore",
    "get_mempolicy",
    "set_mempolicy",
    // processes (clone and prctl are filtered below)
    "execve",
    "exit",
    "exit_group",
    "wait4",
    "waitid",
    "kill",
    "tgkill",
    "tkill",
    "pidfd_open",
    "pidfd_send_signal",
    "getpid",
    "getppid",
    "gettid",
    "getpgid",
    "setpgid",
    "getsid",
    "setsid",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getresuid",
    "getresgid",
    "getgroups",
    "capget",
    "getrlimit",
    "setrlimit",
    "getrusage",
    "times",
    "getpriority",
    "sched_getaffinity",
    "sched_yield",
    "sched_getparam",
    "sched_getscheduler",
    "set_tid_address",
    "set_robust_list",
    "get_robust_list",
    "rseq",
    "futex",
    "futex_waitv",
    "uname",
    "sysinfo",
    "getrandom",
    "getcpu",
    "personality",
    // signals and time
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigpending",
    "sigaltstack",
    "restart_syscall",
    "getitimer",
    "setitimer",
    "timer_create",
    "timer_settime",
    "timer_gettime",
    "timer_delete",
    "clock_gettime",
    "clock_getres",
    "clock_nanosleep",
    "nanosleep",
    "gettimeofday",
    // event loops and Unix sockets (socket itself is filtered below)
    "epoll_create1",
    "epoll_ctl",
    "epoll_pwait",
    "epoll_pwait2",
    "eventfd2",
    "ppoll",
    "pselect6",
    "connect",
    "sendto",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "shutdown",
    "getsockopt",
    "getsockname",
    "getpeername",
    // Each exec enters its own Landlock domain (see `landlock::exec_domain`);
    // restricting oneself further is all it allows.
    "landlock_restrict_self",
    // Passed here only so that the first filter's ENOSYS decides (see there).
    "clone3",
    "openat2",
];

/// The older calls x86_64 still has and programs there still use (aarch64
/// has only their *at / newer forms, which are in `ALLOWED`).
const X86_64_ONLY: &[&str] = &[
    "stat",
    "lstat",
    "access",
    "rmdir",
    "unlink",
    "rename",
    "link",
    "symlink",
    "readlink",
    "chown",
    "lchown",
    "utime",
    "utimes",
    "futimesat",
    "dup2",
    "pipe",
    "vfork",
    "fork",
    "getpgrp",
    "arch_prctl",
    "pause",
    "alarm",
    "time",
    "epoll_wait",
    "poll",
    "select",
];

/// ioctl requests seen in the workload: terminal queries, non-blocking and
/// close-on-exec toggles, and cp's reflink attempt. Never TIOCSTI.
const IOCTLS: &[u64] = &[
    libc::TCGETS,
    libc::TIOCGPGRP,
    libc::TIOCGWINSZ,
    libc::FIONBIO,
    libc::FIOCLEX,
    libc::FIONCLEX,
    libc::FIONREAD,
    0x4004_9409, // BTRFS_IOC_CLONE / FICLONE
];

/// prctl options: capability queries, thread names, glibc's VMA names.
const PRCTLS: &[u64] = &[
    libc::PR_CAPBSET_READ as u64,
    libc::PR_SET_NAME as u64,
    libc::PR_GET_NAME as u64,
    libc::PR_GET_DUMPABLE as u64,
    libc::PR_SET_PDEATHSIG as u64,
    libc::PR_GET_NO_NEW_PRIVS as u64,
    libc::PR_GET_SECCOMP as u64,
    0x5356_4d41, // PR_SET_VMA
];

/// The setuid and setgid bits: the jail never creates a file or directory
/// with them, nor sets them (systemd's `RestrictSUIDSGID=`, in every mode).
/// The workspace is `nosuid` inside the jail, but the host sees the same
/// files: a setuid shell left there runs as the jail's uid for anyone on
/// the host, and in unprivileged mode that uid is the broker's.
const SUID_SGID: u64 = (libc::S_ISUID | libc::S_ISGID) as u64;
/// `open` flags that create a file (`O_TMPFILE` carries `__O_TMPFILE`).
const CREATING: u64 = (libc::O_CREAT | 0o20_000_000) as u64;

/// Rules for the calls that take a mode: (name, index of the mode, index
/// of the open flags if any). A call passes when it sets neither bit, or
/// (for the open family) does not create anything.
fn mode_rules(list: &mut AllowList) {
    let mut calls: Vec<(&str, u8, Option<u8>)> = vec![
        ("openat", 3, Some(2)),
        ("mkdirat", 2, None),
        ("fchmod", 1, None),
        ("fchmodat", 2, None),
    ];
    if list.arch() == TargetArch::x86_64 {
        calls.extend([
            ("open", 2, Some(1)),
            ("creat", 1, None),
            ("mkdir", 1, None),
            ("chmod", 1, None),
        ]);
    }
    for (call, mode, flags) in calls {
        list.when(call, &[masked_eq(mode, SUID_SGID, 0)]);
        if let Some(flags) = flags {
            list.when(call, &[masked_eq(flags, CREATING, 0)]);
        }
    }
}

/// The jail's allow-list for `arch`; `network` when the egress door is
/// open.
fn allow_list(arch: TargetArch, network: bool) -> AllowList {
    let mut list = AllowList::new(arch);
    list.names(ALLOWED).x86_64_names(X86_64_ONLY);
    mode_rules(&mut list);
    // A command may fork and start threads, never make namespaces.
    list.when("clone", &[masked_eq64(0, CLONE_NEW_MASK, 0)]);
    // Sockets: AF_UNIX only (nscd-style lookups); the jail has no network anyway.
    for call in ["socket", "socketpair"] {
        list.when(call, &[eq(0, libc::AF_UNIX as u64)]);
    }
    if network {
        // The door: TCP sockets to reach its port (Landlock and the empty
        // network namespace leave nothing else to reach), their options,
        // and toold's accepting on the port it bound before this filter.
        for family in [libc::AF_INET, libc::AF_INET6] {
            list.when("socket", &[eq(0, family as u64)]);
        }
        list.names(&["setsockopt", "accept4"]);
    }
    list.ioctls(IOCTLS);
    // Limits and priority: the calling process only. In unprivileged mode
    // the tool user is the broker's own uid, so "another process" or "every
    // process of this user" would reach beyond the jail.
    list.when("prlimit64", &[eq(0, 0)])
        .when("setpriority", &[eq(0, libc::PRIO_PROCESS as u64), eq(1, 0)])
        .prctls(PRCTLS);
    list
}

/// The two stages: clone3 and openat2 → ENOSYS (their flags and mode live
/// in memory that a filter cannot read, so glibc must fall back to clone,
/// and callers of openat2 to openat, whose mode the allow-list checks);
/// then the allow-list — anything else EPERM (or, with `log`, allowed and
/// logged by the kernel: debugging only) — which blocks seccomp() itself.
pub fn programs(arch: TargetArch, log: bool, network: bool) -> Result<Filters, JailError> {
    let otherwise = if log { Otherwise::Log } else { Otherwise::Refuse };
    step(
        "compile the seccomp filters",
        seccomp::compile(&["clone3", "openat2"], &allow_list(arch, network), otherwise),
    )
}

pub fn install(log: bool, network: bool) -> Result<(), JailError> {
    let arch = step("pick the seccomp architecture", seccomp::current_arch())?;
    let filters = programs(arch, log, network)?;
    step("install the seccomp filters", seccomp::install(&filters, Threads::This))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_compile_for_both_architectures_by_name() {
        for arch in [TargetArch::x86_64, TargetArch::aarch64] {
            for (log, network) in [(false, false), (true, false), (false, true)] {
                let compiled = programs(arch, log, network);
                assert!(compiled.is_ok(), "{arch:?}: {:?}", compiled.err());
            }
        }
    }

    #[test]
    fn a_name_the_architecture_lacks_fails_to_compile() {
        // The check above can fail: aarch64 has no open(2).
        for (arch, compiles) in [(TargetArch::aarch64, false), (TargetArch::x86_64, true)] {
            let mut list = AllowList::new(arch);
            list.names(&["open"]);
            let compiled = seccomp::compile(&["clone3"], &list, Otherwise::Refuse);
            assert_eq!(compiled.is_ok(), compiles, "{arch:?}: {:?}", compiled.err());
        }
    }

    #[test]
    fn what_design_md_denies_is_not_on_the_lists() {
        let filtered = [
            "clone",
            "socket",
            "socketpair",
            "ioctl",
            "prlimit64",
            "setpriority",
            "prctl",
            // a mode: never setuid/setgid (mode_rules)
            "open",
            "openat",
            "creat",
            "mkdir",
            "mkdirat",
            "chmod",
            "fchmod",
            "fchmodat",
            "fchmodat2",
            "mknod",
            "mknodat",
        ];
        for denied in [
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "mount",
            "umount2",
            "pivot_root",
            "chroot",
            "unshare",
            "setns",
            "bpf",
            "perf_event_open",
            "keyctl",
            "add_key",
            "io_uring_setup",
            "userfaultfd",
            "kexec_load",
            "init_module",
            "finit_module",
            "delete_module",
            "setuid",
            "setresuid",
            "sethostname",
            "settimeofday",
            "clock_settime",
            "open_by_handle_at",
            "seccomp",
        ]
        .into_iter()
        .chain(filtered)
        {
            assert!(
                !ALLOWED.contains(&denied) && !X86_64_ONLY.contains(&denied),
                "{denied} must not be allowed with any arguments"
            );
        }
    }
}
