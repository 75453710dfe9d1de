//! The channel daemon's own sandbox, installed once its credential has
//! arrived and before it parses a byte of platform traffic, in this order:
//! no_new_privs; Landlock (`landlock`: a file allow-list of what TLS and DNS
//! need, no TCP listening, no signals or abstract sockets outside itself);
//! a default-deny seccomp allow-list (`seccomp`: no exec, ptrace, mount,
//! namespaces, bind or listen; IPv4/IPv6 sockets only). A channel daemon
//! only ever talks HTTPS/WebSocket/IMAP/SMTP and, over the connection it
//! already holds, to the broker; anything else it tries is an attacker's.

mod landlock;
mod seccomp;

use oxibot_sandbox::seccomp::SandboxError;

/// What the sandbox must leave reachable besides the fixed allow-list.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    /// Files the daemon reads after the sandbox is up (a private CA).
    pub extra_reads: Vec<std::path::PathBuf>,
}

impl Plan {
    /// From the channel's settings: `tlsCaFile` is read when connecting.
    pub fn for_settings(settings_json: &str) -> Plan {
        let tls: oxibot_proto::settings::TlsSettings = serde_json::from_str(settings_json).unwrap_or_default();
        let extra_reads = tls
            .tls_ca_file
            .filter(|p| !p.is_empty())
            .map(|p| vec![std::path::PathBuf::from(p)])
            .unwrap_or_default();
        Plan { extra_reads }
    }
}

/// What was enforced.
#[derive(Debug, Clone)]
pub struct Report {
    /// Landlock's verdict, for the log.
    pub landlock: String,
    /// Landlock confines file access (fully or partially).
    pub files_confined: bool,
}

/// Installs the whole sandbox on every thread of the process: the async
/// runtime's threads (tokio's blocking pool) may exist already.
pub fn install(plan: &Plan) -> Result<Report, SandboxError> {
    nix::sys::prctl::set_no_new_privs().map_err(|e| SandboxError::NoNewPrivs(e.into()))?;
    let report = landlock::restrict(plan);
    seccomp::install()?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    use oxibot_sandbox::probe::{errno, result};

    /// Runs `probe` in a forked child under both seccomp filters and
    /// returns its exit code. The child makes raw syscalls only.
    fn in_sandboxed_child(probe: fn() -> i32) -> i32 {
        let arch = oxibot_sandbox::seccomp::current_arch().unwrap();
        oxibot_sandbox::probe::in_child(
            || match seccomp::programs(arch, std::process::id()) {
                // Its own pid is the one it may signal.
                Ok(filters) => {
                    nix::sys::prctl::set_no_new_privs().is_ok()
                        && oxibot_sandbox::seccomp::install(&filters, oxibot_sandbox::seccomp::Threads::This).is_ok()
                }
                Err(_) => false,
            },
            probe,
        )
    }

    #[test]
    fn exec_ptrace_and_mount_are_refused() {
        let exec = in_sandboxed_child(|| {
            let path = c"/bin/true";
            let argv = [path.as_ptr(), std::ptr::null()];
            // SAFETY: valid NUL-terminated path and argv.
            unsafe { libc::execv(path.as_ptr(), argv.as_ptr()) };
            errno()
        });
        assert_eq!(exec, libc::EPERM);
        // SAFETY (both): plain syscalls with no pointers the kernel writes to.
        let ptrace = in_sandboxed_child(|| result(unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) }));
        assert_eq!(ptrace, libc::EPERM);
        let mount = in_sandboxed_child(|| {
            result(unsafe {
                libc::mount(std::ptr::null(), c"/".as_ptr(), std::ptr::null(), 0, std::ptr::null()) as libc::c_long
            })
        });
        assert_eq!(mount, libc::EPERM);
    }

    #[test]
    fn only_ip_sockets_and_no_listening() {
        // SAFETY (all): plain syscalls.
        let unix = in_sandboxed_child(|| result(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) } as _));
        assert_eq!(unix, libc::EPERM, "the broker's own sockets and nscd are out of reach");
        let netlink = in_sandboxed_child(|| result(unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, 0) } as _));
        assert_eq!(netlink, libc::EPERM);
        let packet = in_sandboxed_child(|| result(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) } as _));
        assert_eq!(packet, libc::EPERM);
        let pair = in_sandboxed_child(|| {
            let mut fds = [0; 2];
            result(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) } as _)
        });
        assert_eq!(pair, libc::EPERM);
        let bind = in_sandboxed_child(|| {
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            if fd < 0 {
                return 100;
            }
            let addr = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be(),
                },
                sin_zero: [0; 8],
            };
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            result(unsafe { libc::bind(fd, &addr as *const _ as *const libc::sockaddr, len) } as _)
        });
        assert_eq!(bind, libc::EPERM);
        // The legitimate path: the platforms' TCP, over IPv4 and IPv6.
        let v4 = in_sandboxed_child(|| result(unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) } as _));
        let v6 = in_sandboxed_child(|| result(unsafe { libc::socket(libc::AF_INET6, libc::SOCK_STREAM, 0) } as _));
        assert_eq!((v4, v6), (0, 0));
    }

    #[test]
    fn threads_yes_namespaces_no() {
        // SAFETY (all): raw clone/clone3 with null stacks are refused by the
        // filter before the kernel looks at them; a thread is made by std.
        let userns = in_sandboxed_child(|| {
            result(unsafe { libc::syscall(libc::SYS_clone, libc::CLONE_NEWUSER | libc::SIGCHLD, 0, 0, 0, 0) })
        });
        assert_eq!(userns, libc::EPERM);
        let netns = in_sandboxed_child(|| {
            result(unsafe { libc::syscall(libc::SYS_clone, libc::CLONE_NEWNET | libc::SIGCHLD, 0, 0, 0, 0) })
        });
        assert_eq!(netns, libc::EPERM);
        let clone3 = in_sandboxed_child(|| result(unsafe { libc::syscall(libc::SYS_clone3, 0, 0) }));
        assert_eq!(
            clone3,
            libc::ENOSYS,
            "clone3 answers ENOSYS so that glibc falls back to clone"
        );
        let thread = in_sandboxed_child(|| std::thread::spawn(|| 7).join().unwrap_or(1));
        assert_eq!(thread, 7, "threads still start (glibc falls back to clone)");
        let fork = in_sandboxed_child(|| result(unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0) }));
        assert_eq!(fork, libc::EPERM, "a channel daemon never forks");
    }

    #[test]
    fn no_terminal_injection_and_no_signals_to_others() {
        // SAFETY (all): plain syscalls; TIOCSTI is refused before the kernel
        // reads its argument.
        let tiocsti = in_sandboxed_child(|| {
            let c: libc::c_char = b'x' as libc::c_char;
            result(unsafe { libc::ioctl(0, libc::TIOCSTI, &c) } as _)
        });
        assert_eq!(tiocsti, libc::EPERM);
        let kill = in_sandboxed_child(|| result(unsafe { libc::kill(libc::getppid(), 0) } as _));
        assert_eq!(kill, libc::EPERM);
        // tgkill reaches its own threads only, not the parent's.
        let parent = in_sandboxed_child(|| {
            let p = unsafe { libc::getppid() };
            result(unsafe { libc::syscall(libc::SYS_tgkill, p, p, 0) })
        });
        assert_eq!(parent, libc::EPERM);
        let own = in_sandboxed_child(|| {
            let p = std::process::id() as libc::c_long;
            result(unsafe { libc::syscall(libc::SYS_tgkill, p, p, 0) })
        });
        assert_eq!(own, 0);
        let tcgets = in_sandboxed_child(|| {
            let mut t = std::mem::MaybeUninit::<libc::termios>::uninit();
            // ENOTTY on a non-terminal is the kernel's answer, not the filter's.
            match result(unsafe { libc::ioctl(0, libc::TCGETS, t.as_mut_ptr()) } as _) {
                libc::EPERM => libc::EPERM,
                _ => 0,
            }
        });
        assert_eq!(tcgets, 0, "terminal queries are allowed");
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x32_syscalls_are_refused() {
        // getpid through the x32 ABI: same architecture tag, another number.
        // SAFETY: getpid takes no arguments.
        let x32 = in_sandboxed_child(|| result(unsafe { libc::syscall(0x4000_0000 | libc::SYS_getpid) }));
        assert_eq!(x32, libc::EPERM);
    }
}
