//! What config.json alone says about an installation — directories, users,
//! channels, the jail and health settings — without the secrets file or the
//! environment. For `oxibotctl doctor` and `channels`, which a member of
//! `oxibot-admin` runs without the right to read any secret.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::config::{default_runtime_dir, default_secrets_file, default_state_dir, Health, Tools, Users};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Layout {
    #[serde(default = "default_runtime_dir")]
    pub runtime_dir: PathBuf,
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default = "default_secrets_file")]
    pub secrets_file: PathBuf,
    #[serde(default)]
    pub supervise: bool,
    #[serde(default)]
    pub users: Users,
    #[serde(default)]
    pub channels: BTreeMap<String, Value>,
    #[serde(default)]
    pub tools: Tools,
    #[serde(default)]
    pub health: Health,
    #[serde(default)]
    agents: LayoutAgents,
}

#[derive(Debug, Default, Deserialize)]
struct LayoutAgents {
    #[serde(default)]
    defaults: LayoutDefaults,
}

#[derive(Debug, Deserialize)]
struct LayoutDefaults {
    #[serde(default = "crate::config::default_workspace")]
    workspace: String,
}

impl Default for LayoutDefaults {
    fn default() -> Self {
        LayoutDefaults {
            workspace: crate::config::default_workspace(),
        }
    }
}

impl Layout {
    /// Reads and parses config.json; unknown keys are ignored here (the
    /// broker's own check reports them).
    pub fn read(path: &Path) -> Result<Layout, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The jail's workspace (`agents.defaults.workspace`).
    pub fn workspace(&self) -> PathBuf {
        crate::config::expand_home(&self.agents.defaults.workspace)
    }

    pub fn enabled_channels(&self) -> Vec<String> {
        self.channels
            .iter()
            .filter(|(_, v)| v.get("enabled").and_then(Value::as_bool).unwrap_or(false))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_without_the_secrets_file_and_fills_defaults() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config.json");
        std::fs::write(
            &p,
            r#"{"secretsFile": "/nonexistent/secrets.json", "agents": {"defaults": {"model": "m"}},
               "channels": {"telegram": {"enabled": true}, "discord": {"enabled": false}},
               "health": {"enabled": true}}"#,
        )
        .unwrap();
        let l = Layout::read(&p).unwrap();
        assert_eq!(l.runtime_dir, PathBuf::from("/run/oxibot"));
        assert_eq!(l.enabled_channels(), ["telegram"]);
        assert!(l.health.enabled && l.health.host.is_loopback() && l.health.port == 18790);
        assert_eq!(l.users.channel_user("telegram"), "oxibot-telegram");
    }
}
