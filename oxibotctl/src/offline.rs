//! The commands that work on the files, with or without a running broker:
//! checking and importing configurations, the secrets file, and enabling
//! or disabling a channel.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Command;

use oxibot_config::import::{import, Destination};
use oxibot_config::layout::Layout;
use oxibot_config::secrets_file;
use oxibot_proto::messages::CtlRequest;
use serde_json::json;

use crate::client;
use crate::show::{emit, shown};

/// `oxibot-broker` next to this program (both ship in /usr/bin, and in a
/// build tree both are in target/…), else from PATH.
fn broker_program() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|me| me.parent().map(|d| d.join("oxibot-broker")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("oxibot-broker"))
}

/// The broker decides what it accepts, so the check is the broker's own:
/// `oxibot-broker --check` loads the files and builds every client.
pub fn config_check(config: &Path, json: bool) -> Result<crate::Outcome, String> {
    let program = broker_program();
    let mut command = Command::new(&program);
    command.arg("--check").arg("--config").arg(config);
    if json {
        command.arg("--json");
    }
    let status = command
        .status()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    Ok(if status.success() {
        crate::Outcome::Done
    } else {
        // The broker has said why on stderr (or as JSON on stdout).
        crate::Outcome::Failed
    })
}

pub fn config_import(
    src: &Path,
    config_out: &Path,
    secrets_out: &Path,
    force: bool,
    broker_user: &str,
    json: bool,
) -> Result<(), String> {
    let to = Destination {
        config: config_out,
        secrets: secrets_out,
        force,
        broker_user: Some(broker_user),
    };
    let s = import(src, &to)?;
    if json {
        println!(
            "{}",
            json!({"config": config_out, "secrets": secrets_out, "moved": s.moved, "warnings": s.warnings,
                   "cronJobs": s.cron_jobs.as_ref().map(|(n, path)| json!({"count": n, "file": path}))})
        );
        return Ok(());
    }
    // Key names and warnings quote the imported file: shown escaped.
    println!("wrote {} and {}", config_out.display(), secrets_out.display());
    for k in &s.moved {
        println!("  moved {} to the secrets file", shown(k));
    }
    if let Some((n, path)) = &s.cron_jobs {
        println!(
            "  {n} scheduled job(s) converted into {}; the broker adds them at its next start",
            path.display()
        );
    }
    for w in &s.warnings {
        println!("warning: {}", shown(w));
    }
    Ok(())
}

pub fn secrets_list(config: &Path, json: bool) -> Result<(), String> {
    let path = secrets_file::locate(config)?;
    let names = secrets_file::names(&path)?;
    emit(json, json!({"file": path, "names": names}), || names.join("\n"));
    Ok(())
}

/// Sets one secret from standard input (the first line), then asks the
/// broker to reload. The value never appears in argv or the environment.
pub fn secrets_set(socket: &Path, config: &Path, name: &str, json: bool) -> Result<(), String> {
    is_a_secret(name)?;
    let path = secrets_file::locate(config)?;
    let mut value = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut value)
        .map_err(|e| format!("cannot read the value from standard input: {e}"))?;
    let value = zeroize::Zeroizing::new(value.trim_end_matches(['\n', '\r']).to_string());
    secrets_file::set(&path, name, &value)?;
    let reloaded = client::online(socket, async |conn| client::done(conn, CtlRequest::Reload).await);
    let message = match &reloaded {
        Ok(m) => format!("{name} set in {}; {m}", path.display()),
        Err(e) => format!(
            "{name} set in {}; the broker did not reload ({e}): it uses the new value from its next start or reload",
            path.display()
        ),
    };
    emit(
        json,
        json!({"ok": true, "reloaded": reloaded.is_ok(), "message": message}),
        || shown(&message),
    );
    Ok(())
}

/// Whether systemd runs this machine and the channel units are installed.
fn under_systemd() -> bool {
    Path::new("/run/systemd/system").is_dir()
        && ["/etc/systemd/system", "/usr/lib/systemd/system"]
            .iter()
            .any(|d| Path::new(d).join("oxibot-channeld@.service").exists())
}

fn systemctl(args: &[&str]) -> Result<(), String> {
    let status = Command::new("systemctl")
        .args(args)
        .status()
        .map_err(|e| format!("cannot run systemctl: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("systemctl {} failed ({status})", args.join(" ")))
    }
}

/// Sets `channels.NAME.enabled`, then starts or stops the daemon. Which
/// channels run is fixed at the broker's start (it maps each channel's uid
/// then), so the broker restarts too; conversations survive it (they are
/// in the state database, and pending messages are resumed).
pub fn channel_enable(config: &Path, channel: &str, enable: bool, json: bool) -> Result<(), String> {
    let layout = Layout::read(config)?;
    if !layout.channels.contains_key(channel) {
        return Err(format!(
            "there is no channels.{channel} section in {}: add the channel's settings first (see the README's Channels section)",
            config.display()
        ));
    }
    let was = layout.enabled_channels().iter().any(|c| c == channel);
    if was != enable {
        secrets_file::set_value(config, &format!("channels.{channel}.enabled"), json!(enable))?;
    }
    let unit = format!("oxibot-channeld@{channel}.service");
    let message = if under_systemd() {
        if enable {
            systemctl(&["enable", "--now", &unit])?;
        } else {
            systemctl(&["disable", "--now", &unit])?;
        }
        systemctl(&["restart", "oxibot-broker.service"])?;
        format!(
            "channel {channel} {}; the broker restarted to take it {}",
            if enable {
                "enabled and started"
            } else {
                "disabled and stopped"
            },
            if enable { "on" } else { "off" }
        )
    } else {
        format!(
            "channels.{channel}.enabled is now {enable} in {}; restart the broker to {} its daemon",
            config.display(),
            if enable { "start" } else { "stop" }
        )
    };
    emit(json, json!({"ok": true, "message": message}), || message.clone());
    Ok(())
}

/// Only a credential the configuration has a place for is set: a typo
/// (`secrets set foo`, `providers.openai.apikey` is fine: keys compare as
/// the environment writes them) would sit in the file unused.
fn is_a_secret(name: &str) -> Result<(), String> {
    use oxibot_config::config::{credential_at, Credential};
    let parts: Vec<&str> = name.split('.').collect();
    match credential_at(&parts) {
        Some(Credential::Value) => Ok(()),
        Some(Credential::Object) => Err(format!(
            "{name} holds several values: set one of them ({name}.NAME, e.g. {name}.Authorization)"
        )),
        Some(Credential::UnknownChannel) => Err(format!(
            "{name}: channel {} is not one OxiBot has a daemon for (telegram, discord, slack, whatsapp, email)",
            parts.get(1).copied().unwrap_or_default()
        )),
        None => Err(format!(
            "{name} is not a secret of the configuration. Secrets are: providers.NAME.apiKey, \
             providers.NAME.extraHeaders.HEADER, channels.telegram.token, channels.discord.token, \
             channels.slack.botToken / appToken, channels.whatsapp.bridgeToken, \
             channels.email.imapPassword / smtpPassword, tools.web.search.apiKey, \
             tools.exec.credentials.NAME.secret, tools.mcpServers.NAME.env.VAR / headers.HEADER"
        )),
    }
}

#[cfg(test)]
mod secret_names {
    use super::is_a_secret;

    #[test]
    fn only_a_secret_of_the_configuration_is_set() {
        assert!(is_a_secret("providers.openai.apiKey").is_ok());
        assert!(is_a_secret("channels.telegram.token").is_ok());
        assert!(is_a_secret("tools.mcpServers.github.env.GITHUB_TOKEN").is_ok());
        let e = is_a_secret("foo").unwrap_err();
        assert!(e.contains("not a secret of the configuration"), "{e}");
        assert!(is_a_secret("channels.telegram.allowedUsers").is_err());
        assert!(is_a_secret("providers.openai.extraHeaders")
            .unwrap_err()
            .contains("several values"));
        assert!(is_a_secret("channels.feishu.appSecret")
            .unwrap_err()
            .contains("not one OxiBot has a daemon for"));
    }
}
