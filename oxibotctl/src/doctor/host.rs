//! The installation, checked from outside: files and their modes, users,
//! sockets, what the kernel offers the sandbox, the units' exposure, and
//! the settings that decide who may talk to the assistant. Each finding
//! says the fix.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use nix::unistd::{Group, User};
use oxibot_config::layout::Layout;
use oxibot_config::paths;

use super::{Finding, Level};

pub fn checks(config: &Path, broker_uid: Option<u32>) -> Vec<Finding> {
    let mut out = Vec::new();
    let layout = match Layout::read(config) {
        Ok(l) => l,
        Err(e) => {
            out.push(
                Finding::new("files", "the configuration is readable", Level::Fail, e)
                    .fix("run as root or a member of oxibot-admin, or give --config / OXIBOT_CONFIG"),
            );
            return out;
        }
    };
    // Under systemd the broker is `oxibot`; otherwise whoever runs it.
    let broker = broker_uid
        .and_then(|u| User::from_uid(u.into()).ok().flatten())
        .or_else(|| User::from_name("oxibot").ok().flatten());
    out.extend(config_file(config));
    out.push(secrets_file(&layout.secrets_file, broker.as_ref()));
    out.extend(state_dir(&layout, broker.as_ref()));
    out.push(super::workspace::check(&layout.workspace()));
    if !layout.supervise {
        out.extend(users(&layout));
    }
    out.extend(sockets(&layout));
    out.extend(super::system::sandbox());
    out.extend(super::system::units());
    out.extend(super::access::settings(&layout));
    out
}

fn mode(m: &std::fs::Metadata) -> String {
    let owner = User::from_uid(m.uid().into())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| m.uid().to_string());
    let group = Group::from_gid(m.gid().into())
        .ok()
        .flatten()
        .map(|g| g.name)
        .unwrap_or_else(|| m.gid().to_string());
    format!("{owner}:{group} {:04o}", m.mode() & 0o7777)
}

fn name_of_group(gid: u32) -> String {
    Group::from_gid(gid.into())
        .ok()
        .flatten()
        .map(|g| g.name)
        .unwrap_or_else(|| gid.to_string())
}

/// Why someone other than the broker (and root) could read a file or
/// directory with these modes; None when nobody else can. `traverse`
/// allows others the x bit (a directory others pass through).
fn readers_beyond_broker(path: &Path, m: &std::fs::Metadata, broker: Option<&User>, traverse: bool) -> Option<String> {
    let others = if traverse { 0o006 } else { 0o007 };
    if m.mode() & others != 0 {
        return Some("everyone may use it".into());
    }
    if paths::has_acl(path) {
        return Some(format!(
            "an ACL grants more than the mode shows (getfacl {})",
            path.display()
        ));
    }
    // A directory the broker owns is no threat to the broker's files: the
    // broker holds every secret already.
    if let Some(why) = paths::untrusted_directory(path, broker.map(|b| b.uid.as_raw())) {
        return Some(why);
    }
    let Some(broker) = broker else {
        // Nobody to compare with: then root alone may own it and its group.
        if m.uid() != 0 {
            return Some(format!("owned by uid {}, and the broker's user is unknown", m.uid()));
        }
        if m.mode() & 0o070 != 0 && m.gid() != 0 {
            return Some(format!(
                "group {} may use it, and the broker's user is unknown",
                name_of_group(m.gid())
            ));
        }
        return None;
    };
    let (buid, bgid) = (broker.uid.as_raw(), broker.gid.as_raw());
    if m.mode() & 0o070 != 0 && m.gid() != bgid && m.gid() != 0 {
        return Some(format!("group {} may use it", name_of_group(m.gid())));
    }
    if m.uid() != buid && m.uid() != 0 {
        return Some(format!("its owner is neither root nor the broker ({})", broker.name));
    }
    if m.uid() == 0 && buid != 0 && !(m.gid() == bgid && m.mode() & 0o040 != 0) {
        return Some(format!("the broker ({}) cannot read it", broker.name));
    }
    None
}

fn config_file(path: &Path) -> Vec<Finding> {
    let mut out = vec![config_writers(path)];
    // A key written into the config itself is only as private as the
    // config's mode, which is usually wider than the secrets file's.
    let inline = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .map(|v| oxibot_config::config::inline_secrets(&v))
        .unwrap_or_default();
    if !inline.is_empty() {
        let check = format!("{} holds no credential", path.display());
        let fix = "oxibotctl config import moves them into the secrets file";
        out.push(match std::fs::metadata(path) {
            Ok(m) if m.mode() & 0o004 != 0 => Finding::new(
                "files",
                check,
                Level::Fail,
                format!("{} holds {} and everyone may read it", mode(&m), inline.join(", ")),
            )
            .fix(format!("{fix}; then rotate them, they may have been read")),
            _ => Finding::new("files", check, Level::Warn, format!("it holds {}", inline.join(", "))).fix(fix),
        });
    }
    out
}

fn config_writers(path: &Path) -> Finding {
    let check = format!("{} can be changed by root alone", path.display());
    let fix = format!("chown root:oxibot {p}; chmod 0640 {p}", p = path.display());
    match std::fs::metadata(path) {
        Ok(m) if m.mode() & 0o022 != 0 || m.uid() != 0 => Finding::new("files", check, Level::Fail, mode(&m))
            .fix(format!("whoever can write it decides what the broker does: {fix}")),
        Ok(m) => match paths::untrusted_directory(path, None) {
            Some(why) => Finding::new("files", check, Level::Fail, why)
                .fix("keep it in a directory only root can change (/etc/oxibot)"),
            None => Finding::new("files", check, Level::Ok, mode(&m)),
        },
        Err(e) => Finding::new("files", check, Level::Fail, e.to_string()),
    }
}

fn secrets_file(path: &Path, broker: Option<&User>) -> Finding {
    let check = format!("{} is readable by the broker alone", path.display());
    let fix = format!(
        "chown root:oxibot {p}; chmod 0640 {p}; setfacl -b {p}; keep it in /etc/oxibot (root's)",
        p = path.display()
    );
    let m = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Finding::new("files", check, Level::Warn, "missing: no key is configured")
                .fix("echo -n KEY | oxibotctl secrets set providers.openrouter.apiKey")
        }
        Err(e) => return Finding::new("files", check, Level::Fail, e.to_string()),
    };
    if !m.file_type().is_file() {
        return Finding::new("files", check, Level::Fail, "not a regular file (a link?)").fix(fix);
    }
    match readers_beyond_broker(path, &m, broker, false) {
        Some(why) => Finding::new("files", check, Level::Fail, format!("{}: {why}", mode(&m))).fix(fix),
        None => Finding::new("files", check, Level::Ok, mode(&m)),
    }
}

/// The state directory (others may pass through it to the workspace, not
/// look inside) and the database files in it.
fn state_dir(layout: &Layout, broker: Option<&User>) -> Vec<Finding> {
    let path = layout.state_dir.as_path();
    let check = format!("{} and its database are the broker's alone", path.display());
    let m = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            return vec![Finding::new("files", check, Level::Fail, e.to_string())
                .fix("systemd-tmpfiles --create /usr/lib/tmpfiles.d/oxibot.conf")]
        }
    };
    let mut problems = Vec::new();
    if let Some(why) = readers_beyond_broker(path, &m, broker, true) {
        // Root owning the directory is fine (the broker owns the files).
        if !why.starts_with("the broker") {
            problems.push(format!("{}: {}", path.display(), why));
        }
    }
    for name in ["oxibot.db", "oxibot.db-wal", "oxibot.db-shm"] {
        let file = path.join(name);
        if let Ok(fm) = std::fs::symlink_metadata(&file) {
            if let Some(why) = readers_beyond_broker(&file, &fm, broker, false) {
                problems.push(format!("{name} {}: {why}", mode(&fm)));
            }
        }
    }
    if problems.is_empty() {
        vec![Finding::new("files", check, Level::Ok, mode(&m))]
    } else {
        vec![
            // Not `chown -R`: the workspace below it belongs to the jail's
            // user, and handing it to the broker's would let every command
            // fail, or (unprivileged) give the jail the broker's files.
            Finding::new("files", check, Level::Fail, problems.join("; ")).fix(format!(
                "it holds every conversation: chown oxibot:oxibot {p} {p}/oxibot.db*; chmod 0751 {p}; \
                 chmod 0600 {p}/oxibot.db* (leave the workspace {ws} to {tool})",
                p = path.display(),
                ws = layout.workspace().display(),
                tool = layout.users.tool,
            )),
        ]
    }
}

fn users(layout: &Layout) -> Vec<Finding> {
    let fix = "systemd-sysusers /usr/lib/sysusers.d/oxibot.conf (the package does this)";
    let mut out = Vec::new();
    let mut wanted = vec!["oxibot".to_string(), layout.users.tool.clone()];
    // The egress daemon runs as its own user under systemd (its unit) and
    // under a root broker when commands may reach the network.
    if !layout.supervise || !layout.tools.exec.allowed_hosts.is_empty() {
        wanted.push(layout.users.egress.clone());
    }
    let channel_users: Vec<(String, String)> = layout
        .enabled_channels()
        .into_iter()
        .map(|c| {
            let u = layout.users.channel_user(&c);
            (c, u)
        })
        .collect();
    wanted.extend(channel_users.iter().map(|(_, u)| u.clone()));
    for name in wanted {
        let found = User::from_name(&name).ok().flatten();
        out.push(match found {
            Some(u) if u.uid.is_root() => {
                Finding::new("users", format!("user {name} exists"), Level::Fail, "it is root")
                    .fix("give each daemon an unprivileged user of its own")
            }
            Some(u) => Finding::new(
                "users",
                format!("user {name} exists"),
                Level::Ok,
                format!("uid {}", u.uid),
            ),
            None => Finding::new("users", format!("user {name} exists"), Level::Fail, "missing").fix(fix),
        });
    }
    for group in ["oxibot-admin", "oxibot-chan"] {
        let found = Group::from_name(group).ok().flatten().is_some();
        let level = if found { Level::Ok } else { Level::Fail };
        out.push(
            Finding::new(
                "users",
                format!("group {group} exists"),
                level,
                if found { "yes" } else { "missing" },
            )
            .fix(fix),
        );
    }
    for (i, (a, ua)) in channel_users.iter().enumerate() {
        if let Some((b, _)) = channel_users[i + 1..].iter().find(|(_, ub)| ub == ua) {
            out.push(
                Finding::new(
                    "users",
                    "each channel has a user of its own",
                    Level::Fail,
                    format!("{a} and {b} share {ua}"),
                )
                .fix("remove users.channels entries that name the same user twice"),
            );
        }
    }
    out
}

fn sockets(layout: &Layout) -> Vec<Finding> {
    let mut wanted = vec![("ctl.sock", "oxibot-admin")];
    if !layout.supervise {
        wanted.push(("channel.sock", "oxibot-chan"));
        wanted.push(("tool.sock", layout.users.tool.as_str()));
        wanted.push(("egress.sock", layout.users.egress.as_str()));
        wanted.push(("egress-door.sock", layout.users.tool.as_str()));
    }
    let mut out = Vec::new();
    for (name, group) in wanted {
        let path = layout.runtime_dir.join(name);
        let check = format!("{} is closed to others", path.display());
        let finding = match std::fs::symlink_metadata(&path) {
            Ok(m) if !m.file_type().is_socket() => Finding::new("sockets", check, Level::Fail, "not a socket"),
            Ok(m) if m.mode() & 0o007 != 0 => Finding::new("sockets", check, Level::Fail, mode(&m))
                .fix(format!("anyone may connect: chmod 0660 {}", path.display())),
            Ok(m)
                if !layout.supervise
                    && Group::from_gid(m.gid().into())
                        .ok()
                        .flatten()
                        .is_none_or(|g| g.name != group) =>
            {
                Finding::new("sockets", check, Level::Fail, mode(&m)).fix(format!(
                    "its group must be {group}: systemctl restart oxibot-{}",
                    name.replace(".sock", ".socket")
                ))
            }
            Ok(m) => Finding::new("sockets", check, Level::Ok, mode(&m)),
            Err(e) => Finding::new("sockets", check, Level::Fail, e.to_string())
                .fix("systemctl start oxibot.target (or start the broker)"),
        };
        out.push(finding);
    }
    out
}

/// The uid a process runs as (from /proc; None when hidden from us).
pub fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|u| u.parse().ok())
}

pub fn broker_user(uid: Option<u32>) -> Finding {
    let check = "the broker does not run as root";
    match uid {
        Some(0) => Finding::new("broker", check, Level::Fail, "uid 0").fix(
            "it holds every secret and parses what channels send: run it from the systemd units (User=oxibot), \
             or as an ordinary user",
        ),
        Some(u) => Finding::new("broker", check, Level::Ok, format!("uid {u}")),
        None => Finding::new("broker", check, Level::Skip, "its /proc entry is hidden from this user"),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn level_of(findings: &[Finding], needle: &str) -> Level {
        findings
            .iter()
            .find(|f| f.check.contains(needle))
            .map(|f| f.level)
            .unwrap_or_else(|| panic!("no check {needle}: {findings:?}"))
    }

    #[test]
    fn findings_for_open_files_and_risky_settings() {
        let d = tempfile::tempdir().unwrap();
        let secrets = d.path().join("secrets.json");
        std::fs::write(&secrets, "{}").unwrap();
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o644)).unwrap();
        let state = d.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
        let config = d.path().join("config.json");
        let text = serde_json::json!({
            "supervise": true, "secretsFile": secrets, "stateDir": state, "runtimeDir": d.path(),
            "agents": {"defaults": {"model": "m"}},
            "channels": {
                "telegram": {"enabled": true, "allowedUsers": ["*"]},
                "discord": {"enabled": true, "allowedUsers": []},
                "slack": {"enabled": true, "allowedUsers": ["U1"]},
                "email": {"enabled": true, "allowedUsers": ["a@b.c"]}
            },
            "health": {"enabled": true, "host": "0.0.0.0"}
        });
        std::fs::write(&config, text.to_string()).unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        let f = checks(&config, Some(nix::unistd::getuid().as_raw()));
        assert_eq!(level_of(&f, "secrets.json is readable"), Level::Fail);
        assert_eq!(level_of(&f, "telegram: who may talk"), Level::Warn);
        assert_eq!(level_of(&f, "discord: who may talk"), Level::Warn);
        assert_eq!(level_of(&f, "slack: who may talk"), Level::Ok);
        assert_eq!(level_of(&f, "email: senders are verified"), Level::Fail);
        assert_eq!(level_of(&f, "health endpoint"), Level::Fail);
        assert_eq!(level_of(&f, "ctl.sock is closed"), Level::Fail, "no socket there");
        assert!(
            f.iter().filter(|x| x.level == Level::Fail).all(|x| !x.fix.is_empty()),
            "{f:?}"
        );
        // Fixed, the same checks pass.
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = serde_json::json!({
            "supervise": true, "secretsFile": secrets, "stateDir": state, "runtimeDir": d.path(),
            "agents": {"defaults": {"model": "m"}},
            "channels": {"email": {"enabled": true, "allowedUsers": ["a@b.c"], "authservId": "mx.example.org"}},
            "health": {"enabled": true}
        });
        std::fs::write(&config, text.to_string()).unwrap();
        let f = checks(&config, Some(nix::unistd::getuid().as_raw()));
        assert_eq!(level_of(&f, "secrets.json is readable"), Level::Ok);
        assert_eq!(level_of(&f, "email: senders are verified"), Level::Ok);
        assert_eq!(level_of(&f, "health endpoint"), Level::Ok);
    }

    #[test]
    fn a_secret_readable_by_a_foreign_group_or_from_an_open_directory_fails() {
        let me = User::from_uid(nix::unistd::getuid()).unwrap().unwrap();
        let d = tempfile::tempdir().unwrap();
        let secrets = d.path().join("secrets.json");
        std::fs::write(&secrets, "{}").unwrap();
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(secrets_file(&secrets, Some(&me)).level, Level::Ok);
        if me.uid.is_root() {
            // Owned by the broker (here: root), readable by another group.
            nix::unistd::chown(&secrets, None, Some(nix::unistd::Gid::from_raw(65534))).unwrap();
            std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o640)).unwrap();
            let f = secrets_file(&secrets, Some(&me));
            assert_eq!(f.level, Level::Fail, "{f:?}");
            assert!(f.seen.contains("may use it"), "{f:?}");
            nix::unistd::chown(&secrets, None, Some(me.gid)).unwrap();
        }
        // The directory above it open to everybody: whoever can write there
        // can swap the file.
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let f = secrets_file(&secrets, Some(&me));
        assert_eq!(f.level, Level::Fail, "{f:?}");
        assert!(f.seen.contains("can be changed by someone other than root"), "{f:?}");
    }

    #[test]
    fn a_key_in_a_readable_config_fails() {
        let d = tempfile::tempdir().unwrap();
        let config = d.path().join("config.json");
        std::fs::write(&config, r#"{"providers": {"openai": {"apiKey": "sk-inline-123456"}}}"#).unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        let f = config_file(&config);
        let inline = f.iter().find(|f| f.check.contains("holds no credential")).unwrap();
        assert_eq!(inline.level, Level::Fail, "{f:?}");
        assert!(inline.seen.contains("providers.openai.apiKey"), "{f:?}");
        assert!(!inline.seen.contains("sk-inline"), "never the value: {f:?}");
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();
        let f = config_file(&config);
        let inline = f.iter().find(|f| f.check.contains("holds no credential")).unwrap();
        assert_eq!(inline.level, Level::Warn, "{f:?}");
        // Header values a gateway wants are credentials as well.
        std::fs::write(
            &config,
            r#"{"providers": {"openai": {"extraHeaders": {"x-api-key": "gw-123456"}}}}"#,
        )
        .unwrap();
        let f = config_file(&config);
        assert!(
            f.iter()
                .any(|f| f.check.contains("holds no credential") && f.seen.contains("extraHeaders")),
            "{f:?}"
        );
        std::fs::write(&config, "{}").unwrap();
        assert_eq!(config_file(&config).len(), 1);
    }

    /// With no broker user to compare with (no `oxibot` user, broker not
    /// running), a secrets file owned or group-readable by someone else is
    /// not called fine.
    #[test]
    fn an_unknown_broker_user_does_not_make_a_foreign_file_fine() {
        if !nix::unistd::getuid().is_root() {
            return; // needs chown; CI runs as root
        }
        let d = tempfile::tempdir().unwrap();
        let secrets = d.path().join("secrets.json");
        std::fs::write(&secrets, "{}").unwrap();
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(secrets_file(&secrets, None).level, Level::Ok, "root:root 0640");
        nix::unistd::chown(&secrets, None, Some(nix::unistd::Gid::from_raw(65534))).unwrap();
        let f = secrets_file(&secrets, None);
        assert_eq!(f.level, Level::Fail, "{f:?}");
        nix::unistd::chown(
            &secrets,
            Some(nix::unistd::Uid::from_raw(65534)),
            Some(nix::unistd::Gid::from_raw(0)),
        )
        .unwrap();
        let f = secrets_file(&secrets, None);
        assert_eq!(f.level, Level::Fail, "{f:?}");
        assert!(f.seen.contains("uid 65534"), "{f:?}");
    }

    #[test]
    fn a_state_directory_is_judged_by_who_owns_it() {
        if !nix::unistd::getuid().is_root() {
            return; // needs chown; CI runs as root
        }
        let me = User::from_uid(nix::unistd::getuid()).unwrap().unwrap();
        let nobody = User::from_uid(65534.into()).unwrap().unwrap();
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::write(state.join("oxibot.db"), "").unwrap();
        for p in [&state, &state.join("oxibot.db")] {
            nix::unistd::chown(p, Some(nobody.uid), Some(nobody.gid)).unwrap();
        }
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o751)).unwrap();
        std::fs::set_permissions(state.join("oxibot.db"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let layout: Layout = serde_json::from_value(serde_json::json!({
            "stateDir": state,
            "agents": {"defaults": {"workspace": state.join("workspace")}},
            "users": {"tool": "oxibot-tool"}
        }))
        .unwrap();
        // The broker's own directory: fine.
        let f = state_dir(&layout, Some(&nobody));
        assert!(f.iter().all(|f| f.level == Level::Ok), "{f:?}");
        // Someone else's directory holding the broker's database: they
        // could swap it.
        let f = state_dir(&layout, Some(&me));
        assert!(f.iter().any(|f| f.level == Level::Fail), "{f:?}");
        // The fix names each path's owner: never a `chown -R` that would
        // hand the jail's workspace to the broker's user.
        let fix = &f.iter().find(|f| f.level == Level::Fail).unwrap().fix;
        assert!(!fix.contains("chown -R"), "{fix}");
        assert!(
            fix.contains("leave the workspace") && fix.contains("oxibot-tool"),
            "{fix}"
        );
    }

    #[test]
    fn the_running_health_endpoint_is_judged_by_where_it_listens() {
        use oxibot_proto::messages::HEALTH_LISTENING_NOTE as N;
        let judged = |note: String| super::super::health_as_running(&[note]).map(|f| f.level);
        assert_eq!(judged(format!("{N}127.0.0.1:18790")), Some(Level::Ok));
        assert_eq!(judged(format!("{N}0.0.0.0:18790")), Some(Level::Fail));
        assert_eq!(judged("something else".into()), None);
    }

    #[test]
    fn the_brokers_user_is_read_from_proc() {
        let me = nix::unistd::getuid().as_raw();
        assert_eq!(uid_of(std::process::id()), Some(me));
        assert_eq!(broker_user(Some(0)).level, Level::Fail);
        assert_eq!(broker_user(Some(995)).level, Level::Ok);
    }
}
