//! A skill's requirements, checked where its commands would run: inside
//! the jail, as the tool user, on the `PATH` and environment that `exec`
//! gives every command.

use std::path::Path;

/// (programs not found, environment variables not set), in the order asked.
pub fn missing(bins: &[String], env: &[String]) -> (Vec<String>, Vec<String>) {
    let missing_bins = bins.iter().filter(|b| !runnable(b)).cloned().collect();
    let missing_env = env
        .iter()
        .filter(|name| !crate::exec::ENV_NAMES.contains(&name.as_str()))
        .cloned()
        .collect();
    (missing_bins, missing_env)
}

/// A plain program name that some `PATH` directory holds as a regular file
/// this user may execute. A name with a slash is never looked up: a skill
/// names programs, not paths.
fn runnable(name: &str) -> bool {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return false;
    }
    crate::exec::PATH.split(':').any(|dir| {
        let path = Path::new(dir).join(name);
        path.metadata().is_ok_and(|m| m.is_file()) && nix::unistd::access(&path, nix::unistd::AccessFlags::X_OK).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_on_the_command_path_and_only_the_command_environment() {
        let (bins, env) = missing(
            &[
                "sh".into(),
                "no-such-program-oxibot".into(),
                "../sh".into(),
                "/bin/sh".into(),
            ],
            &["PATH".into(), "GITHUB_TOKEN".into()],
        );
        assert_eq!(bins, ["no-such-program-oxibot", "../sh", "/bin/sh"]);
        assert_eq!(env, ["GITHUB_TOKEN"]);
    }
}
