//! The channel daemon's own sandbox, installed once its credential has
//! arrived and before it parses a byte of platform traffic: no_new_privs,
//! and a seccomp filter that refuses exec, ptrace, mounts, namespaces,
//! kernel-module and keyring calls, and every socket family but Unix, IPv4
//! and IPv6. A channel daemon only ever talks HTTPS/WebSocket/IMAP/SMTP and
//! to the broker; anything else it tries is an attacker's.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

const DENIED: &[i64] = &[
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_userfaultfd,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_setuid,
    libc::SYS_setgid,
    libc::SYS_setreuid,
    libc::SYS_setregid,
    libc::SYS_setresuid,
    libc::SYS_setresgid,
    libc::SYS_setgroups,
    libc::SYS_open_by_handle_at,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_sethostname,
    libc::SYS_setdomainname,
    libc::SYS_acct,
    libc::SYS_quotactl,
];

fn filter() -> Result<BpfProgram, String> {
    let ne = |v: i32| SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, v as u64);
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = DENIED.iter().map(|s| (*s, Vec::new())).collect();
    let other_family = || -> Result<SeccompRule, seccompiler::BackendError> {
        SeccompRule::new(vec![ne(libc::AF_UNIX)?, ne(libc::AF_INET)?, ne(libc::AF_INET6)?])
    };
    rules.insert(libc::SYS_socket, vec![other_family().map_err(|e| e.to_string())?]);
    rules.insert(libc::SYS_socketpair, vec![other_family().map_err(|e| e.to_string())?]);
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| e.to_string())?;
    let f = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    BpfProgram::try_from(f).map_err(|e| e.to_string())
}

/// Installs the filter on every thread of the process (TSYNC): the async
/// runtime's workers exist already.
pub fn install() -> Result<(), String> {
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("no_new_privs: {e}"))?;
    let program = filter()?;
    seccompiler::apply_filter_all_threads(&program).map_err(|e| format!("seccomp: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `probe` in a forked child under the filter and returns its exit
    /// code. The child only makes raw syscalls (async-signal-safe).
    fn in_sandboxed_child(probe: fn() -> i32) -> i32 {
        let program = filter().unwrap();
        // SAFETY: the child calls only prctl/seccomp/socket/execve/_exit.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let code =
                    if nix::sys::prctl::set_no_new_privs().is_err() || seccompiler::apply_filter(&program).is_err() {
                        99
                    } else {
                        probe()
                    };
                // SAFETY: _exit is async-signal-safe and ends the child at once.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => match nix::sys::wait::waitpid(child, None).unwrap() {
                nix::sys::wait::WaitStatus::Exited(_, code) => code,
                other => panic!("child: {other:?}"),
            },
        }
    }

    fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    #[test]
    fn exec_is_refused_with_eperm() {
        let code = in_sandboxed_child(|| {
            let path = c"/bin/true";
            let argv = [path.as_ptr(), std::ptr::null()];
            // SAFETY: valid NUL-terminated path and argv.
            unsafe { libc::execv(path.as_ptr(), argv.as_ptr()) };
            errno()
        });
        assert_eq!(code, libc::EPERM);
    }

    #[test]
    fn only_unix_and_ip_sockets_are_allowed() {
        let netlink = in_sandboxed_child(|| {
            // SAFETY: plain syscall.
            let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, 0) };
            if fd >= 0 {
                0
            } else {
                errno()
            }
        });
        assert_eq!(netlink, libc::EPERM);
        let packet = in_sandboxed_child(|| {
            // SAFETY: plain syscall.
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
            if fd >= 0 {
                0
            } else {
                errno()
            }
        });
        assert_eq!(packet, libc::EPERM);
        // The legitimate path: the platform's TCP and the broker's socket.
        for family in [libc::AF_INET, libc::AF_INET6, libc::AF_UNIX] {
            let ok = match family {
                libc::AF_INET => in_sandboxed_child(|| {
                    // SAFETY: plain syscall.
                    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
                    if fd >= 0 {
                        0
                    } else {
                        errno()
                    }
                }),
                libc::AF_INET6 => in_sandboxed_child(|| {
                    // SAFETY: plain syscall.
                    let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_STREAM, 0) };
                    if fd >= 0 {
                        0
                    } else {
                        errno()
                    }
                }),
                _ => in_sandboxed_child(|| {
                    // SAFETY: plain syscall.
                    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) };
                    if fd >= 0 {
                        0
                    } else {
                        errno()
                    }
                }),
            };
            assert_eq!(ok, 0, "family {family} refused");
        }
    }

    #[test]
    fn ptrace_and_mount_are_refused() {
        let code = in_sandboxed_child(|| {
            // SAFETY: plain syscall; PTRACE_TRACEME takes no pointers.
            let r = unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) };
            if r == 0 {
                0
            } else {
                errno()
            }
        });
        assert_eq!(code, libc::EPERM);
        let code = in_sandboxed_child(|| {
            // SAFETY: plain syscall with null pointers, refused before use.
            let r = unsafe { libc::mount(std::ptr::null(), c"/".as_ptr(), std::ptr::null(), 0, std::ptr::null()) };
            if r == 0 {
                0
            } else {
                errno()
            }
        });
        assert_eq!(code, libc::EPERM);
    }
}
