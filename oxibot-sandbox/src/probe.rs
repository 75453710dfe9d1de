//! For the sandbox tests of every daemon: run a probe in a forked child
//! after installing a sandbox there, and learn what the kernel answered.
//! A sandbox property is proven by a probe that tries to break it and gets
//! the errno it must (EPERM, EACCES, ENOSYS), next to one that shows the
//! legitimate path still works.

/// Forks; in the child runs `install` (false: exit 99), then `probe`, and
/// exits with the probe's value (an errno, or 0 for success). Returns that
/// value. The child makes raw syscalls only after `install`.
pub fn in_child(install: impl FnOnce() -> bool, probe: fn() -> i32) -> i32 {
    // SAFETY: the child installs its sandbox (glibc's fork leaves malloc
    // usable in the child), makes syscalls and exits without returning.
    match unsafe { libc::fork() } {
        -1 => panic!("fork failed: {}", std::io::Error::last_os_error()),
        0 => {
            let code = if install() { probe() } else { 99 };
            // SAFETY: _exit is async-signal-safe and ends the child at once.
            unsafe { libc::_exit(code) }
        }
        child => {
            let mut status = 0;
            // SAFETY: waits for the child just forked; status is ours.
            let waited = unsafe { libc::waitpid(child, &mut status, 0) };
            assert_eq!(waited, child, "waitpid: {}", std::io::Error::last_os_error());
            assert!(
                libc::WIFEXITED(status),
                "the probe's child did not exit: status {status}"
            );
            libc::WEXITSTATUS(status)
        }
    }
}

/// The errno of the last failed call.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// 0 when a raw call succeeded, else its errno.
pub fn result(r: libc::c_long) -> i32 {
    if r >= 0 {
        0
    } else {
        errno()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_reports_what_the_kernel_answered() {
        // SAFETY: plain syscalls with no pointers.
        assert_eq!(in_child(|| true, || result(unsafe { libc::getpid() } as _)), 0);
        assert_eq!(
            in_child(|| true, || result(unsafe { libc::close(-1) } as _)),
            libc::EBADF
        );
        assert_eq!(in_child(|| false, || 0), 99, "a failed install is told apart");
    }
}
