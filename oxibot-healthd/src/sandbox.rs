//! The health daemon's sandbox. It needs the two descriptors it inherited,
//! its event loop and memory, and nothing else: Landlock grants not one
//! path and no TCP bind or connect, scopes signals and abstract sockets to
//! itself; the seccomp allow-list has `accept4` but no `socket`, `connect`,
//! `bind`, `open` of anything Landlock would allow, exec, ptrace or mount.
//! The list is the channel daemon's measured one (same runtime, same
//! logging) minus what talking out needs, plus accepting.

use oxibot_sandbox::landlock::{
    self, Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetError, RulesetStatus,
    Scope, ABI_TARGET,
};
use oxibot_sandbox::seccomp::{self, AllowList, Filters, Otherwise, SandboxError, TargetArch, Threads};

/// Allowed with any arguments, beside the runtime's own calls
/// (`oxibot_sandbox::seccomp::RUNTIME`).
const ALLOWED: &[&str] = &[
    // descriptors it holds (Landlock refuses every path)
    "openat",
    "read",
    "readv",
    "write",
    "writev",
    "close",
    "fstat",
    "newfstatat",
    "statx",
    "fcntl",
    // the port it was given: accept and talk, never make a socket
    "accept4",
    "sendto",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "shutdown",
    "setsockopt",
    "getsockopt",
    "getsockname",
    "getpeername",
];

fn allow_list(arch: TargetArch, own_pid: u32) -> AllowList {
    let mut list = AllowList::new(arch);
    // Threads only, signals to itself only: it never forks.
    list.runtime(own_pid).names(ALLOWED);
    list
}

/// Both stages for `arch`: clone3 → ENOSYS, then the allow-list.
pub fn programs(arch: TargetArch, own_pid: u32) -> Result<Filters, SandboxError> {
    seccomp::compile(&["clone3"], &allow_list(arch, own_pid), Otherwise::Refuse)
}

/// no_new_privs, Landlock, seccomp, in that order, on this (only) thread.
/// Returns Landlock's outcome for the log.
pub fn install() -> Result<String, SandboxError> {
    nix::sys::prctl::set_no_new_privs().map_err(|e| SandboxError::NoNewPrivs(e.into()))?;
    let (landlock, _) = landlock::outcome(restrict());
    let filters = programs(seccomp::current_arch()?, std::process::id())?;
    seccomp::install(&filters, Threads::This)?;
    Ok(landlock)
}

/// Every filesystem access and TCP bind/connect handled, none granted.
fn restrict() -> Result<RulesetStatus, RulesetError> {
    Ok(Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(ABI_TARGET))?
        .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)?
        .scope(Scope::AbstractUnixSocket | Scope::Signal)?
        .create()?
        .restrict_self()?
        .ruleset)
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
            "socket",
            "connect",
            "bind",
            "listen",
            "execve",
            "ptrace",
            "kill",
            "socketpair",
        ] {
            assert!(
                !ALLOWED.contains(&denied) && !RUNTIME.contains(&denied) && !RUNTIME_X86_64.contains(&denied),
                "{denied}"
            );
        }
    }

    #[test]
    fn no_files_no_sockets_no_exec() {
        // SAFETY (all): plain syscalls on constant, NUL-terminated paths.
        let secrets = sandboxed(|| result(unsafe { libc::open(c"/etc/passwd".as_ptr(), libc::O_RDONLY) } as _));
        assert_eq!(secrets, libc::EACCES, "Landlock grants not one path");
        let tcp = sandboxed(|| result(unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) } as _));
        assert_eq!(tcp, libc::EPERM, "it never makes a socket");
        let unix = sandboxed(|| result(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) } as _));
        assert_eq!(unix, libc::EPERM, "the broker's sockets are out of reach");
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
    fn the_legitimate_path_accepts_and_answers() {
        // A listening socket made before the sandbox, as the broker hands it.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(address).unwrap();
            s.write_all(b"ping").unwrap();
            let mut answer = [0u8; 4];
            s.read_exact(&mut answer).unwrap();
            answer
        });
        // The forked child keeps the listener (same descriptor number).
        LISTENER.store(
            std::os::fd::AsRawFd::as_raw_fd(&listener),
            std::sync::atomic::Ordering::SeqCst,
        );
        let served = sandboxed(|| {
            let fd = LISTENER.load(std::sync::atomic::Ordering::SeqCst);
            // SAFETY: accept, read and write on descriptors this child owns.
            let conn = unsafe { libc::accept4(fd, std::ptr::null_mut(), std::ptr::null_mut(), 0) };
            if conn < 0 {
                return errno();
            }
            let mut buf = [0u8; 4];
            if unsafe { libc::read(conn, buf.as_mut_ptr().cast(), 4) } != 4 {
                return 100;
            }
            result(unsafe { libc::write(conn, b"pong".as_ptr().cast(), 4) } as _)
        });
        assert_eq!(served, 0);
        assert_eq!(&client.join().unwrap(), b"pong");
    }

    static LISTENER: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);
}
