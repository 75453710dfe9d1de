//! The egress daemon's sandbox. It reads what the jail's commands send and
//! connects out for them, so it keeps what that takes and nothing more:
//! Landlock grants reading only what name lookups read (NSS libraries and
//! a handful of /etc files: not the secrets file, not the state database,
//! not the workspace, not /proc), no TCP listening, signals and abstract
//! sockets scoped to itself; the seccomp allow-list is the channel
//! daemon's measured one (same runtime, same resolver, same outgoing
//! sockets) plus accepting on the door, receiving descriptors, and the
//! routing table's netlink socket (the guard asks the kernel where an
//! address leads). No exec, no ptrace, no mount, no bind or listen.

use std::path::Path;

use oxibot_sandbox::landlock::{
    self, Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetError, RulesetStatus,
    Scope, ABI_TARGET,
};
use oxibot_sandbox::seccomp::{self, eq, AllowList, Filters, Otherwise, SandboxError, TargetArch, Threads};

/// Allowed with any arguments, beside the runtime's own calls
/// (`oxibot_sandbox::seccomp::RUNTIME`): files (Landlock decides which),
/// talking over sockets (never bind or listen), and accepting toold on the
/// door (receiving its descriptors is `recvmsg`).
const ALLOWED: [&[&str]; 3] = [seccomp::FILES, seccomp::TALK, &["accept4"]];

fn allow_list(arch: TargetArch, own_pid: u32) -> AllowList {
    let mut list = AllowList::new(arch);
    // Threads only, signals to itself only: it never forks.
    list.runtime(own_pid)
        .names(ALLOWED[0])
        .names(ALLOWED[1])
        .names(ALLOWED[2])
        .ip_sockets();
    // The runtime's signal driver makes a socketpair when it starts, after
    // the sandbox (its threads must inherit Landlock, which binds only the
    // thread that asks). A pair is anonymous: it reaches nothing.
    list.when("socketpair", &[eq(0, libc::AF_UNIX as u64)]);
    // The routing table, and nothing else of netlink.
    list.when(
        "socket",
        &[eq(0, libc::AF_NETLINK as u64), eq(2, libc::NETLINK_ROUTE as u64)],
    );
    list
}

/// Both stages for `arch`: clone3 → ENOSYS, then the allow-list.
pub fn programs(arch: TargetArch, own_pid: u32) -> Result<Filters, SandboxError> {
    seccomp::compile(&["clone3"], &allow_list(arch, own_pid), Otherwise::Refuse)
}

/// no_new_privs, Landlock, seccomp, in that order, on this (only) thread:
/// the threads started after inherit all three. Returns Landlock's outcome
/// for the log.
pub fn install() -> Result<String, SandboxError> {
    nix::sys::prctl::set_no_new_privs().map_err(|e| SandboxError::NoNewPrivs(e.into()))?;
    let (landlock, _) = landlock::outcome(restrict());
    let filters = programs(seccomp::current_arch()?, std::process::id())?;
    seccomp::install(&filters, Threads::This)?;
    Ok(landlock)
}

fn restrict() -> Result<RulesetStatus, RulesetError> {
    let ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(ABI_TARGET))?
        // Handled with no rule: no TCP listening. Connecting is what the
        // daemon is for (the allowed ports are the configuration's).
        .handle_access(AccessNet::BindTcp)?
        .scope(Scope::AbstractUnixSocket | Scope::Signal)?
        .create()?;
    let reads = landlock::NAME_LOOKUP_READS.iter().map(Path::new);
    Ok(landlock::allow_reading(ruleset, reads)?.restrict_self()?.ruleset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxibot_sandbox::probe::{errno, in_child, result};
    use oxibot_sandbox::seccomp::{RUNTIME, RUNTIME_X86_64};

    fn sandboxed(probe: fn() -> i32) -> i32 {
        in_child(|| install().is_ok(), probe)
    }

    #[test]
    fn the_list_compiles_for_both_architectures() {
        for arch in [TargetArch::x86_64, TargetArch::aarch64] {
            let compiled = programs(arch, 1);
            assert!(compiled.is_ok(), "{arch:?}: {:?}", compiled.err());
        }
        for denied in [
            "bind", "listen", "execve", "ptrace", "kill", "socket", "mount", "unshare",
        ] {
            assert!(
                !ALLOWED.concat().contains(&denied) && !RUNTIME.contains(&denied) && !RUNTIME_X86_64.contains(&denied),
                "{denied}"
            );
        }
    }

    #[test]
    fn no_secrets_no_unix_sockets_no_listening_no_exec() {
        // SAFETY (all): plain syscalls on constant, NUL-terminated paths.
        let passwd = sandboxed(|| result(unsafe { libc::open(c"/etc/passwd".as_ptr(), libc::O_RDONLY) } as _));
        assert_eq!(passwd, libc::EACCES, "Landlock grants only the resolver's files");
        let proc_ = sandboxed(|| result(unsafe { libc::open(c"/proc/1/environ".as_ptr(), libc::O_RDONLY) } as _));
        assert_eq!(proc_, libc::EACCES);
        let unix = sandboxed(|| result(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) } as _));
        assert_eq!(unix, libc::EPERM, "the broker's sockets are out of reach");
        let raw = sandboxed(|| result(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) } as _));
        assert_eq!(raw, libc::EPERM);
        let netlink_other =
            sandboxed(|| result(unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_AUDIT) } as _));
        assert_eq!(netlink_other, libc::EPERM);
        let listen = sandboxed(|| {
            // SAFETY: a socket this child owns, a zeroed address on the stack.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            if fd < 0 {
                return 100;
            }
            result(unsafe { libc::listen(fd, 1) } as _)
        });
        assert_eq!(listen, libc::EPERM);
        let exec = sandboxed(|| {
            let path = c"/bin/true";
            let argv = [path.as_ptr(), std::ptr::null()];
            // SAFETY: valid path and argv.
            unsafe { libc::execv(path.as_ptr(), argv.as_ptr()) };
            errno()
        });
        assert_eq!(exec, libc::EPERM);
        let kill = sandboxed(|| result(unsafe { libc::kill(libc::getppid(), 0) } as _));
        assert_eq!(kill, libc::EPERM);
    }

    #[test]
    fn the_legitimate_path_resolves_and_connects() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        PORT.store(
            listener.local_addr().unwrap().port(),
            std::sync::atomic::Ordering::SeqCst,
        );
        let served = sandboxed(|| {
            use std::net::ToSocketAddrs;
            let port = PORT.load(std::sync::atomic::Ordering::SeqCst);
            // The resolver's files, then a connection out.
            let Ok(mut addresses) = ("localhost", port).to_socket_addrs() else {
                return 101;
            };
            let Some(address) = addresses.find(|a| a.is_ipv4()) else {
                return 102;
            };
            match std::net::TcpStream::connect(address) {
                Ok(_) => 0,
                Err(e) => e.raw_os_error().unwrap_or(103),
            }
        });
        assert_eq!(served, 0);
        let route = sandboxed(
            || match oxibot_egress::route::reach("127.0.0.1".parse().unwrap(), Some(80)) {
                Ok(oxibot_egress::route::Reach::ThisHost) => 0,
                Ok(_) => 104,
                Err(e) => e.raw_os_error().unwrap_or(105),
            },
        );
        assert_eq!(route, 0, "the guard may still ask the routing table");
    }

    static PORT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
}
