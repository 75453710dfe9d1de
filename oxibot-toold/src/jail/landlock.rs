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
        ruleset = ruleset.add_rule(NetPort::new(super::net::PROXY_PORT, AccessNet::ConnectTcp))?;
    }
    Ok(ruleset.restrict_self()?.ruleset)
}
