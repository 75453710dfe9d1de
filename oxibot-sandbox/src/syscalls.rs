//! Syscall facts that more than one daemon's seccomp filter relies on.

/// Every `CLONE_NEW*` flag. A `clone` with any of them makes a namespace;
/// no OxiBot daemon, and no command in the jail, may do that.
pub const CLONE_NEW_MASK: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | 0x80/* CLONE_NEWTIME */) as u64;
