//! Landlock for the daemons: the ABI they ask for, and what came of it, in
//! words for the status and the log. Each daemon builds its own ruleset
//! with the re-exported types; best effort, so an older kernel enforces
//! what it knows and the report says so.

pub use ::landlock::*;

/// The Landlock ABI the rulesets are written for (filesystem, TCP, scopes).
pub const ABI_TARGET: ABI = ABI::V6;

/// What `restrict_self` achieved: a description, and whether files are
/// confined at all.
pub fn outcome(result: Result<RulesetStatus, RulesetError>) -> (String, bool) {
    match result {
        Ok(RulesetStatus::FullyEnforced) => ("fully enforced".into(), true),
        Ok(RulesetStatus::PartiallyEnforced) => ("partially enforced (older kernel ABI)".into(), true),
        Ok(RulesetStatus::NotEnforced) => ("not enforced (kernel without Landlock)".into(), false),
        Err(e) => (format!("not enforced: {e}"), false),
    }
}
