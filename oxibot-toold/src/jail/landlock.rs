//! Landlock, best effort: writes only under /workspace, /tmp and /dev, no
//! TCP but a connection to the egress door's port (when the door is
//! open), no abstract Unix sockets outside the jail. The mounts and the
//! network namespace already enforce this; Landlock is a second lock.

use oxibot_sandbox::landlock::{
    self, Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetError, RulesetStatus, Scope, ABI_TARGET,
};

/// Returns a one-line description of what was enforced.
pub fn restrict(network: bool) -> String {
    landlock::outcome(try_restrict(network)).0
}

fn try_restrict(network: bool) -> Result<RulesetStatus, RulesetError> {
    let read = AccessFs::from_read(ABI_TARGET);
    let all = AccessFs::from_all(ABI_TARGET);
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)?
        .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)?
        .scope(Scope::AbstractUnixSocket)?
        .create()?
        .add_rules(landlock::path_beneath_rules(["/"], read))?
        .add_rules(landlock::path_beneath_rules(["/workspace", "/tmp", "/dev"], all))?;
    if network {
        ruleset = ruleset
            .add_rule(NetPort::new(super::net::PROXY_PORT, AccessNet::ConnectTcp))?
            // toold writes the trust bundle there; each exec's own domain
            // (below) does not let its commands.
            .add_rules(landlock::path_beneath_rules([crate::trust::DIR], all))?;
    }
    // The MCP servers write their state there, each in its own slot (their
    // own domains narrow this); commands do not (theirs).
    ruleset = ruleset.add_rules(landlock::path_beneath_rules([super::MCP_STATE], all))?;
    Ok(ruleset.restrict_self()?.ruleset)
}

/// The ruleset every exec enters on its own (in `pre_exec`), made while the
/// jail is built (seccomp then allows restricting, never making one).
///
/// Each exec is then a Landlock domain of its own below the jail's, and
/// Landlock lets a process reach into another (`/proc/PID/fd`, `mem`,
/// `environ`, ptrace) only in its own domain or below it, and signal only
/// inside its domain: a process one chat's command left behind cannot
/// write into another running exec's pipes (its input, or the output the
/// model reads), read its memory or environment, or kill it, while toold,
/// one domain up, still reads and signals them all. The same holds
/// between a command and an MCP server, each of which has a domain of its
/// own (`mcp_domains`).
///
/// It grants what the jail grants its commands: reading as the jail lets
/// (but no file of the MCP servers' state, `super::MCP_STATE`, where
/// a server may keep its tokens), writing under /workspace, /tmp and /dev
/// only; the places the jail lets toold write besides, the trust bundle
/// (`crate::trust`) and the servers' state, it closes to commands.
/// None where Landlock is not there.
pub fn exec_domain() -> Option<std::os::fd::OwnedFd> {
    domain(&["/workspace", "/tmp", "/dev"])
}

/// One ruleset per MCP server slot (see `crate::mcp`), made with the jail: a
/// server reads what a command reads and writes only its own state
/// directory (and /dev). Empty where Landlock is not there: then no server
/// is started (nothing would keep its secrets from the commands).
pub fn mcp_domains() -> Vec<std::os::fd::OwnedFd> {
    (0..oxibot_proto::messages::MAX_MCP_SERVERS)
        .map_while(|slot| domain(&[super::mcp_state_dir(slot).as_str(), "/dev"]))
        .collect()
}

/// A domain that lists every directory, reads and runs files beneath every
/// entry of the jail's root but the MCP servers' state, and writes only
/// beneath `writable`.
fn domain(writable: &[&str]) -> Option<std::os::fd::OwnedFd> {
    let all = AccessFs::from_all(ABI_TARGET);
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)
        .ok()?
        .scope(Scope::Signal | Scope::AbstractUnixSocket)
        .ok()?
        .create()
        .ok()?
        // Names everywhere (so `ls /` and path walks work); contents only
        // as below.
        .add_rule(PathBeneath::new(PathFd::new("/").ok()?, AccessFs::ReadDir))
        .ok()?;
    let state = std::path::Path::new(super::MCP_STATE);
    for entry in std::fs::read_dir("/").ok()?.flatten() {
        let path = entry.path();
        if path == state {
            continue;
        }
        // A link to a directory (merged /usr) is followed; a dangling one
        // has nothing to grant.
        let Ok(fd) = PathFd::new(&path) else { continue };
        let access = if path.is_dir() {
            AccessFs::from_read(ABI_TARGET)
        } else {
            AccessFs::ReadFile | AccessFs::Execute
        };
        ruleset = ruleset.add_rule(PathBeneath::new(fd, access)).ok()?;
    }
    for dir in writable {
        ruleset = ruleset.add_rule(PathBeneath::new(PathFd::new(dir).ok()?, all)).ok()?;
    }
    ruleset.into()
}
