//! Resource limits and the privilege drop.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use caps::CapSet;
use nix::fcntl::OFlag;
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::stat::Mode;
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
    caps::Capability::CAP_NET_ADMIN,       // bring up the jail's loopback (the egress door)
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
/// when root still owns it (a fresh install) — only an empty one, reached
/// without a link: `"workspace": "/srv"`, or a link planted on the way,
/// must not give the tool user a directory of root's that holds anything.
/// The change goes through a descriptor opened without following links.
pub fn adopt_workspace(path: &Path, as_given: &Path, uid: Uid, gid: Gid) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |why: String| std::io::Error::new(std::io::ErrorKind::PermissionDenied, why);
    let dir = nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // SAFETY: open returned a fresh descriptor that nothing else owns.
    let dir = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(dir) });
    let meta = dir.metadata()?;
    if meta.uid() != 0 {
        return Ok(());
    }
    if path != as_given {
        return Err(refuse(format!(
            "the workspace {} is reached through a link (it is {}) and owned by root: toold hands the tool user \
             only a directory named by its real path; set agents.defaults.workspace to the real path, or chown \
             it to the tool user yourself",
            as_given.display(),
            path.display()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refuse(format!(
            "the workspace {} is owned by root and others may write in it (mode {:o}): a shared directory \
             (/var/tmp, /dev/shm) is never handed to the tool user; use a directory of its own",
            path.display(),
            meta.mode() & 0o7777
        )));
    }
    // Read through the descriptor: what was checked is what is handed over.
    let mut entries = nix::dir::Dir::openat(
        Some(dir.as_raw_fd()),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        Mode::empty(),
    )?;
    let has_entries = entries
        .iter()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_bytes() != b"." && e.file_name().to_bytes() != b"..");
    if has_entries {
        return Err(refuse(format!(
            "the workspace {} is owned by root and not empty: toold hands the tool user only an empty one; use \
             an empty directory of its own (the default is /var/lib/oxibot/workspace), or chown it to the tool \
             user yourself if that is what you want",
            path.display()
        )));
    }
    nix::unistd::fchown(dir.as_raw_fd(), Some(uid), Some(gid))?;
    Ok(())
}

#[cfg(test)]
mod adopt_tests {
    use super::*;

    fn tool_ids() -> (Uid, Gid) {
        (Uid::from_raw(65534), Gid::from_raw(65534))
    }

    /// The review's case: a root-owned directory that holds something, or
    /// one reached through a link, is never handed to the tool user.
    #[test]
    fn only_an_empty_root_owned_workspace_named_by_its_path_is_adopted() {
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::geteuid().is_root() {
            assert!(std::env::var_os("CI").is_none(), "CI runs as root: this test must run");
            return;
        }
        let (uid, gid) = tool_ids();
        let d = tempfile::tempdir().unwrap();
        let srv = d.path().join("srv");
        std::fs::create_dir(&srv).unwrap();
        std::fs::write(srv.join("data"), "root's").unwrap();
        let e = adopt_workspace(&srv, &srv, uid, gid).unwrap_err();
        assert!(e.to_string().contains("not empty"), "{e}");
        assert_eq!(std::fs::metadata(&srv).unwrap().uid(), 0);

        let empty = d.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&empty, &link).unwrap();
        let e = adopt_workspace(&empty, &link, uid, gid).unwrap_err();
        assert!(e.to_string().contains("through a link"), "{e}");
        assert_eq!(std::fs::metadata(&empty).unwrap().uid(), 0);

        // The legitimate path: a fresh, empty workspace.
        adopt_workspace(&empty, &empty, uid, gid).unwrap();
        assert_eq!(std::fs::metadata(&empty).unwrap().uid(), 65534);
        // Already the tool user's: left as it is, even when not empty.
        std::fs::write(empty.join("notes"), "x").unwrap();
        adopt_workspace(&empty, &empty, uid, gid).unwrap();

        // An empty directory everybody may write (/var/tmp): not handed over.
        use std::os::unix::fs::PermissionsExt;
        let shared = d.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let e = adopt_workspace(&shared, &shared, uid, gid).unwrap_err();
        assert!(e.to_string().contains("others may write"), "{e}");
        assert_eq!(std::fs::metadata(&shared).unwrap().uid(), 0);
    }
}
