//! The jail, built once at start, single-threaded, before any async runtime
//! exists and before a single request is read. One straight sequence, in the
//! order youki, minijail and bubblewrap use:
//!
//! 1. namespaces: user (when not root), mount, pid, net, ipc, uts;
//! 2. fork: the child is pid 1 of the new pid namespace — the kernel then
//!    drops every signal its descendants send it, and its death kills them;
//! 3. with the egress door: loopback up and the proxy port bound (the
//!    jail's only way out, see `net`); then a tmpfs root with read-only
//!    system binds, a fresh /proc, a minimal /dev, a tmpfs /tmp and the
//!    workspace at /workspace; pivot_root;
//! 4. rlimits, then the tool user's ids, then no capabilities at all;
//! 5. no_new_privs, Landlock (best effort), and a default-deny seccomp filter.
//!
//! Each step that fails stops the start with the step's name and the cause.

mod fs;
mod landlock;
pub mod net;
mod privs;
pub mod seccomp;

use std::fmt;
use std::path::PathBuf;

use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Gid, Pid, Uid, User};

pub use privs::ResourceLimits;

/// Where the workspace appears inside the jail.
pub const JAIL_WORKSPACE: &str = "/workspace";
/// Where the MCP servers' state directories are (`crate::mcp`), one per
/// slot, on a tmpfs of their own.
pub const MCP_STATE: &str = "/mcp";

/// The state directory of MCP server slot `slot`.
pub fn mcp_state_dir(slot: usize) -> String {
    format!("{MCP_STATE}/{slot}")
}

/// The Landlock rulesets made with the jail (seccomp then allows entering
/// one, never making one): each command's, and one per MCP server slot.
pub struct Domains {
    pub exec: Option<std::os::fd::OwnedFd>,
    pub mcp: Vec<std::os::fd::OwnedFd>,
}

#[derive(Debug)]
pub struct JailError {
    pub step: &'static str,
    pub cause: String,
}

impl fmt::Display for JailError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot build the sandbox jail: step \"{}\" failed: {}",
            self.step, self.cause
        )
    }
}

pub(crate) fn step<T, E: fmt::Display>(step: &'static str, r: Result<T, E>) -> Result<T, JailError> {
    r.map_err(|e| JailError {
        step,
        cause: e.to_string(),
    })
}

pub struct JailSpec {
    /// The workspace, every link resolved.
    pub workspace: PathBuf,
    /// The workspace as configured: a root-started toold hands over only a
    /// directory it did not reach through a link.
    pub workspace_as_given: PathBuf,
    /// The user to become when started as root.
    pub tool_user: String,
    pub limits: ResourceLimits,
    /// Debugging: seccomp logs instead of refusing.
    pub seccomp_log: bool,
    /// The egress daemon's socket: with it, the jail gets its proxy port
    /// and commands may connect to it (and nowhere else).
    pub egress_door: Option<PathBuf>,
}

/// What the jailed process learns about its jail, for `doctor` and logs.
#[derive(Debug, Clone)]
pub struct JailReport {
    pub root_started: bool,
    pub uid: u32,
    pub landlock: String,
}

pub enum Side {
    /// The process outside: it waits for the jail and mirrors its exit, and
    /// hands the door's connections on.
    Outside(Pid, Option<net::OutsideEnd>),
    /// pid 1 inside the jail, with every restriction in place.
    Inside(JailReport, Option<net::JailEnd>, Domains),
}

/// Builds the jail; see the module documentation for the order.
pub fn enter(spec: &JailSpec) -> Result<Side, JailError> {
    let root_started = nix::unistd::geteuid().is_root();
    if root_started {
        privs::keep_only_build_caps()?;
        // Root builds the jail's skeleton (the /etc copy, the mount
        // points) for the tool user, who must be able to read it: a umask
        // inherited from the supervisor (the broker runs with 077) would
        // leave it root-only. Without root every part is our own anyway.
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    }

    // Everything the jail needs from the host is read now: after
    // pivot_root the host is gone.
    let (uid, gid) = if root_started {
        let user = step("look up the tool user", User::from_name(&spec.tool_user))?.ok_or_else(|| JailError {
            step: "look up the tool user",
            cause: format!(
                "user \"{}\" does not exist; create it (useradd --system {}) or install the package",
                spec.tool_user, spec.tool_user
            ),
        })?;
        if user.uid.is_root() {
            return Err(JailError {
                step: "look up the tool user",
                cause: "the tool user must not be root".into(),
            });
        }
        (user.uid, user.gid)
    } else {
        (nix::unistd::getuid(), nix::unistd::getgid())
    };
    if root_started {
        step(
            "give the workspace to the tool user",
            privs::adopt_workspace(&spec.workspace, &spec.workspace_as_given, uid, gid),
        )?;
    }
    let host = step(
        "read the host files the jail needs",
        fs::HostFiles::snapshot(uid, gid, &spec.tool_user),
    )?;

    // 1. Namespaces. Without root, a user namespace mapping our own ids
    //    gives us the capabilities to build the rest, inside it only.
    if !root_started {
        unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| JailError {
            step: "unshare the user namespace",
            cause: format!("{e}{}", userns_hint()),
        })?;
        step("map our uid and gid", map_ids(uid, gid))?;
    }
    step(
        "unshare mount, pid, net, ipc and uts namespaces",
        unshare(
            CloneFlags::CLONE_NEWNS
                | CloneFlags::CLONE_NEWPID
                | CloneFlags::CLONE_NEWNET
                | CloneFlags::CLONE_NEWIPC
                | CloneFlags::CLONE_NEWUTS,
        ),
    )?;

    // The door's two halves, while the host's paths are still there.
    let door = match &spec.egress_door {
        Some(path) => Some(net::prepare(path)?),
        None => None,
    };

    // 2. Fork into the pid namespace.
    // SAFETY: we are single-threaded here (no runtime, no helper threads
    // yet), so the child may run arbitrary code after fork.
    match step("fork into the pid namespace", unsafe { fork() })? {
        ForkResult::Parent { child } => {
            if root_started {
                privs::outside_keeps_only_kill()?;
            } else {
                privs::outside_drops_all()?;
            }
            return Ok(Side::Outside(child, door.map(|(_, outside)| outside)));
        }
        ForkResult::Child => {}
    }
    // 3. The door, then the filesystem.
    let door = match door {
        Some((jail_half, outside)) => {
            drop(outside);
            Some(net::open(jail_half)?)
        }
        None => None,
    };
    fs::build_root(&spec.workspace, &host, spec.limits.tmp_size_mb, door.is_some())?;
    step("set the hostname", nix::unistd::sethostname("oxibot-jail"))?;

    // 4. Privileges.
    privs::set_rlimits(&spec.limits)?;
    privs::drop_privileges(root_started, uid, gid)?;
    // The jail must not outlive the process the supervisor watches. Set
    // after the id change, which would clear it.
    step(
        "set the parent-death signal",
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL),
    )?;
    step("clear the dumpable flag", nix::sys::prctl::set_dumpable(false))?;

    // 5. no_new_privs, Landlock, seccomp — the last steps; after the filter
    //    nothing here may make a syscall outside the allow-list.
    step("set no_new_privs", nix::sys::prctl::set_no_new_privs())?;
    let network = door.is_some();
    let landlock = landlock::restrict(network);
    let domains = Domains {
        exec: landlock::exec_domain(),
        mcp: landlock::mcp_domains(),
    };
    seccomp::install(spec.seccomp_log, network)?;

    Ok(Side::Inside(
        JailReport {
            root_started,
            uid: uid.as_raw(),
            landlock,
        },
        door,
        domains,
    ))
}

/// The outside process: wait for the jail and exit the same way, so that the
/// supervisor sees the jail's fate.
pub fn wait_for_jail(child: Pid) -> i32 {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 1,
        }
    }
}

fn map_ids(uid: Uid, gid: Gid) -> std::io::Result<()> {
    // setgroups must be denied before an unprivileged process may write gid_map.
    std::fs::write("/proc/self/setgroups", "deny")?;
    std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1\n"))?;
    std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1\n"))?;
    Ok(())
}

/// Explains the usual reasons an unprivileged user namespace is refused.
fn userns_hint() -> String {
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_string());
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return " (user namespaces are disabled: kernel.unprivileged_userns_clone=0; enable it, or start toold as root)"
            .into();
    }
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return " (user namespaces are disabled: user.max_user_namespaces=0; raise it, or start toold as root)".into();
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return " (AppArmor restricts unprivileged user namespaces: kernel.apparmor_restrict_unprivileged_userns=1; \
                 start toold as root, or allow it in an AppArmor profile)"
            .into();
    }
    String::new()
}

/// Inside the jail, toold is pid 1; outside (sandbox off) it is not.
pub fn is_jailed() -> bool {
    std::process::id() == 1
}
