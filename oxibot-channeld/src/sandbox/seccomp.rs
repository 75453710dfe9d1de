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
//! The list is by name and compiled for the running architecture
//! (`oxibot_sandbox::seccomp`), so the same list serves x86_64 and aarch64
//! (a unit test compiles it for both); the few x86_64-only names are kept
//! apart.

use oxibot_sandbox::seccomp::{self, AllowList, Filters, Otherwise, SandboxError, TargetArch, Threads};

/// Allowed with any arguments, beside the runtime's own calls
/// (`oxibot_sandbox::seccomp::RUNTIME`): files (Landlock decides which),
/// and talking over the sockets it connects (never bind or listen).
const ALLOWED: [&[&str]; 2] = [seccomp::FILES, seccomp::TALK];

/// The allow-list for `arch`. `own_pid` is the daemon's process id: the
/// only process it may signal (its own threads: a panic's abort), so that
/// even on a kernel without Landlock's signal scoping a daemon sharing the
/// broker's uid cannot stop or kill it.
fn allow_list(arch: TargetArch, own_pid: u32) -> AllowList {
    let mut list = AllowList::new(arch);
    // Threads only: a channel daemon never forks (it cannot exec), so a
    // fork is an attacker's.
    list.runtime(own_pid).names(ALLOWED[0]).names(ALLOWED[1]).ip_sockets();
    list
}

/// Both stages for `arch`: clone3 → ENOSYS (its flags live in memory a
/// filter cannot read, so glibc must fall back to clone), then the
/// allow-list.
pub fn programs(arch: TargetArch, own_pid: u32) -> Result<Filters, SandboxError> {
    seccomp::compile(&["clone3"], &allow_list(arch, own_pid), Otherwise::Refuse)
}

/// Installs both stages on every thread of the process.
pub fn install() -> Result<(), SandboxError> {
    let filters = programs(seccomp::current_arch()?, std::process::id())?;
    seccomp::install(&filters, Threads::All)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxibot_sandbox::seccomp::{RUNTIME, RUNTIME_X86_64};

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
                !ALLOWED.concat().contains(&denied) && !RUNTIME.contains(&denied) && !RUNTIME_X86_64.contains(&denied),
                "{denied} must not be allowed"
            );
        }
    }
}
