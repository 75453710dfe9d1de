//! The configuration's schema: what `config.json` (and the secrets file laid
//! over it) may say. The serde types with their defaults and the meaning of
//! each key, the keys that hold credentials, and the queries the daemons
//! ask of a loaded `Config` (which provider serves a model, the workspace,
//! every secret, the enabled channels). Kept apart from `load.rs` so that
//! the format can be read without wading through how a file is read,
//! overridden from the environment and checked.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use crate::registry;
use crate::secret::Secret;

use super::credentials::Credential;

use crate::paths::expand_home;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    #[serde(default = "default_runtime_dir")]
    pub runtime_dir: PathBuf,
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default = "default_secrets_file")]
    pub secrets_file: PathBuf,
    /// Start toold and the channel daemons ourselves (dev, tests, small installs).
    #[serde(default)]
    pub supervise: bool,
    /// Where supervise mode finds `oxibot-toold` and `oxibot-channeld`;
    /// default: next to the broker's own executable.
    #[serde(default)]
    pub bin_dir: Option<PathBuf>,
    #[serde(default)]
    pub users: Users,
    pub agents: Agents,
    #[serde(default)]
    pub providers: BTreeMap<ProviderName, ProviderSettings>,
    /// Per-channel settings; credentials are split off before a channel
    /// daemon sees them (see `credentials::credential_at`).
    #[serde(default)]
    pub channels: BTreeMap<String, Value>,
    #[serde(default)]
    pub tools: Tools,
    /// Accepted for compatibility with OxiBot/nanobot configs.
    #[serde(default)]
    pub gateway: Value,
    #[serde(default)]
    pub transcription: Transcription,
    #[serde(default)]
    pub health: Health,
    #[serde(default)]
    pub cron: crate::abilities::CronSettings,
    #[serde(default)]
    pub heartbeat: crate::abilities::HeartbeatSettings,
    #[serde(default)]
    pub subagents: crate::abilities::SubagentSettings,
    /// What each chat may spend (see `crate::owner`).
    #[serde(default)]
    pub budgets: crate::owner::Budgets,
    /// Anything else: warned about, not fatal, so that nanobot/OxiBot
    /// configs with keys we do not use still load.
    #[serde(flatten)]
    pub unknown: BTreeMap<String, Value>,
    /// Every value of the secrets file and every credential the
    /// environment gave, whatever its key: redacted like the rest.
    #[serde(skip)]
    pub(crate) loaded_secrets: Vec<Secret>,
}

/// The Unix users of the daemons. Each channel has its own (so that, under
/// systemd, the broker knows a channel daemon by its uid, and one channel
/// daemon cannot signal or read another): `oxibot-<channel>` unless
/// `channels` names another.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Users {
    pub tool: String,
    /// The egress daemon's, when the broker runs as root.
    pub egress: String,
    pub channels: BTreeMap<String, String>,
    /// The single user all channels shared before each had its own.
    pub channel: Option<String>,
}

impl Default for Users {
    fn default() -> Self {
        Users {
            tool: "oxibot-tool".into(),
            egress: "oxibot-egress".into(),
            channels: BTreeMap::new(),
            channel: None,
        }
    }
}

impl Users {
    /// The user channel `name`'s daemon runs as.
    pub fn channel_user(&self, name: &str) -> String {
        self.channels
            .get(name)
            .cloned()
            .unwrap_or_else(|| format!("oxibot-{name}"))
    }
}

/// The optional HTTP endpoint for monitoring: `/healthz`, `/readyz`,
/// `/metrics`. Off unless enabled; loopback unless told otherwise (it has
/// no authentication, and the metrics name channels and providers).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Health {
    pub enabled: bool,
    pub host: std::net::IpAddr,
    pub port: u16,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            enabled: false,
            host: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            port: 18790,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Agents {
    pub defaults: AgentDefaults,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentDefaults {
    #[serde(default = "default_workspace")]
    pub workspace: String,
    pub model: String,
    /// Explicit provider; beats guessing from the model name.
    #[serde(default)]
    pub provider: Option<ProviderName>,
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    #[serde(default = "default_max_tool_iterations")]
    pub max_tool_iterations: u32,
    /// Tried in order when the primary model keeps failing.
    #[serde(default)]
    pub fallback_models: Vec<String>,
    /// Retries per model on 429/5xx/network errors.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// First backoff step; doubles each retry. `Retry-After` wins when sent.
    #[serde(default = "default_retry_base_delay_ms")]
    pub retry_base_delay_ms: u64,
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// The model can see images: photos users send go to it as images.
    /// Off, they are only saved into the workspace.
    #[serde(default)]
    pub vision: bool,
    /// Tokens (estimated) of conversation history sent with each request.
    /// Older turns are summarised into the session and their durable facts
    /// appended to memory/MEMORY.md; the raw turns stay in the database.
    #[serde(default = "default_history_budget_tokens")]
    pub history_budget_tokens: u32,
}

/// A provider name that must be one we know; checked while parsing so the
/// error carries the file's line number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProviderName(pub String);

impl<'de> Deserialize<'de> for ProviderName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        if registry::find(&name).is_none() {
            return Err(serde::de::Error::custom(format!(
                "unknown provider \"{name}\" (known: {})",
                registry::known_names()
            )));
        }
        Ok(ProviderName(name))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProviderSettings {
    /// Normally from the secrets file; accepted inline with a warning.
    pub api_key: Option<Secret>,
    pub api_base: Option<String>,
    pub extra_headers: BTreeMap<String, String>,
}

/// Speech to text for voice messages, through a provider's
/// OpenAI-compatible `POST /audio/transcriptions` (Groq, OpenAI, …), with
/// that provider's key.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Transcription {
    pub provider: Option<ProviderName>,
    /// e.g. "whisper-large-v3-turbo"; unset: voice messages are saved, not transcribed.
    pub model: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Tools {
    pub sandbox: SandboxMode,
    /// Debugging only: the jail's seccomp filter logs refused syscalls
    /// (kernel log) instead of refusing them. Warned about on every start.
    pub seccomp_log: bool,
    pub exec: ExecSettings,
    pub web: crate::abilities::WebSettings,
    pub message: crate::abilities::MessageSettings,
    /// OxiBot's flag; always true here (the jail enforces it), accepted for compatibility.
    pub restrict_to_workspace: Option<bool>,
    /// MCP servers, by name (see `crate::mcp`).
    pub mcp_servers: std::collections::BTreeMap<String, crate::mcp::McpServer>,
    /// Which commands and tools run without asking the owner (see `crate::owner`).
    pub approval: crate::owner::ApprovalSettings,
}

impl Tools {
    /// Whether anything in the jail may reach the network (and so the
    /// egress door opens): commands (`tools.exec.allowedHosts`) or a stdio
    /// MCP server (its own `allowedHosts`).
    pub fn network_wanted(&self) -> bool {
        !self.exec.allowed_hosts.is_empty()
            || self
                .mcp_servers
                .values()
                .any(|s| s.transport() == crate::mcp::Transport::Stdio && !s.allowed_hosts.is_empty())
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    #[default]
    On,
    Off,
}

impl SandboxMode {
    pub fn as_arg(self) -> &'static str {
        match self {
            SandboxMode::On => "on",
            SandboxMode::Off => "off",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExecSettings {
    /// Seconds; at most 600.
    pub timeout: u32,
    /// Output kept per command (head + tail), bytes.
    pub max_output_bytes: u32,
    /// Processes of the tool user at once, all commands together.
    pub max_processes: u32,
    /// Address space per command, MiB.
    pub max_memory_mb: u32,
    /// Largest file a command may write, MiB.
    pub max_file_size_mb: u32,
    /// Where commands may connect, through the egress door (see
    /// `oxibot_proto::settings::HostPattern`). Empty: no network.
    pub allowed_hosts: Vec<oxibot_proto::settings::HostPattern>,
    /// Headers the egress door sets on commands' requests to some hosts
    /// (an API token), so the token never enters the jail. The value is
    /// in the secrets file at `tools.exec.credentials.<name>.secret`.
    pub credentials: std::collections::BTreeMap<String, ExecCredential>,
    /// A PEM file of certificate authorities the door trusts, besides the
    /// system's, for the hosts it speaks TLS to (an internal CA; tests).
    pub upstream_ca_file: Option<PathBuf>,
}

/// `tools.exec.credentials.<name>`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecCredential {
    /// The hosts it is set for (each must also be in `allowedHosts`).
    pub hosts: Vec<oxibot_proto::settings::HostPattern>,
    /// The header set, replacing any the command sent.
    #[serde(default = "default_credential_header")]
    pub header: String,
    /// Written before the secret.
    #[serde(default = "default_credential_prefix")]
    pub prefix: String,
    /// From the secrets file.
    pub secret: Option<Secret>,
    /// Only commands run for these chats (`telegram:42`, or a session
    /// name) get it; unset: every chat.
    pub chats: Option<Vec<String>>,
    /// Whether commands of unattended turns (scheduled jobs, the
    /// heartbeat, background tasks) get it. Off unless set.
    #[serde(default)]
    pub background: bool,
    /// Environment variables set to a placeholder for commands that get
    /// the credential, for tools that want a token before they call
    /// (`gh` wants `GH_TOKEN`); a skill that requires one is offered.
    #[serde(default)]
    pub env: Vec<String>,
    /// Also over plain `http://`, to hosts whose every address is
    /// loopback (a local service without TLS). Off: only inside TLS whose
    /// certificate the door checked, so the secret never crosses a
    /// connection that another local program could be listening on.
    #[serde(default)]
    pub plain_http: bool,
}

fn default_credential_header() -> String {
    "Authorization".into()
}
fn default_credential_prefix() -> String {
    "Bearer ".into()
}

impl Default for ExecSettings {
    fn default() -> Self {
        ExecSettings {
            timeout: 60,
            max_output_bytes: 64 * 1024,
            max_processes: 256,
            max_memory_mb: 2048,
            max_file_size_mb: 256,
            allowed_hosts: Vec::new(),
            credentials: Default::default(),
            upstream_ca_file: None,
        }
    }
}

pub(crate) fn default_runtime_dir() -> PathBuf {
    "/run/oxibot".into()
}
pub(crate) fn default_state_dir() -> PathBuf {
    "/var/lib/oxibot".into()
}
pub(crate) fn default_secrets_file() -> PathBuf {
    "/etc/oxibot/secrets.json".into()
}
pub(crate) fn default_workspace() -> String {
    "/var/lib/oxibot/workspace".into()
}
fn default_max_tokens() -> u32 {
    8192
}
fn default_temperature() -> f64 {
    0.7
}
fn default_max_tool_iterations() -> u32 {
    20
}
fn default_history_budget_tokens() -> u32 {
    16_000
}
fn default_max_retries() -> u32 {
    3
}
fn default_retry_base_delay_ms() -> u64 {
    1000
}
fn default_request_timeout_secs() -> u64 {
    120
}

/// Why a model has no provider to ask.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnresolvedProvider {
    #[error(
        "cannot tell which provider serves model \"{0}\"; set agents.defaults.provider (one of: {known})",
        known = registry::known_names()
    )]
    Unknown(String),
    #[error("provider \"{0}\" has no default URL; set providers.{0}.apiBase")]
    NoBase(&'static str),
}

impl Config {
    /// Which provider serves `model`: the explicit `provider` for the primary
    /// model, else a "<provider>/" prefix or keyword, else the only
    /// configured provider.
    pub fn resolve_provider(&self, model: &str) -> Result<&'static registry::ProviderSpec, UnresolvedProvider> {
        let explicit = self
            .agents
            .defaults
            .provider
            .as_ref()
            .filter(|_| model == self.agents.defaults.model);
        let spec = if let Some(ProviderName(name)) = explicit {
            registry::find(name)
        } else if let Some(p) = registry::guess_from_model(model) {
            Some(p)
        } else if self.providers.len() == 1 {
            self.providers.keys().next().and_then(|n| registry::find(&n.0))
        } else {
            None
        };
        let spec = spec.ok_or_else(|| UnresolvedProvider::Unknown(model.to_string()))?;
        let settings = self.providers.get(&ProviderName(spec.name.to_string()));
        let has_base = settings.and_then(|s| s.api_base.as_ref()).is_some() || spec.default_base.is_some();
        if !has_base {
            return Err(UnresolvedProvider::NoBase(spec.name));
        }
        Ok(spec)
    }

    /// The workspace path with `~` expanded.
    pub fn workspace(&self) -> PathBuf {
        expand_home(&self.agents.defaults.workspace)
    }

    /// Every configured secret, for the scrubber: keys, channel credentials,
    /// web-tool keys, and the values of providers' `extraHeaders` (often an
    /// extra key; a harmless value merely gets redacted too).
    pub fn all_secrets(&self) -> Vec<Secret> {
        let mut out: Vec<Secret> = self.providers.values().filter_map(|p| p.api_key.clone()).collect();
        for p in self.providers.values() {
            out.extend(p.extra_headers.values().map(|v| Secret::new(v.clone())));
        }
        for (name, settings) in &self.channels {
            collect_channel_secrets(name, settings, &mut out);
        }
        out.extend(self.tools.web.search.api_key.clone());
        // Credentials where OxiBot expects none, by their keys' names.
        collect_named_secrets("gateway", &self.gateway, &mut out);
        for (key, value) in &self.unknown {
            collect_named_secrets(key, value, &mut out);
        }
        for settings in self.channels.values() {
            collect_named_secrets("", settings, &mut out);
        }
        out.extend(self.tools.exec.credentials.values().filter_map(|c| c.secret.clone()));
        for server in self.tools.mcp_servers.values() {
            out.extend(server.env.values().chain(server.headers.values()).cloned());
        }
        out.extend(self.loaded_secrets.iter().cloned());
        out.sort_by(|a, b| a.expose().cmp(b.expose()));
        out.dedup_by(|a, b| a.expose() == b.expose());
        out
    }

    /// The channels with `enabled: true`.
    pub fn enabled_channels(&self) -> Vec<String> {
        self.channels
            .iter()
            .filter(|(_, v)| v.get("enabled").and_then(Value::as_bool).unwrap_or(false))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// Strings and numbers under keys named like credentials, at any depth.
fn collect_named_secrets(key: &str, value: &Value, out: &mut Vec<Secret>) {
    match value {
        Value::String(s) if !s.is_empty() && super::credentials::looks_like_credential(key) => {
            out.push(Secret::new(s.clone()))
        }
        Value::Number(n) if super::credentials::looks_like_credential(key) => out.push(Secret::new(n.to_string())),
        Value::Object(map) => map.iter().for_each(|(k, v)| collect_named_secrets(k, v, out)),
        Value::Array(items) => items.iter().for_each(|v| collect_named_secrets(key, v, out)),
        _ => {}
    }
}

/// Every credential in a channel's settings: its platform's credential
/// keys, or every value of a channel OxiBot does not know.
fn collect_channel_secrets(name: &str, settings: &Value, out: &mut Vec<Secret>) {
    fn leaves(v: &Value, out: &mut Vec<Secret>) {
        match v {
            Value::String(s) if !s.is_empty() => out.push(Secret::new(s.clone())),
            // A numeric password or token is a secret too.
            Value::Number(n) => out.push(Secret::new(n.to_string())),
            Value::Array(items) => items.iter().for_each(|i| leaves(i, out)),
            Value::Object(map) => map.values().for_each(|i| leaves(i, out)),
            _ => {}
        }
    }
    let Value::Object(map) = settings else { return };
    for (key, value) in map {
        match super::credentials::credential_at(&["channels", name, key]) {
            Some(Credential::Value | Credential::UnknownChannel) => match value {
                Value::String(_) | Value::Number(_) => leaves(value, out),
                // An unknown channel's nested values too.
                _ if super::credentials::platform(name).is_none() => leaves(value, out),
                _ => {}
            },
            Some(Credential::Object) | None => {}
        }
    }
}
