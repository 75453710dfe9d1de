//! Resource limits and the privilege drop.

use caps::CapSet;
use nix::sys::resource::{setrlimit, Resource};
use nix::unistd::{Gid, Uid};

use super::{step, JailError};

/// Limits for the jail. CPU time and address space are set per command
/// (see `exec`), so that toold's own long life does not count against them.
#[derive(Debug, Clone, Copy)]
pub struct ResourceLimits {
    /// Processes of the tool user, all commands together (fork bombs).
    pub max_processes: u64,
    pub max_open_files: u64,
    /// Largest file a command may write, bytes.
    pub max_file_size: u64,
    /// Address space per command, bytes.
    pub max_memory: u64,
    /// CPU seconds per command.
    pub max_cpu_secs: u64,
    /// Size of the jail's /tmp, MiB.
    pub tmp_size_mb: u32,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        ResourceLimits {
            max_processes: 256,
            max_open_files: 1024,
            max_file_size: 256 << 20,
            max_memory: 2 << 30,
            max_cpu_secs: 600,
            tmp_size_mb: 256,
        }
    }
}

pub fn set_rlimits(l: &ResourceLimits) -> Result<(), JailError> {
    step(
        "set RLIMIT_NPROC",
        setrlimit(Resource::RLIMIT_NPROC, l.max_processes, l.max_processes),
    )?;
    step(
        "set RLIMIT_NOFILE",
        setrlimit(Resource::RLIMIT_NOFILE, l.max_open_files, l.max_open_files),
    )?;
    step(
        "set RLIMIT_FSIZE",
        setrlimit(Resource::RLIMIT_FSIZE, l.max_file_size, l.max_file_size),
    )?;
    step("set RLIMIT_CORE", setrlimit(Resource::RLIMIT_CORE, 0, 0))?;
    // A write past RLIMIT_FSIZE then fails with EFBIG instead of killing
    // the writer (the ignored disposition is inherited across exec).
    // SAFETY: SIG_IGN installs no handler code.
    step("ignore SIGXFSZ", unsafe {
        nix::sys::signal::signal(nix::sys::signal::Signal::SIGXFSZ, nix::sys::signal::SigHandler::SigIgn)
    })?;
    Ok(())
}

/// Capabilities a root-started toold needs to build the jail; everything
/// else is dropped before the first step.
const BUILD_CAPS: &[caps::Capability] = &[
    caps::Capability::CAP_SYS_ADMIN,       // namespaces, mounts, pivot_root, sethostname
    caps::Capability::CAP_SETUID,          // become the tool user
    caps::Capability::CAP_SETGID,          // … and its group
    caps::Capability::CAP_SETPCAP,         // empty the bounding set
    caps::Capability::CAP_CHOWN,           // hand a fresh workspace to the tool user
    caps::Capability::CAP_DAC_OVERRIDE,    // reach a workspace under a private directory
    caps::Capability::CAP_DAC_READ_SEARCH, // … and read the system files to bind
    caps::Capability::CAP_KILL,            // the outside process's death signals the jail
];

/// Root-started: keep only [`BUILD_CAPS`] while the jail is built.
pub fn keep_only_build_caps() -> Result<(), JailError> {
    let keep: caps::CapsHashSet = BUILD_CAPS.iter().copied().collect();
    step(
        "limit capabilities to those that build the jail",
        caps::set(None, CapSet::Effective, &keep),
    )?;
    step(
        "limit capabilities to those that build the jail",
        caps::set(None, CapSet::Permitted, &keep),
    )?;
    step(
        "limit capabilities to those that build the jail",
        caps::clear(None, CapSet::Inheritable),
    )?;
    Ok(())
}

/// The process left outside the jail only waits for it. It keeps CAP_KILL
/// alone: when it dies, the kernel sends the jail its parent-death signal
/// with the outside process's credentials, and the jail by then runs as
/// another uid.
pub fn outside_keeps_only_kill() -> Result<(), JailError> {
    let keep: caps::CapsHashSet = [caps::Capability::CAP_KILL].into_iter().collect();
    step(
        "drop the outside process's capabilities",
        caps::set(None, CapSet::Effective, &keep),
    )?;
    step(
        "drop the outside process's capabilities",
        caps::set(None, CapSet::Permitted, &keep),
    )?;
    Ok(())
}

/// Unprivileged: the outside process holds every capability of the user
/// namespace it made; it needs none of them to wait for the jail.
pub fn outside_drops_all() -> Result<(), JailError> {
    for set in [CapSet::Effective, CapSet::Permitted, CapSet::Inheritable] {
        step("drop the outside process's capabilities", caps::clear(None, set))?;
    }
    Ok(())
}

/// Root-started: become the tool user. Either way: no capability in any set.
pub fn drop_privileges(root_started: bool, uid: Uid, gid: Gid) -> Result<(), JailError> {
    // The bounding set first: dropping it needs CAP_SETPCAP, which the id
    // change below takes away.
    for cap in caps::all() {
        step(
            "drop the capability bounding set",
            caps::drop(None, CapSet::Bounding, cap),
        )?;
    }
    step("clear the ambient capabilities", caps::clear(None, CapSet::Ambient))?;
    if root_started {
        step("set the supplementary groups", nix::unistd::setgroups(&[gid]))?;
        step("setresgid to the tool user", nix::unistd::setresgid(gid, gid, gid))?;
        step("setresuid to the tool user", nix::unistd::setresuid(uid, uid, uid))?;
    }
    for set in [CapSet::Effective, CapSet::Permitted, CapSet::Inheritable] {
        step("clear the capability sets", caps::clear(None, set))?;
    }
    // Check, rather than trust, the result.
    let left = step("read back the capabilities", caps::read(None, CapSet::Permitted))?;
    if !left.is_empty() || nix::unistd::geteuid().is_root() {
        return Err(JailError {
            step: "verify the privilege drop",
            cause: format!("still privileged: {left:?}"),
        });
    }
    Ok(())
}

/// Root-started toold hands the workspace's top directory to the tool user
/// when root still owns it (a fresh install).
pub fn adopt_workspace(path: &std::path::Path, uid: Uid, gid: Gid) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    if meta.uid() == 0 {
        nix::unistd::chown(path, Some(uid), Some(gid))?;
    }
    Ok(())
}
