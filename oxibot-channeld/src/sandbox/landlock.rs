//! Landlock for a channel daemon: it may read what TLS and DNS need (the
//! system libraries for NSS modules, a handful of /etc files, the public CA
//! certificates, a private CA file from its settings), write to /dev/null,
//! and nothing else — not the secrets file, not the state database, not
//! the workspace, not /proc. It may not listen on TCP, signal a process
//! outside itself, or connect to an abstract Unix socket outside itself.
//!
//! This is what separates a daemon that shares the broker's uid
//! (unprivileged supervise mode); with a user of its own, file ownership
//! does it too, and Landlock is a second lock.

use std::path::Path;

use oxibot_sandbox::landlock::{
    self, Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetError, RulesetStatus, Scope, ABI_TARGET,
};

use super::{Plan, Report};

/// Read (and map) only, beside what name lookups read
/// (`oxibot_sandbox::landlock::NAME_LOOKUP_READS`): the public CA
/// certificates (not /etc/ssl/private or /etc/pki/tls/private, which may
/// hold keys).
const READ_ONLY: &[&str] = &[
    "/etc/ssl/certs",
    "/usr/share/ca-certificates",
    "/etc/pki/tls/certs",
    "/etc/pki/ca-trust/extracted",
    "/dev/random",
];
/// Read and write.
const READ_WRITE: &[&str] = &["/dev/null"];

pub fn restrict(plan: &Plan) -> Report {
    let (described, files_confined) = landlock::outcome(try_restrict(plan));
    Report {
        landlock: described,
        files_confined,
    }
}

fn try_restrict(plan: &Plan) -> Result<RulesetStatus, RulesetError> {
    let all = AccessFs::from_all(ABI_TARGET);
    let file_read = AccessFs::ReadFile | AccessFs::Execute;
    let ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)?
        // Handled with no rule: no TCP listening at all. Connecting is left
        // alone (the platforms' ports vary).
        .handle_access(AccessNet::BindTcp)?
        .scope(Scope::AbstractUnixSocket | Scope::Signal)?
        .create()?;
    let reads = landlock::NAME_LOOKUP_READS.iter().chain(READ_ONLY).map(Path::new);
    let mut ruleset = landlock::allow_reading(ruleset, reads)?;
    for path in READ_WRITE.iter().map(Path::new) {
        if let Ok(fd) = PathFd::new(path) {
            let access = AccessFs::from_file(ABI_TARGET);
            ruleset = ruleset.add_rule(PathBeneath::new(fd, access))?;
        }
    }
    for path in &plan.extra_reads {
        if let Ok(fd) = PathFd::new(path) {
            ruleset = ruleset.add_rule(PathBeneath::new(fd, file_read))?;
        }
    }
    Ok(ruleset.restrict_self()?.ruleset)
}
