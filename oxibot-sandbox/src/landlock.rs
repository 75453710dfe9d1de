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

/// What glibc's name lookups read and load: the system libraries (NSS
/// modules), a handful of /etc files, and randomness. Not /usr or /etc as
/// a whole: /usr/local/etc, /etc/ssl/private and /etc/pki/tls/private may
/// hold keys. Measured with scripts/measure-syscalls.sh.
pub const NAME_LOOKUP_READS: &[&str] = &[
    "/usr/lib",
    "/usr/lib64",
    "/usr/lib32",
    "/lib",
    "/lib64",
    "/etc/ld.so.cache",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/dev/urandom",
];

/// Adds a read-only rule for each of `paths` that exists (a directory:
/// read beneath it; a file: read and map it). Missing ones are simply not
/// there to read.
pub fn allow_reading<'a>(
    mut ruleset: RulesetCreated,
    paths: impl IntoIterator<Item = &'a std::path::Path>,
) -> Result<RulesetCreated, RulesetError> {
    let read = AccessFs::from_read(ABI_TARGET);
    let file_read = AccessFs::ReadFile | AccessFs::Execute;
    for path in paths {
        if let Ok(fd) = PathFd::new(path) {
            let access = if path.is_dir() { read } else { file_read };
            ruleset = ruleset.add_rule(PathBeneath::new(fd, access))?;
        }
    }
    Ok(ruleset)
}
