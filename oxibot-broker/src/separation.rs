//! What the running mode separates, and what it does not: said at start-up
//! (log), in `oxibotctl status` and by `oxibotctl doctor`, so that nobody
//! believes in a separation their set-up does not give.

use serde_json::Value;

use crate::config::{Config, SandboxMode};

/// One line per thing the admin should know about the separation.
pub fn notes(config: &Config) -> Vec<String> {
    let mut notes = Vec::new();
    let euid = nix::unistd::geteuid();
    let root = euid.is_root();
    if root {
        notes.push(
            "the broker runs as root: it keeps root only to start each daemon as its own user. \
             Run it as the oxibot user under systemd (the packaged units do) so that it holds no more than it needs"
                .into(),
        );
    }
    if config.supervise && !root {
        let who = nix::unistd::User::from_uid(euid)
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_default();
        notes.push(format!(
            "unprivileged supervise mode: the broker and every daemon run as uid {euid} ({who}). The kernel still \
             separates them: toold's jail (own namespaces, no network, seccomp, Landlock), each channel daemon's \
             seccomp allow-list and Landlock file allow-list (it cannot read the secrets file, the state database \
             or another process's memory; it cannot signal the broker), and no daemon is dumpable (no ptrace, no \
             /proc/PID/mem). Not separated: what only file ownership would protect on a kernel without Landlock \
             (before 5.13; signals before 6.12), and per-user limits (RLIMIT_NPROC) shared with the broker. \
             Start the broker as root, or use the systemd units, to give each daemon its own user"
        ));
    }
    if config.tools.sandbox == SandboxMode::Off {
        notes.push(
            "tools.sandbox is \"off\": shell commands and file tools run WITHOUT the jail, with the tool daemon's \
             full rights. Development only"
                .into(),
        );
    }
    if config.tools.seccomp_log {
        notes.push(
            "tools.seccompLog is on: the jail's seccomp filter logs refused syscalls (kernel log) instead of \
             refusing them. Debugging only; remove it"
                .into(),
        );
    }
    if config.enabled_channels().iter().any(|c| c == "email") {
        let email = config.channels.get("email").cloned().unwrap_or(Value::Null);
        let trust_from = email.get("trustFromHeader").and_then(Value::as_bool).unwrap_or(false);
        let authserv = email
            .get("authservId")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.trim().is_empty());
        if trust_from {
            notes.push(
                "channels.email.trustFromHeader is true: anyone can write a From header, so e-mail senders are \
                 NOT verified; the allow-list admits whoever names an allowed address"
                    .into(),
            );
        } else if !authserv {
            notes.push(
                "channels.email.authservId is not set: no e-mail sender can be verified, so the allow-list admits \
                 no mail. Set it to your receiving server's authserv-id (the first word of the \
                 Authentication-Results header that server adds)"
                    .into(),
            );
        }
    }
    notes
}
