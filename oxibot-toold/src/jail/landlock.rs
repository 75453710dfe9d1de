//! Landlock, best effort: writes only under /workspace, /tmp and /dev, no
//! TCP but a connection to the egress door's port (when the door is
//! open), no abstract Unix sockets outside the jail. The mounts and the
//! network namespace already enforce this; Landlock is a second lock.

use oxibot_sandbox::landlock::{
    self, Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetError, RulesetStatus, Scope, ABI_TARGET,
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
/// one domain up, still reads and signals them all. It grants what the
/// jail grants its commands: reading as the jail lets, writing under
/// /workspace, /tmp and /dev only; the one place the jail lets toold write
/// besides, the trust bundle (`crate::trust`), it closes to commands.
/// None where Landlock is not there.
pub fn exec_domain() -> Option<std::os::fd::OwnedFd> {
    // Writing: where the jail lets its commands write, and nowhere else
    // (not the trust bundle, which toold writes in the jail's domain).
    let write = AccessFs::from_all(ABI_TARGET) & !AccessFs::from_read(ABI_TARGET);
    Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(write)
        .ok()?
        .scope(Scope::Signal | Scope::AbstractUnixSocket)
        .ok()?
        .create()
        .ok()?
        .add_rules(landlock::path_beneath_rules(["/workspace", "/tmp", "/dev"], write))
        .ok()?
        .into()
}
