//! Landlock, best effort: writes only under /workspace, /tmp and /dev, no
//! TCP at all, no abstract Unix sockets outside the jail. The mounts and
//! the network namespace already enforce this; Landlock is a second lock.

use landlock::{
    Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    Scope, ABI,
};

const ABI_TARGET: ABI = ABI::V6;

/// Returns a one-line description of what was enforced.
pub fn restrict() -> String {
    match try_restrict() {
        Ok(RulesetStatus::FullyEnforced) => "fully enforced".into(),
        Ok(RulesetStatus::PartiallyEnforced) => "partially enforced (older kernel ABI)".into(),
        Ok(RulesetStatus::NotEnforced) => "not enforced (kernel without Landlock)".into(),
        Err(e) => format!("not enforced: {e}"),
    }
}

fn try_restrict() -> Result<RulesetStatus, landlock::RulesetError> {
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
