//! The two-stage seccomp filter every OxiBot daemon installs.
//!
//! Stage one answers ENOSYS to the calls whose flags live in memory a
//! filter cannot read (`clone3`, and for the jail `openat2`), so that libc
//! falls back to the older call (`clone`, `openat`) whose arguments the
//! allow-list can check. Stage two is the allow-list: a call passes only
//! if one of its rules matches, anything else fails with EPERM (or, for
//! debugging, is allowed and logged by the kernel). Stage two lets the
//! stage-one calls pass, so that ENOSYS is what the caller sees.
//!
//! Rules are by name and compiled by seccompiler for the running
//! architecture, so one table serves x86_64 and aarch64; a name an
//! architecture lacks fails to compile (each daemon's tests compile its
//! table for both).

use std::collections::HashMap;

pub use seccompiler::{BpfProgram, TargetArch};
use serde_json::{json, Value};

/// One condition on a syscall argument.
#[derive(Debug, Clone, Copy)]
pub struct Cond {
    index: u8,
    /// Compare all 64 bits (`qword`) or the low 32 (`dword`).
    wide: bool,
    op: Op,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Eq(u64),
    MaskedEq { mask: u64, value: u64 },
}

/// Argument `index` (its low 32 bits) equals `value`.
pub fn eq(index: u8, value: u64) -> Cond {
    Cond {
        index,
        wide: false,
        op: Op::Eq(value),
    }
}

/// Argument `index`, low 32 bits, masked with `mask`, equals `value`.
pub fn masked_eq(index: u8, mask: u64, value: u64) -> Cond {
    Cond {
        index,
        wide: false,
        op: Op::MaskedEq { mask, value },
    }
}

/// As `masked_eq`, on all 64 bits (clone's flags).
pub fn masked_eq64(index: u8, mask: u64, value: u64) -> Cond {
    Cond {
        wide: true,
        ..masked_eq(index, mask, value)
    }
}

impl Cond {
    fn json(&self) -> Value {
        let kind = if self.wide { "qword" } else { "dword" };
        let (op, val) = match self.op {
            Op::Eq(v) => (json!("eq"), v),
            Op::MaskedEq { mask, value } => (json!({ "masked_eq": mask }), value),
        };
        json!({"index": self.index, "type": kind, "op": op, "val": val})
    }
}

/// A daemon's allow-list, built from its own table.
pub struct AllowList {
    arch: TargetArch,
    rules: Vec<Value>,
}

impl AllowList {
    pub fn new(arch: TargetArch) -> AllowList {
        AllowList {
            arch,
            rules: Vec::new(),
        }
    }

    pub fn arch(&self) -> TargetArch {
        self.arch
    }

    /// Allowed with any arguments.
    pub fn names(&mut self, names: &[&str]) -> &mut Self {
        self.rules.extend(names.iter().map(|n| json!({ "syscall": n })));
        self
    }

    /// Allowed with any arguments, on x86_64 only (the older calls glibc
    /// still uses there, which aarch64 does not have).
    pub fn x86_64_names(&mut self, names: &[&str]) -> &mut Self {
        if self.arch == TargetArch::x86_64 {
            self.names(names);
        }
        self
    }

    /// Allowed when every condition holds. Several calls for one name are
    /// alternatives: any one that matches allows the call.
    pub fn when(&mut self, name: &str, conds: &[Cond]) -> &mut Self {
        let args: Vec<Value> = conds.iter().map(Cond::json).collect();
        self.rules.push(json!({"syscall": name, "args": args}));
        self
    }

    /// `ioctl` with one of these requests only.
    pub fn ioctls(&mut self, requests: &[u64]) -> &mut Self {
        for request in requests {
            self.when("ioctl", &[eq(1, *request)]);
        }
        self
    }

    /// `prctl` with one of these options only.
    pub fn prctls(&mut self, options: &[u64]) -> &mut Self {
        for option in options {
            self.when("prctl", &[eq(0, *option)]);
        }
        self
    }
}

/// What every OxiBot daemon's event loop needs, whatever its job: memory,
/// threads (clone3 gets ENOSYS in stage one; `clone` is filtered by
/// [`AllowList::runtime`]), time, epoll, randomness. Measured for the
/// channel daemons with `scripts/measure-syscalls.sh` (tokio, glibc, the
/// logger); a daemon adds what its own job needs (files, sockets).
pub const RUNTIME: &[&str] = &[
    // memory
    "brk",
    "mmap",
    "munmap",
    "mprotect",
    "mremap",
    "madvise",
    // threads
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
    // event loop
    "epoll_create1",
    "epoll_ctl",
    "epoll_pwait",
    "epoll_pwait2",
    "eventfd2",
    "ppoll",
    // misc
    "getrandom",
    "uname",
];

/// Files a daemon may open (Landlock decides which) and read.
pub const FILES: &[&str] = &[
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
];

/// Talking over sockets it holds or connects (`socket` itself is filtered
/// per daemon, see [`AllowList::ip_sockets`]): never bind or listen.
pub const TALK: &[&str] = &[
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
];

/// [`RUNTIME`]'s calls that only x86_64 has (glibc and mio still use them).
pub const RUNTIME_X86_64: &[&str] = &["epoll_wait", "poll"];

/// ioctl requests a runtime makes: non-blocking and close-on-exec toggles,
/// and the terminal queries a logger makes. Never TIOCSTI (inject into a
/// terminal).
pub const RUNTIME_IOCTLS: &[u64] = &[
    libc::FIONBIO,
    libc::FIOCLEX,
    libc::FIONCLEX,
    libc::FIONREAD,
    libc::TCGETS,
    libc::TIOCGWINSZ,
];

/// prctl options: thread names (tokio names its workers), glibc's VMA names.
pub const RUNTIME_PRCTLS: &[u64] = &[
    libc::PR_SET_NAME as u64,
    libc::PR_GET_NAME as u64,
    0x5356_4d41, /* PR_SET_VMA */
];

impl AllowList {
    /// `socket` for IPv4 and IPv6 only.
    pub fn ip_sockets(&mut self) -> &mut Self {
        for family in [libc::AF_INET, libc::AF_INET6] {
            self.when("socket", &[eq(0, family as u64)]);
        }
        self
    }

    /// [`RUNTIME`] for a daemon that never forks: `clone` only for a
    /// thread (CLONE_THREAD set, no CLONE_NEW* flag), signals only to its
    /// own threads (`tgkill` of `own_pid`: a panic's abort), its ioctls and
    /// prctls.
    pub fn runtime(&mut self, own_pid: u32) -> &mut Self {
        let thread = libc::CLONE_THREAD as u64;
        self.names(RUNTIME)
            .x86_64_names(RUNTIME_X86_64)
            .when(
                "clone",
                &[
                    masked_eq64(0, crate::syscalls::CLONE_NEW_MASK, 0),
                    masked_eq64(0, thread, thread),
                ],
            )
            .when("tgkill", &[eq(0, u64::from(own_pid))])
            .ioctls(RUNTIME_IOCTLS)
            .prctls(RUNTIME_PRCTLS)
    }
}

/// What the allow-list does with a call none of its rules matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Otherwise {
    /// EPERM: the production setting.
    Refuse,
    /// Allowed and logged by the kernel: for measuring a new path only.
    Log,
}

/// The two stages, in the order they are installed.
pub struct Filters {
    pub enosys: BpfProgram,
    pub allow: BpfProgram,
}

/// Why a daemon's sandbox could not be put up: it does not start without.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot set no_new_privs: {0}")]
    NoNewPrivs(std::io::Error),
    #[error("the seccomp filter does not compile: {0}")]
    Compile(seccompiler::Error),
    #[error("the seccomp filter does not compile: its {0} is missing")]
    Missing(&'static str),
    #[error("seccomp filters are not built for this architecture ({0})")]
    Arch(String),
    #[error("seccomp: installing {stage}: {source}")]
    Install {
        stage: &'static str,
        source: seccompiler::Error,
    },
}

/// Compiles stage one (`enosys` → ENOSYS) and stage two (`allow`).
pub fn compile(enosys: &[&str], allow: &AllowList, otherwise: Otherwise) -> Result<Filters, SandboxError> {
    let mismatch = match otherwise {
        Otherwise::Refuse => json!({"errno": libc::EPERM}),
        Otherwise::Log => json!("log"),
    };
    let first: Vec<Value> = enosys.iter().map(|n| json!({ "syscall": n })).collect();
    let spec = json!({
        "enosys": {
            "mismatch_action": "allow",
            "match_action": {"errno": libc::ENOSYS},
            "filter": first
        },
        "allow": {
            "mismatch_action": mismatch,
            "match_action": "allow",
            "filter": allow.rules
        }
    });
    let mut compiled: HashMap<String, BpfProgram> =
        seccompiler::compile_from_json(spec.to_string().as_bytes(), allow.arch).map_err(SandboxError::Compile)?;
    let enosys = compiled.remove("enosys").ok_or(SandboxError::Missing("ENOSYS stage"))?;
    let allow = compiled.remove("allow").ok_or(SandboxError::Missing("allow-list"))?;
    Ok(Filters { enosys, allow })
}

/// The architecture this process runs on, as seccompiler names it.
pub fn current_arch() -> Result<TargetArch, SandboxError> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(|e| SandboxError::Arch(e.to_string()))
}

/// Which threads a filter binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// The calling thread (and what it starts later): before any other
    /// thread exists.
    This,
    /// Every thread of the process (tokio's workers already run).
    All,
}

/// Installs stage one, then stage two. Needs `no_new_privs` (or
/// CAP_SYS_ADMIN), which every daemon sets before.
pub fn install(filters: &Filters, threads: Threads) -> Result<(), SandboxError> {
    let apply = |stage: &'static str, p: &BpfProgram| {
        match threads {
            Threads::This => seccompiler::apply_filter(p),
            Threads::All => seccompiler::apply_filter_all_threads(p),
        }
        .map_err(|source| SandboxError::Install { stage, source })
    };
    apply("the ENOSYS stage", &filters.enosys)?;
    apply("the allow-list", &filters.allow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_the_architecture_lacks_fails_to_compile() {
        let mut list = AllowList::new(TargetArch::aarch64);
        list.names(&["read", "open"]);
        assert!(
            compile(&["clone3"], &list, Otherwise::Refuse).is_err(),
            "aarch64 has no open"
        );
        let mut list = AllowList::new(TargetArch::aarch64);
        list.names(&["read"]).x86_64_names(&["open"]);
        assert!(compile(&["clone3"], &list, Otherwise::Refuse).is_ok());
    }

    #[test]
    fn the_runtime_base_holds_nothing_a_daemon_must_never_do() {
        for denied in [
            "execve",
            "execveat",
            "ptrace",
            "mount",
            "unshare",
            "setns",
            "socket",
            "socketpair",
            "connect",
            "bind",
            "listen",
            "accept4",
            "kill",
            "tkill",
            "tgkill",
            "clone",
            "fork",
            "vfork",
            "openat",
            "open",
            "prctl",
            "ioctl",
            "bpf",
            "keyctl",
            "io_uring_setup",
            "seccomp",
            "setuid",
            "process_vm_readv",
            "memfd_create",
        ] {
            assert!(
                !RUNTIME.contains(&denied) && !RUNTIME_X86_64.contains(&denied),
                "{denied}"
            );
        }
        let mut list = AllowList::new(TargetArch::aarch64);
        list.runtime(1);
        assert!(
            compile(&["clone3"], &list, Otherwise::Refuse).is_ok(),
            "the base compiles on aarch64"
        );
    }

    #[test]
    fn conditions_become_seccompiler_arguments() {
        assert_eq!(
            masked_eq64(0, 0xff, 0).json(),
            json!({"index": 0, "type": "qword", "op": {"masked_eq": 0xff}, "val": 0})
        );
        assert_eq!(
            eq(1, 7).json(),
            json!({"index": 1, "type": "dword", "op": "eq", "val": 7})
        );
    }
}
