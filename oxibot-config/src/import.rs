//! `oxibotctl config import`: splits an OxiBot or nanobot single-file
//! `config.json` into a non-secret config and a 0600 secrets file owned by
//! the broker's user, and says what behaves differently here:
//!
//! - an empty `allowedUsers` admits nobody (there, an empty `allowFrom`
//!   admitted everybody);
//! - a channel runs only with `"enabled": true`;
//! - `allowFrom` becomes `allowedUsers`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde_json::{Map, Value};

use crate::config::{credential_at, looks_like_credential, Credential};

#[derive(Debug)]
pub struct ImportSummary {
    /// Key paths moved to the secrets file (never their values).
    pub moved: Vec<String>,
    /// Each behaviour change that applies to this config, in words.
    pub warnings: Vec<String>,
    /// Scheduled jobs found next to it (cron/jobs.json) and where their
    /// converted list was written.
    pub cron_jobs: Option<(usize, std::path::PathBuf)>,
}

/// Where the files go and who owns them.
pub struct Destination<'a> {
    pub config: &'a Path,
    pub secrets: &'a Path,
    /// Overwrite existing files.
    pub force: bool,
    /// The broker's user: owns the secrets file (0600); the config becomes
    /// root:<its group> 0640. Only when run as root; None keeps the caller.
    pub broker_user: Option<&'a str>,
}

pub fn import(src: &Path, to: &Destination<'_>) -> Result<ImportSummary, String> {
    let text = std::fs::read_to_string(src).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
    let mut config: Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not valid JSON: {e}", src.display()))?;
    if !config.is_object() {
        return Err(format!("{}: the top level must be a JSON object", src.display()));
    }
    let mut secrets = Value::Object(Map::new());
    let mut moved = Vec::new();
    let mut warnings = leave_out_unknown_channels(&mut config);
    split(&mut config, &mut secrets, &mut Vec::new(), &mut moved);
    warnings.extend(migrate_channels(&mut config));
    warnings.extend(mcp_servers(&config));
    if let Value::Object(map) = &mut config {
        map.insert("secretsFile".into(), Value::String(to.secrets.display().to_string()));
    }
    // OxiBot keeps its scheduled jobs in cron/jobs.json beside the config.
    let jobs_file = src.parent().map(|d| d.join("cron").join("jobs.json"));
    let jobs = match jobs_file.filter(|f| f.is_file()) {
        Some(f) => {
            let text = std::fs::read_to_string(&f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
            let (jobs, job_warnings) = crate::cron_import::convert(&text)?;
            warnings.extend(job_warnings);
            let out = to.config.with_file_name("cron-jobs.json");
            if let Value::Object(map) = &mut config {
                let cron = map.entry("cron").or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(c) = cron {
                    c.insert("importFile".into(), Value::String(out.display().to_string()));
                }
            }
            Some((jobs, out))
        }
        None => None,
    };
    let mut outputs = vec![to.config, to.secrets];
    if let Some((_, out)) = &jobs {
        outputs.push(out);
    }
    for out in outputs {
        if out.exists() && !to.force {
            return Err(format!("{} exists; pass --force to overwrite it", out.display()));
        }
    }
    let owner = match to.broker_user {
        Some(name) if nix::unistd::geteuid().is_root() => match nix::unistd::User::from_name(name) {
            Ok(Some(u)) => Some((u.uid, u.gid)),
            _ => {
                return Err(format!(
                    "user {name} (the broker's) does not exist; install the package first, \
                     or pass --broker-user with the user the broker runs as"
                ))
            }
        },
        _ => None,
    };
    let root = nix::unistd::Uid::from_raw(0);
    write(to.config, &config, 0o640, owner.map(|(_, gid)| (root, gid)))?;
    write(to.secrets, &secrets, 0o600, owner)?;
    let cron_jobs = match jobs {
        Some((jobs, out)) => {
            let list = serde_json::to_value(&jobs).map_err(|e| e.to_string())?;
            write(&out, &list, 0o640, owner.map(|(_, gid)| (root, gid)))?;
            Some((jobs.len(), out))
        }
        None => None,
    };
    Ok(ImportSummary {
        moved,
        warnings,
        cron_jobs,
    })
}

/// Rewrites each channel for this OxiBot's rules and describes each change.
/// Where each MCP server will run here, in words: a stdio server inside
/// the jail (where nanobot ran it on the host), an HTTP one from outside.
fn mcp_servers(config: &Value) -> Vec<String> {
    let Some(Value::Object(servers)) = config.pointer("/tools/mcpServers") else {
        return Vec::new();
    };
    let mut said: Vec<String> = servers
        .iter()
        .map(|(name, server)| match (server.get("command"), server.get("url")) {
            (Some(Value::String(command)), _) => {
                let hosts = server.get("allowedHosts").and_then(Value::as_array).map_or(0, Vec::len);
                let network = match hosts {
                    0 => "no network (add the hosts it calls to its allowedHosts)".to_string(),
                    n => format!("only the {n} host pattern(s) of its allowedHosts, through the egress door"),
                };
                format!(
                    "tools.mcpServers.{name} (`{command}`) will run inside the jail, not on the host: it sees /usr \
                     and /opt read-only and a state directory of its own, and reaches {network}"
                )
            }
            (_, Some(Value::String(url))) => format!(
                "tools.mcpServers.{name} ({}) is reached from outside the jail, by the broker, through the same \
                 guard as web_fetch (a private address only where tools.web.allowPrivate lists it)",
                url::Url::parse(url)
                    .ok()
                    .and_then(|u| u.host_str().map(String::from))
                    .unwrap_or_else(|| "its url".into())
            ),
            _ => format!("tools.mcpServers.{name} has neither a command nor a url; it will be refused"),
        })
        .collect();
    if !said.is_empty() {
        said.push("MCP servers are checked by this version but not yet started".into());
    }
    said
}

fn migrate_channels(config: &mut Value) -> Vec<String> {
    let mut warnings = Vec::new();
    let Some(Value::Object(channels)) = config.get_mut("channels") else {
        return warnings;
    };
    for (name, settings) in channels.iter_mut() {
        let Value::Object(s) = settings else { continue };
        if !s.contains_key("enabled") {
            warnings.push(format!(
                "channels.{name}: no \"enabled\" key. Here a channel runs only with \"enabled\": true; it stays off"
            ));
        }
        if let Some(from) = s.remove("allowFrom") {
            if s.contains_key("allowedUsers") {
                warnings.push(format!(
                    "channels.{name}: both allowFrom and allowedUsers; allowedUsers kept, allowFrom dropped"
                ));
            } else {
                warnings.push(format!("channels.{name}: allowFrom is now allowedUsers"));
                s.insert("allowedUsers".into(), from);
            }
        }
        let empty = s
            .get("allowedUsers")
            .is_none_or(|v| v.as_array().is_some_and(Vec::is_empty));
        let by_list = s
            .get("dmPolicy")
            .and_then(Value::as_str)
            .is_none_or(|p| p == "allowlist");
        if empty && by_list {
            s.entry("allowedUsers").or_insert_with(|| Value::Array(Vec::new()));
            warnings.push(format!(
                "channels.{name}: the allow-list is empty. In OxiBot and nanobot that admitted everybody; \
                 here it admits nobody. List the user ids in channels.{name}.allowedUsers, \
                 use dmPolicy \"pairing\", or [\"*\"] to admit everybody"
            ));
        }
    }
    warnings
}

/// Channels OxiBot has no daemon for (nanobot's feishu, dingtalk, …) are
/// not carried over: nothing would read them, and they may hold credentials.
fn leave_out_unknown_channels(config: &mut Value) -> Vec<String> {
    let Some(Value::Object(channels)) = config.get_mut("channels") else {
        return Vec::new();
    };
    let unknown: Vec<String> = channels
        .keys()
        .filter(|n| crate::config::platform(n).is_none())
        .cloned()
        .collect();
    unknown
        .into_iter()
        .map(|name| {
            channels.remove(&name);
            format!("channels.{name}: OxiBot has no such channel; left out (with any credentials in it)")
        })
        .collect()
}

/// Moves every non-empty credential from `config` to the same path in
/// `secrets`; empty credential strings are dropped from the config.
fn split(config: &mut Value, secrets: &mut Value, at: &mut Vec<String>, moved: &mut Vec<String>) {
    let Value::Object(map) = config else { return };
    let keys: Vec<String> = map.keys().cloned().collect();
    for k in keys {
        at.push(k.clone());
        let path = at.join(".");
        let where_: Vec<&str> = at.iter().map(String::as_str).collect();
        // A provider's extraHeaders carry credentials too (Authorization,
        // x-api-key): they move whole.
        // And a key named like one, wherever it is (an old config's
        // `botToken`, nanobot's `gateway.token`).
        let is_secret = match (credential_at(&where_), map.get(&k)) {
            (Some(Credential::Value), Some(v)) => v.is_string() || v.is_number(),
            (Some(Credential::Object), Some(v)) => v.is_object(),
            (_, Some(v)) => looks_like_credential(&k) && (v.is_string() || v.is_number()),
            _ => false,
        };
        if is_secret {
            if let Some(v) = map.remove(&k) {
                let empty = v.as_str().is_some_and(str::is_empty) || v.as_object().is_some_and(Map::is_empty);
                if !empty {
                    if let Value::Object(s) = secrets {
                        s.insert(k, v);
                    }
                    moved.push(path);
                }
            }
        } else if let Some(child) = map.get_mut(&k).filter(|c| c.is_object()) {
            let mut sub = Value::Object(Map::new());
            split(child, &mut sub, at, moved);
            if sub.as_object().is_some_and(|m| !m.is_empty()) {
                if let Value::Object(s) = secrets {
                    s.insert(k, sub);
                }
            }
        }
        at.pop();
    }
}

fn write(
    path: &Path,
    value: &Value,
    mode: u32,
    owner: Option<(nix::unistd::Uid, nix::unistd::Gid)>,
) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    // Write to a temporary file created with the final mode, then rename:
    // the secrets never exist in a file others could read, even briefly.
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&f, Some(uid.as_raw()), Some(gid.as_raw()))
            .map_err(|e| format!("cannot give {} to its owner: {e}", tmp.display()))?;
    }
    f.write_all(text.as_bytes())
        .and_then(|_| f.write_all(b"\n"))
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot move {} into place: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// An old config written to a fresh directory: (the directory, the old
    /// file, where the config and the secrets go).
    fn old_config(
        text: &str,
    ) -> (
        tempfile::TempDir,
        std::path::PathBuf,
        std::path::PathBuf,
        std::path::PathBuf,
    ) {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("old.json");
        std::fs::write(&src, text).unwrap();
        let (c, s) = (d.path().join("config.json"), d.path().join("secrets.json"));
        (d, src, c, s)
    }

    fn into<'a>(config: &'a Path, secrets: &'a Path) -> Destination<'a> {
        Destination {
            config,
            secrets,
            force: false,
            broker_user: None,
        }
    }

    /// The attack review of typed credentials: keys OxiBot does not read
    /// but named like credentials, anywhere, still move; a channel it does
    /// not have (in any spelling) is left out.
    #[test]
    fn credentials_under_keys_oxibot_does_not_know_still_move() {
        let (_d, src, c, s) = old_config(
            r#"{"agents":{"defaults":{"model":"anthropic/claude-sonnet-4"}},
                "channels":{"telegram":{"enabled":true,"botToken":"123:OLDNAME","allowedUsers":["42"]},
                            "Slack":{"token":"xoxp-CASE-1"},"email":{"password":"PW-EMAIL-2","imapPassword":31415926},
                            "feishu":{"appSecret":"FS-3"}},
                "gateway":{"token":"GW-4"},
                "tools":{"mcpServers":{"gh":{"env":{"token":"MCP-5"}}}}}"#,
        );
        let summary = import(&src, &into(&c, &s)).unwrap();
        let config = std::fs::read_to_string(&c).unwrap();
        let secrets = std::fs::read_to_string(&s).unwrap();
        for secret in ["123:OLDNAME", "PW-EMAIL-2", "31415926", "GW-4", "MCP-5"] {
            assert!(!config.contains(secret), "{secret} left in config: {config}");
            assert!(secrets.contains(secret), "{secret} missing from secrets");
        }
        for gone in ["xoxp-CASE-1", "FS-3"] {
            assert!(!config.contains(gone) && !secrets.contains(gone), "{gone} carried over");
        }
        assert!(
            summary.warnings.iter().any(|w| w.contains("channels.Slack")),
            "{:?}",
            summary.warnings
        );
    }

    #[test]
    fn splits_a_nanobot_config() {
        let (_d, src, c, s) = old_config(
            r#"{"agents":{"defaults":{"model":"anthropic/claude-sonnet-4"}},
                "channels":{"telegram":{"enabled":true,"token":"123:ABCDEF","allowedUsers":["42"]}},
                "tools":{"web":{"search":{"apiKey":"BSA-987654"}}},
                "providers":{"anthropic":{"apiKey":"sk-ant-XYZ12345","extraHeaders":{"x-gateway-key":"GW-5551234"}},"openai":{"apiKey":""}}}"#,
        );
        let to = into(&c, &s);
        let summary = import(&src, &to).unwrap();
        assert_eq!(summary.moved.len(), 4);
        let config = std::fs::read_to_string(&c).unwrap();
        let secrets = std::fs::read_to_string(&s).unwrap();
        for secret in ["sk-ant-XYZ12345", "123:ABCDEF", "BSA-987654", "GW-5551234"] {
            assert!(!config.contains(secret), "{secret} left in config");
            assert!(secrets.contains(secret), "{secret} missing from secrets");
        }
        assert!(config.contains("allowedUsers"));
        assert_eq!(std::fs::metadata(&s).unwrap().permissions().mode() & 0o777, 0o600);
        // The result loads, with the key in place.
        let (cfg, report) = crate::config::Config::load_with_env(&c, Vec::new()).unwrap();
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        assert_eq!(cfg.all_secrets().len(), 4);
        // A second import refuses to overwrite without --force.
        assert!(import(&src, &to).unwrap_err().contains("--force"));
    }

    #[test]
    fn mcp_servers_move_their_secrets_and_say_where_they_run() {
        let (_d, src, c, s) = old_config(
            r#"{"agents":{"defaults":{"model":"anthropic/claude-sonnet-4"}},
                "providers":{"anthropic":{"apiKey":"sk-ant-XYZ12345"}},
                "tools":{"mcpServers":{
                  "github":{"command":"npx","args":["-y","@modelcontextprotocol/server-github"],
                            "env":{"GITHUB_PERSONAL_ACCESS_TOKEN":"ghp_MCP111","WORKSPACE_ID":"ws-plain-222"},
                            "allowedHosts":["api.github.com"]},
                  "files":{"command":"uvx","args":["mcp-server-git"],"toolTimeout":20},
                  "remote":{"url":"https://mcp.example.com/mcp","headers":{"X-Team":"team-333"}}}}}"#,
        );
        let summary = import(&src, &into(&c, &s)).unwrap();
        let config = std::fs::read_to_string(&c).unwrap();
        let secrets = std::fs::read_to_string(&s).unwrap();
        // Every env and header value is a secret, whatever its name.
        for secret in ["ghp_MCP111", "ws-plain-222", "team-333"] {
            assert!(!config.contains(secret), "{secret} left in config: {config}");
            assert!(secrets.contains(secret), "{secret} missing from secrets");
        }
        let said = summary.warnings.join("\n");
        assert!(
            said.contains("tools.mcpServers.github (`npx`) will run inside the jail"),
            "{said}"
        );
        assert!(
            said.contains("only the 1 host pattern(s) of its allowedHosts"),
            "{said}"
        );
        assert!(
            said.contains("tools.mcpServers.files (`uvx`) will run inside the jail"),
            "{said}"
        );
        assert!(said.contains("no network"), "{said}");
        assert!(
            said.contains("tools.mcpServers.remote (mcp.example.com) is reached from outside the jail"),
            "{said}"
        );
        // The result loads, the values back in place and scrubbed.
        let (cfg, _) = crate::config::Config::load_with_env(&c, Vec::new()).unwrap();
        let github = &cfg.tools.mcp_servers["github"];
        assert_eq!(github.env["WORKSPACE_ID"].expose(), "ws-plain-222");
        assert_eq!(cfg.tools.mcp_servers["files"].tool_timeout, 20);
        let scrubbed: Vec<String> = cfg.all_secrets().iter().map(|s| s.expose().to_string()).collect();
        for secret in ["ghp_MCP111", "ws-plain-222", "team-333"] {
            assert!(scrubbed.iter().any(|s| s == secret), "{secret} not scrubbed");
        }
    }

    #[test]
    fn says_what_behaves_differently_and_maps_allow_from() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("old.json");
        std::fs::write(
            &src,
            r#"{"agents":{"defaults":{"model":"gpt-4o"}},
                "channels":{"telegram":{"enabled":true,"token":"1:A","allowFrom":["42"]},
                            "discord":{"enabled":true,"token":"x","allowFrom":[]},
                            "slack":{"botToken":"xoxb-1"}}}"#,
        )
        .unwrap();
        let (c, s) = (d.path().join("config.json"), d.path().join("secrets.json"));
        let to = Destination {
            config: &c,
            secrets: &s,
            force: false,
            broker_user: None,
        };
        let summary = import(&src, &to).unwrap();
        let all = summary.warnings.join("\n");
        assert!(
            all.contains("channels.telegram: allowFrom is now allowedUsers"),
            "{all}"
        );
        assert!(all.contains("channels.discord: the allow-list is empty"), "{all}");
        assert!(all.contains("channels.slack: no \"enabled\" key"), "{all}");
        assert!(all.contains("channels.slack: the allow-list is empty"), "{all}");
        assert!(!all.contains("channels.telegram: the allow-list"), "{all}");
        let config: Value = serde_json::from_str(&std::fs::read_to_string(&c).unwrap()).unwrap();
        assert_eq!(
            config["channels"]["telegram"]["allowedUsers"],
            serde_json::json!(["42"])
        );
        assert!(config["channels"]["telegram"].get("allowFrom").is_none());
        assert_eq!(config["channels"]["discord"]["allowedUsers"], serde_json::json!([]));
    }

    #[test]
    fn as_root_the_secrets_belong_to_the_brokers_user() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root to give files away");
            return;
        }
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("old.json");
        std::fs::write(
            &src,
            r#"{"agents":{"defaults":{"model":"m"}},"providers":{"openai":{"apiKey":"sk-1"}}}"#,
        )
        .unwrap();
        let (c, s) = (d.path().join("config.json"), d.path().join("secrets.json"));
        let to = Destination {
            config: &c,
            secrets: &s,
            force: false,
            broker_user: Some("nobody"),
        };
        import(&src, &to).unwrap();
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        let meta = std::fs::metadata(&s).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o777), (nobody.uid.as_raw(), 0o600));
        let meta = std::fs::metadata(&c).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o777),
            (0, nobody.gid.as_raw(), 0o640)
        );
        let missing = Destination {
            force: true,
            broker_user: Some("no-such-user-oxibot"),
            ..to
        };
        assert!(import(&src, &missing).unwrap_err().contains("does not exist"));
    }
}
