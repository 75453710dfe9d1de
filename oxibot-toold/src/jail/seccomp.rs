//! The default-deny seccomp allow-list that toold and every command it runs
//! inherit. The list comes from `strace -f` of the workload in DESIGN.md
//! plus what toold itself needs (tokio's epoll, eventfd, futex, pidfd).
//! Anything else fails with EPERM; `clone3` fails with ENOSYS so that glibc
//! falls back to `clone`, whose flags we can inspect.
//!
//! A legitimate command that fails with EPERM is missing a syscall here.
//! Debug it with `oxibot-toold --seccomp-log` (`tools.seccompLog` in the
//! config: logs instead of failing, see `dmesg`), never by turning this
//! into a deny-list.

use std::collections::BTreeMap;

use oxibot_proto::syscalls::CLONE_NEW_MASK;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

use super::{step, JailError};

/// Plain syscalls allowed with any arguments.
const ALLOWED: &[i64] = &[
    // files and directories
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_open,
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_close,
    libc::SYS_close_range,
    libc::SYS_creat,
    libc::SYS_lseek,
    libc::SYS_stat,
    libc::SYS_fstat,
    libc::SYS_lstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_statfs,
    libc::SYS_fstatfs,
    libc::SYS_access,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_getdents64,
    libc::SYS_getcwd,
    libc::SYS_chdir,
    libc::SYS_fchdir,
    libc::SYS_mkdir,
    libc::SYS_mkdirat,
    libc::SYS_rmdir,
    libc::SYS_unlink,
    libc::SYS_unlinkat,
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_link,
    libc::SYS_linkat,
    libc::SYS_symlink,
    libc::SYS_symlinkat,
    libc::SYS_readlink,
    libc::SYS_readlinkat,
    libc::SYS_chmod,
    libc::SYS_fchmod,
    libc::SYS_fchmodat,
    libc::SYS_chown,
    libc::SYS_fchown,
    libc::SYS_fchownat,
    libc::SYS_lchown,
    libc::SYS_umask,
    libc::SYS_utimensat,
    libc::SYS_utime,
    libc::SYS_utimes,
    libc::SYS_futimesat,
    libc::SYS_truncate,
    libc::SYS_ftruncate,
    libc::SYS_fallocate,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_sync_file_range,
    libc::SYS_flock,
    libc::SYS_fadvise64,
    libc::SYS_copy_file_range,
    libc::SYS_sendfile,
    libc::SYS_splice,
    libc::SYS_tee,
    libc::SYS_getxattr,
    libc::SYS_lgetxattr,
    libc::SYS_fgetxattr,
    libc::SYS_listxattr,
    libc::SYS_llistxattr,
    libc::SYS_flistxattr,
    libc::SYS_setxattr,
    libc::SYS_lsetxattr,
    libc::SYS_fsetxattr,
    libc::SYS_removexattr,
    libc::SYS_lremovexattr,
    libc::SYS_fremovexattr,
    libc::SYS_dup,
    libc::SYS_dup2,
    libc::SYS_dup3,
    libc::SYS_fcntl,
    libc::SYS_pipe,
    libc::SYS_pipe2,
    libc::SYS_inotify_init1,
    libc::SYS_inotify_add_watch,
    libc::SYS_inotify_rm_watch,
    libc::SYS_memfd_create,
    // memory
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_msync,
    libc::SYS_mincore,
    libc::SYS_get_mempolicy,
    libc::SYS_set_mempolicy,
    // processes (clone and prctl are filtered below)
    libc::SYS_execve,
    libc::SYS_vfork,
    libc::SYS_fork,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_wait4,
    libc::SYS_waitid,
    libc::SYS_kill,
    libc::SYS_tgkill,
    libc::SYS_tkill,
    libc::SYS_pidfd_open,
    libc::SYS_pidfd_send_signal,
    libc::SYS_getpid,
    libc::SYS_getppid,
    libc::SYS_gettid,
    libc::SYS_getpgrp,
    libc::SYS_getpgid,
    libc::SYS_setpgid,
    libc::SYS_getsid,
    libc::SYS_setsid,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_getresuid,
    libc::SYS_getresgid,
    libc::SYS_getgroups,
    libc::SYS_capget,
    libc::SYS_getrlimit,
    libc::SYS_setrlimit,
    libc::SYS_getrusage,
    libc::SYS_times,
    libc::SYS_getpriority,
    libc::SYS_sched_getaffinity,
    libc::SYS_sched_yield,
    libc::SYS_sched_getparam,
    libc::SYS_sched_getscheduler,
    libc::SYS_set_tid_address,
    libc::SYS_set_robust_list,
    libc::SYS_get_robust_list,
    libc::SYS_rseq,
    libc::SYS_arch_prctl,
    libc::SYS_futex,
    libc::SYS_futex_waitv,
    libc::SYS_uname,
    libc::SYS_sysinfo,
    libc::SYS_getrandom,
    libc::SYS_getcpu,
    libc::SYS_personality,
    // signals and time
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigsuspend,
    libc::SYS_rt_sigtimedwait,
    libc::SYS_rt_sigpending,
    libc::SYS_sigaltstack,
    libc::SYS_restart_syscall,
    libc::SYS_pause,
    libc::SYS_alarm,
    libc::SYS_getitimer,
    libc::SYS_setitimer,
    libc::SYS_timer_create,
    libc::SYS_timer_settime,
    libc::SYS_timer_gettime,
    libc::SYS_timer_delete,
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_gettimeofday,
    libc::SYS_time,
    // event loops and Unix sockets (socket itself is filtered below)
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_eventfd2,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_select,
    libc::SYS_pselect6,
    libc::SYS_connect,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_shutdown,
    libc::SYS_getsockopt,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    // Passed here only so that the clone3 filter's ENOSYS decides (see there).
    libc::SYS_clone3,
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

fn eq(arg: u8, len: SeccompCmpArgLen, value: u64) -> Result<SeccompRule, seccompiler::BackendError> {
    SeccompRule::new(vec![SeccompCondition::new(arg, len, SeccompCmpOp::Eq, value)?])
}

fn allow_list() -> Result<BTreeMap<i64, Vec<SeccompRule>>, seccompiler::BackendError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED.iter().map(|s| (*s, Vec::new())).collect();
    rules.insert(
        libc::SYS_clone,
        vec![SeccompRule::new(vec![SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(CLONE_NEW_MASK),
            0,
        )?])?],
    );
    // Sockets: AF_UNIX only (nscd-style lookups); the jail has no network anyway.
    rules.insert(
        libc::SYS_socket,
        vec![eq(0, SeccompCmpArgLen::Dword, libc::AF_UNIX as u64)?],
    );
    rules.insert(
        libc::SYS_socketpair,
        vec![eq(0, SeccompCmpArgLen::Dword, libc::AF_UNIX as u64)?],
    );
    rules.insert(
        libc::SYS_ioctl,
        IOCTLS
            .iter()
            .map(|r| eq(1, SeccompCmpArgLen::Dword, *r))
            .collect::<Result<_, _>>()?,
    );
    // Limits and priority: the calling process only. In unprivileged mode
    // the tool user is the broker's own uid, so "another process" or "every
    // process of this user" would reach beyond the jail.
    rules.insert(libc::SYS_prlimit64, vec![eq(0, SeccompCmpArgLen::Dword, 0)?]);
    rules.insert(
        libc::SYS_setpriority,
        vec![SeccompRule::new(vec![
            SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, libc::PRIO_PROCESS as u64)?,
            SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, 0)?,
        ])?],
    );
    rules.insert(
        libc::SYS_prctl,
        PRCTLS
            .iter()
            .map(|o| eq(0, SeccompCmpArgLen::Dword, *o))
            .collect::<Result<_, _>>()?,
    );
    Ok(rules)
}

fn arch() -> Result<TargetArch, JailError> {
    step(
        "pick the seccomp architecture",
        TargetArch::try_from(std::env::consts::ARCH),
    )
}

/// The main filter: allow-listed syscalls pass, the rest get EPERM (or,
/// with `log`, pass and are logged by the kernel: debugging only).
pub fn allow_list_program(log: bool) -> Result<BpfProgram, JailError> {
    let rules = step("build the seccomp allow-list", allow_list())?;
    let mismatch = if log {
        SeccompAction::Log
    } else {
        SeccompAction::Errno(libc::EPERM as u32)
    };
    let filter = step(
        "build the seccomp filter",
        SeccompFilter::new(rules, mismatch, SeccompAction::Allow, arch()?),
    )?;
    step("compile the seccomp filter", BpfProgram::try_from(filter))
}

/// The clone3 filter: ENOSYS (its flags live in memory that a filter cannot
/// read, so glibc must fall back to clone). It is installed first: the
/// allow-list, installed after it, blocks seccomp() itself, and passes
/// clone3 so that this filter's answer is the one the kernel returns.
fn clone3_program() -> Result<BpfProgram, JailError> {
    let rules = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
    let filter = step(
        "build the clone3 filter",
        SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            arch()?,
        ),
    )?;
    step("compile the clone3 filter", BpfProgram::try_from(filter))
}

pub fn install(log: bool) -> Result<(), JailError> {
    let main = allow_list_program(log)?;
    let clone3 = clone3_program()?;
    step("install the clone3 filter", seccompiler::apply_filter(&clone3))?;
    step("install the seccomp allow-list", seccompiler::apply_filter(&main))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_compile_and_deny_what_design_md_lists() {
        let rules = allow_list().unwrap();
        for denied in [
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
            libc::SYS_io_uring_setup,
            libc::SYS_userfaultfd,
            libc::SYS_kexec_load,
            libc::SYS_init_module,
            libc::SYS_finit_module,
            libc::SYS_delete_module,
            libc::SYS_setuid,
            libc::SYS_setresuid,
            libc::SYS_sethostname,
            libc::SYS_settimeofday,
            libc::SYS_clock_settime,
            libc::SYS_open_by_handle_at,
            libc::SYS_seccomp,
        ] {
            assert!(!rules.contains_key(&denied), "syscall {denied} must not be allowed");
        }
        assert!(allow_list_program(false).is_ok());
        assert!(clone3_program().is_ok());
    }
}
