//! Landlock, best effort: writes only under /workspace, /tmp and /dev, no
//! TCP at all, no abstract Unix sockets outside the jail. The mounts and
//! the network namespace already enforce this; Landlock is a second lock.

use oxibot_sandbox::landlock::{
    self, Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetError,
    RulesetStatus, Scope, ABI_TARGET,
};

/// Returns a one-line description of what was enforced.
pub fn restrict() -> String {
    landlock::outcome(try_restrict()).0
}

fn try_restrict() -> Result<RulesetStatus, RulesetError> {
    let read = AccessFs::from_read(ABI_TARGET);
    let all = AccessFs::from_all(ABI_TARGET);
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)?
        .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)?
        .scope(Scope::AbstractUnixSocket)?
        .create()?
        .add_rules(landlock::path_beneath_rules(["/"], read))?
        .add_rules(landlock::path_beneath_rules(["/workspace", "/tmp", "/dev"], all))?
        .restrict_self()?;
    Ok(status.ruleset)
}
