//! Who may talk through a channel, as `channels.<name>` says it. Typed
//! here once: the broker's access decision and `oxibotctl doctor` read the
//! same fields with the same defaults, and a bad value stops the start with
//! its key and line (checked when the configuration loads).
//!
//! - `allowedUsers`: default-deny. `[]` admits nobody, `["*"]` everybody.
//!   Ids may be written as strings or numbers.
//! - `dmPolicy`: `"allowlist"` (default), `"pairing"` (an unknown user gets
//!   a one-time code that `oxibotctl pairing approve CODE` accepts), `"open"`.
//! - `groupPolicy`: `"mention"` (default: only messages that mention the
//!   bot), `"open"`, or `"allowlist"` of `groupAllowFrom` chat ids.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::config::SettingError;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Access {
    #[serde(default, deserialize_with = "ids")]
    pub allowed_users: Vec<String>,
    #[serde(default)]
    pub dm_policy: DmPolicy,
    #[serde(default)]
    pub group_policy: GroupPolicy,
    #[serde(default, deserialize_with = "ids")]
    pub group_allow_from: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DmPolicy {
    #[default]
    Allowlist,
    Pairing,
    Open,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupPolicy {
    #[default]
    Mention,
    Open,
    Allowlist,
}

impl DmPolicy {
    pub fn name(self) -> &'static str {
        match self {
            DmPolicy::Allowlist => "allowlist",
            DmPolicy::Pairing => "pairing",
            DmPolicy::Open => "open",
        }
    }
}

impl Access {
    /// A channel's access settings; the error names the key
    /// (`channels.<channel>.dmPolicy: unknown variant …`).
    pub fn of(channel: &str, settings: &Value) -> Result<Access, SettingError> {
        crate::config::read_channel_settings(channel, settings)
    }

    /// Whether anybody at all may talk in private (an open policy or `*`).
    pub fn open_to_everybody(&self) -> bool {
        self.dm_policy == DmPolicy::Open || self.allowed_users.iter().any(|u| u == "*")
    }
}

/// A list of ids, each a string or a number (Telegram's ids are numbers).
fn ids<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(serde_json::Number),
    }
    let list: Vec<Id> = Vec::deserialize(d)?;
    Ok(list
        .into_iter()
        .map(|id| match id {
            Id::Text(s) => s,
            Id::Number(n) => n.to_string(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_names_and_numbers() {
        let a = Access::of("t", &json!({"enabled": true, "token": "x"})).unwrap();
        assert_eq!(a, Access::default());
        assert_eq!(
            (a.dm_policy, a.group_policy),
            (DmPolicy::Allowlist, GroupPolicy::Mention)
        );
        let a = Access::of("t", &json!({"allowedUsers": [42, "bob"], "dmPolicy": "pairing"})).unwrap();
        assert_eq!(a.allowed_users, ["42", "bob"]);
        assert_eq!(a.dm_policy, DmPolicy::Pairing);
        assert!(Access::of("t", &json!({"allowedUsers": ["*"]}))
            .unwrap()
            .open_to_everybody());
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let e = Access::of("telegram", &json!({"dmPolicy": "everyone"})).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("channels.telegram.dmPolicy: unknown variant `everyone`"),
            "{e}"
        );
        let e = Access::of("slack", &json!({"allowedUsers": [true]})).unwrap_err();
        assert!(e.key.starts_with("channels.slack.allowedUsers"), "{e}");
        let e = Access::of("discord", &json!({"groupPolicy": 3})).unwrap_err();
        assert!(e.key.starts_with("channels.discord.groupPolicy"), "{e}");
    }
}
