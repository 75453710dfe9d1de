//! Settings of the assistant's own abilities: web tools, the message tool,
//! scheduled jobs, the heartbeat, background subagents and the session's
//! memory budget. Every field has a default, so a config without them loads.

use serde::Deserialize;

use crate::secret::Secret;

/// `tools.web`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WebSettings {
    pub fetch: FetchSettings,
    pub search: SearchSettings,
    /// Private, loopback or metadata destinations `web_fetch` may reach
    /// anyway: host names (exact), addresses, or CIDR blocks
    /// ("192.168.1.0/24", "fd00::/8").
    pub allow_private: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FetchSettings {
    /// Bytes read from a response body at most; the rest is cut.
    pub max_bytes: u64,
    /// The whole fetch, redirects included.
    pub timeout_secs: u64,
    pub max_redirects: u32,
    /// Characters of readable text handed to the model at most.
    pub max_chars: usize,
}

impl Default for FetchSettings {
    fn default() -> Self {
        FetchSettings {
            max_bytes: 2 << 20,
            timeout_secs: 20,
            max_redirects: 5,
            max_chars: 40_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SearchSettings {
    /// "brave" (needs `apiKey`) or "searxng" (needs `baseUrl`); unset: Brave
    /// when a key is configured, else no search tool.
    pub provider: Option<String>,
    /// Brave Search's subscription token, from the secrets file.
    pub api_key: Option<Secret>,
    /// A SearXNG instance ("http://127.0.0.1:8888"), or another Brave API base.
    pub base_url: Option<String>,
    pub max_results: u32,
}

impl Default for SearchSettings {
    fn default() -> Self {
        SearchSettings {
            provider: None,
            api_key: None,
            base_url: None,
            max_results: 5,
        }
    }
}

/// `tools.message`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MessageSettings {
    /// Per chat, the other chats its turns (and its scheduled jobs) may
    /// write to with the `message` tool, all as "channel:chat_id":
    /// `{"telegram:111": ["telegram:555"]}`. A chat that is not listed may
    /// write only to itself. "console" names `oxibotctl agent` sessions
    /// without a chat.
    pub allowed_targets: AllowedTargets,
}

/// `tools.message.allowedTargets`: per chat. The earlier form, one list
/// for every chat, is read only to refuse it with the new shape: every
/// chat (and every page a turn read) could write to every listed target.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum AllowedTargets {
    PerChat(std::collections::BTreeMap<String, Vec<String>>),
    OneListForAll(Vec<String>),
}

impl Default for AllowedTargets {
    fn default() -> Self {
        AllowedTargets::PerChat(Default::default())
    }
}

impl AllowedTargets {
    /// Whether turns speaking for `from` ("channel:chat_id", or "console")
    /// may write to `to`.
    pub fn allows(&self, from: &str, to: &str) -> bool {
        match self {
            AllowedTargets::PerChat(map) => map.get(from).is_some_and(|targets| targets.iter().any(|t| t == to)),
            AllowedTargets::OneListForAll(_) => false,
        }
    }
}

/// `cron`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CronSettings {
    /// A run that came due while OxiBot was down: run it once on start
    /// (`once`) or drop it (`skip`). Never more than once either way.
    pub catch_up: CatchUp,
    /// IANA zone of jobs that name none ("Europe/Berlin").
    pub timezone: String,
    /// Jobs one chat may hold.
    pub max_jobs_per_chat: u32,
    /// The shortest time between two runs of a job (each run is a model
    /// call that costs money).
    pub min_interval_secs: u64,
    /// Jobs converted by `oxibotctl config import` from OxiBot's
    /// cron/jobs.json; each is added once, at the broker's start.
    pub import_file: Option<std::path::PathBuf>,
}

impl Default for CronSettings {
    fn default() -> Self {
        CronSettings {
            catch_up: CatchUp::Once,
            timezone: "UTC".into(),
            max_jobs_per_chat: 20,
            min_interval_secs: 60,
            import_file: None,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    #[default]
    Once,
    Skip,
}

/// `heartbeat`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HeartbeatSettings {
    pub enabled: bool,
    pub interval_secs: u64,
    /// Where a result goes (`HEARTBEAT_OK` goes nowhere).
    pub channel: Option<String>,
    pub chat_id: Option<String>,
}

impl Default for HeartbeatSettings {
    fn default() -> Self {
        HeartbeatSettings {
            enabled: false,
            interval_secs: 30 * 60,
            channel: None,
            chat_id: None,
        }
    }
}

/// `subagents`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubagentSettings {
    pub max_per_chat: u32,
    pub max_total: u32,
    pub max_iterations: u32,
    pub timeout_secs: u64,
}

impl Default for SubagentSettings {
    fn default() -> Self {
        SubagentSettings {
            max_per_chat: 2,
            max_total: 8,
            max_iterations: 15,
            timeout_secs: 600,
        }
    }
}
