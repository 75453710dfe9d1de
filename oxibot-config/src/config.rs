//! Configuration: a non-secret `config.json`, a secrets file only the broker
//! may read, and `OXIBOT_…__…` environment overrides for every key.
//!
//! Loading order: config file, then the secrets file laid over it, then the
//! environment. A file that does not parse is an error naming the file, the
//! key and the line; there is never a silent fallback to defaults.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::registry;
use crate::secret::Secret;

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
    /// daemon sees them (see `channel_credential_keys`).
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
    /// Anything else: warned about, not fatal, so that nanobot/OxiBot
    /// configs with keys we do not use still load.
    #[serde(flatten)]
    pub unknown: BTreeMap<String, Value>,
}

/// The Unix users of the daemons. Each channel has its own (so that, under
/// systemd, the broker knows a channel daemon by its uid, and one channel
/// daemon cannot signal or read another): `oxibot-<channel>` unless
/// `channels` names another.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Users {
    pub tool: String,
    pub channels: BTreeMap<String, String>,
    /// The single user all channels shared before each had its own.
    pub channel: Option<String>,
}

impl Default for Users {
    fn default() -> Self {
        Users {
            tool: "oxibot-tool".into(),
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
}

impl Default for ExecSettings {
    fn default() -> Self {
        ExecSettings {
            timeout: 60,
            max_output_bytes: 64 * 1024,
            max_processes: 256,
            max_memory_mb: 2048,
            max_file_size_mb: 256,
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
fn default_workspace() -> String {
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

/// Keys that hold credentials wherever they appear. `config import` moves
/// them to the secrets file, and the broker never hands them to a process
/// other than the one they belong to.
pub const SECRET_KEYS: &[&str] = &[
    "apiKey",
    "token",
    "botToken",
    "appToken",
    "imapPassword",
    "smtpPassword",
    "appSecret",
    "clientSecret",
    "bridgeToken",
    "password",
    "secret",
];

/// Environment variables with our prefix that are not config overrides.
const NON_CONFIG_ENV: &[&str] = &["OXIBOT_CTL_SOCKET", "OXIBOT_LOG"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error(
        "secrets file {path} is readable or writable by group/others (mode {mode:04o}). \
         Fix it with: chmod 600 {path} && chown {owner} {path}"
    )]
    SecretsPermissions { path: PathBuf, mode: u32, owner: String },
    #[error("{0}")]
    Other(String),
}

impl ConfigError {
    /// The same error with every known secret redacted from its text.
    fn redacted(self, redactor: &oxibot_proto::redact::Redactor) -> ConfigError {
        let clean = |t: String| redactor.redact(&t).0;
        match self {
            ConfigError::Invalid { path, key, message } => ConfigError::Invalid {
                path,
                key,
                message: clean(message),
            },
            ConfigError::Other(m) => ConfigError::Other(clean(m)),
            other => other,
        }
    }
}

/// An `OXIBOT_…` variable that names a credential (`…_API_KEY`, `…_TOKEN`,
/// `…_PASSWORD`, `…_SECRET`).
fn is_credential_env(name: &str) -> bool {
    let last = name.rsplit("__").next().unwrap_or(name);
    name.starts_with("OXIBOT_") && SECRET_KEYS.iter().any(|k| normalize(k) == normalize(last))
}

/// Every string and number in a JSON value, as text.
fn collect_leaves(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(items) => items.iter().for_each(|i| collect_leaves(i, out)),
        Value::Object(map) => map.values().for_each(|i| collect_leaves(i, out)),
        _ => {}
    }
}

/// What the loader noticed that is worth a warning but not a refusal.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub warnings: Vec<String>,
    pub secrets_file: Option<PathBuf>,
}

impl Config {
    /// Loads the config file, the secrets file and the environment.
    pub fn load(path: &Path) -> Result<(Config, LoadReport), ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// Loads again for a reload: as [`Config::load`], except that the
    /// secrets come from `secretsFile` itself, never from the copy systemd
    /// made at start (`LoadCredential=`), which a rotation does not update.
    pub fn reload(path: &Path) -> Result<(Config, LoadReport), ConfigError> {
        Self::load_from(path, std::env::vars(), false)
    }

    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Config, LoadReport), ConfigError> {
        Self::load_from(path, env, true)
    }

    fn load_from(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
        use_credentials: bool,
    ) -> Result<(Config, LoadReport), ConfigError> {
        let mut report = LoadReport::default();
        let text = read(path)?;
        let mut value: Value = parse_json(path, &text)?;
        if !value.is_object() {
            return Err(invalid(path, "", "the top level must be a JSON object"));
        }
        warn_inline_secrets(&value, &mut report.warnings);

        // The environment may move the secrets file, so apply it once first.
        let env = file_variables(env.into_iter().collect(), &mut report.warnings)?;
        let mut probe = value.clone();
        apply_env(&mut probe, &env, &mut report.warnings);
        // A type error quotes the value it choked on; whatever came from
        // the secrets file or looks like a credential in the environment is
        // redacted from every error below.
        let mut quotable: Vec<String> = env
            .iter()
            .filter(|(name, _)| is_credential_env(name))
            .map(|(_, v)| v.clone())
            .collect();
        let secrets_path = secrets_path(&probe, use_credentials);
        if let Some(sp) = secrets_path {
            let stext = read_secrets(&sp)?;
            let secrets: Value = parse_json(&sp, &stext)?;
            if !secrets.is_object() {
                return Err(invalid(&sp, "", "the top level must be a JSON object"));
            }
            collect_leaves(&secrets, &mut quotable);
            merge(&mut value, secrets);
            report.secrets_file = Some(sp);
        } else {
            report
                .warnings
                .push("no secrets file found: no provider or channel credentials are configured".into());
        }
        apply_env(&mut value, &env, &mut Vec::new());
        let redactor = oxibot_proto::redact::Redactor::new(quotable.iter().map(String::as_str));
        Self::parse_merged(path, &text, &value, report).map_err(|e| e.redacted(&redactor))
    }

    /// The merged value as a `Config`, validated.
    fn parse_merged(
        path: &Path,
        text: &str,
        value: &Value,
        report: LoadReport,
    ) -> Result<(Config, LoadReport), ConfigError> {
        let mut report = report;
        let config: Config = match serde_path_to_error::deserialize(value) {
            Ok(c) => c,
            Err(merged_err) => {
                // Re-parse the file text alone: its error carries the line.
                let mut de = serde_json::Deserializer::from_str(text);
                if let Err(e) = serde_path_to_error::deserialize::<_, Config>(&mut de) {
                    if e.path().to_string() == merged_err.path().to_string() {
                        return Err(invalid(path, &e.path().to_string(), &e.inner().to_string()));
                    }
                }
                return Err(invalid(
                    path,
                    &merged_err.path().to_string(),
                    &format!(
                        "{} (after applying the secrets file and OXIBOT_ environment overrides)",
                        merged_err.inner()
                    ),
                ));
            }
        };
        for key in config.unknown.keys() {
            report
                .warnings
                .push(format!("{}: unknown key `{key}` ignored", path.display()));
        }
        if config.health.enabled && !config.health.host.is_loopback() {
            report.warnings.push(format!(
                "{}: health.host {} is not a loopback address: anyone who reaches it reads the metrics \
                 (the endpoint has no authentication); use 127.0.0.1 and a reverse proxy",
                path.display(),
                config.health.host
            ));
        }
        config.validate(path)?;
        Ok((config, report))
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        if let Some(old) = &self.users.channel {
            return Err(invalid(
                path,
                "users.channel",
                &format!(
                    "each channel now runs as its own user: replace it with \"users\": {{\"channels\": {{\"telegram\": \"{old}\", …}}}}, \
                     or remove it to use the defaults (oxibot-telegram, oxibot-discord, …)"
                ),
            ));
        }
        let d = &self.agents.defaults;
        if d.model.trim().is_empty() {
            return Err(invalid(path, "agents.defaults.model", "must name a model"));
        }
        if self.tools.exec.timeout == 0 || self.tools.exec.timeout > 600 {
            return Err(invalid(path, "tools.exec.timeout", "must be between 1 and 600 seconds"));
        }
        let e = &self.tools.exec;
        if !(1024..=512 * 1024).contains(&e.max_output_bytes) {
            return Err(invalid(
                path,
                "tools.exec.maxOutputBytes",
                "must be between 1024 and 524288",
            ));
        }
        if e.max_processes < 8 || e.max_memory_mb < 64 || e.max_file_size_mb == 0 {
            return Err(invalid(
                path,
                "tools.exec",
                "maxProcesses must be at least 8, maxMemoryMb at least 64, maxFileSizeMb at least 1",
            ));
        }
        if d.history_budget_tokens < 1000 {
            return Err(invalid(
                path,
                "agents.defaults.historyBudgetTokens",
                "must be at least 1000",
            ));
        }
        let h = &self.heartbeat;
        if h.enabled && (h.channel.is_none() || h.chat_id.is_none() || h.interval_secs == 0) {
            return Err(invalid(
                path,
                "heartbeat",
                "an enabled heartbeat needs channel, chatId (where its results go) and intervalSecs of at least 1",
            ));
        }
        let s = &self.subagents;
        if s.max_iterations == 0 || s.timeout_secs == 0 {
            return Err(invalid(
                path,
                "subagents",
                "maxIterations and timeoutSecs must be at least 1",
            ));
        }
        for target in &self.tools.message.allowed_targets {
            if !target.contains(':') {
                return Err(invalid(
                    path,
                    "tools.message.allowedTargets",
                    &format!("\"{target}\" is not \"channel:chat_id\""),
                ));
            }
        }
        if let Some(p) = &self.tools.web.search.provider {
            if p != "brave" && p != "searxng" {
                return Err(invalid(
                    path,
                    "tools.web.search.provider",
                    &format!("\"{p}\" is not a search provider (brave or searxng)"),
                ));
            }
        }
        if d.max_tool_iterations == 0 {
            return Err(invalid(path, "agents.defaults.maxToolIterations", "must be at least 1"));
        }
        if !(0.0..=2.0).contains(&d.temperature) {
            return Err(invalid(path, "agents.defaults.temperature", "must be between 0 and 2"));
        }
        for model in std::iter::once(&d.model).chain(&d.fallback_models) {
            self.resolve_provider(model)
                .map_err(|m| invalid(path, "agents.defaults.model", &m))?;
        }
        Ok(())
    }

    /// Which provider serves `model`: the explicit `provider` for the primary
    /// model, else a "<provider>/" prefix or keyword, else the only
    /// configured provider.
    pub fn resolve_provider(&self, model: &str) -> Result<&'static registry::ProviderSpec, String> {
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
        let spec = spec.ok_or_else(|| {
            format!(
                "cannot tell which provider serves model \"{model}\"; set agents.defaults.provider (one of: {})",
                registry::known_names()
            )
        })?;
        let settings = self.providers.get(&ProviderName(spec.name.to_string()));
        let has_base = settings.and_then(|s| s.api_base.as_ref()).is_some() || spec.default_base.is_some();
        if !has_base {
            return Err(format!(
                "provider \"{}\" has no default URL; set providers.{}.apiBase",
                spec.name, spec.name
            ));
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
        for ch in self.channels.values() {
            collect_secret_strings(ch, &mut out);
        }
        out.extend(self.tools.web.search.api_key.clone());
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

fn collect_secret_strings(v: &Value, out: &mut Vec<Secret>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::String(s) if SECRET_KEYS.contains(&k.as_str()) && !s.is_empty() => {
                        out.push(Secret::new(s.clone()))
                    }
                    // A numeric password or token is a secret too.
                    Value::Number(n) if SECRET_KEYS.contains(&k.as_str()) => out.push(Secret::new(n.to_string())),
                    _ => collect_secret_strings(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_secret_strings(i, out)),
        _ => {}
    }
}

pub fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(p),
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_json(path: &Path, text: &str) -> Result<Value, ConfigError> {
    serde_json::from_str(text).map_err(|e| invalid(path, "", &format!("not valid JSON: {e}")))
}

fn invalid(path: &Path, key: &str, message: &str) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_path_buf(),
        key: if key.is_empty() || key == "." {
            "(top level)".into()
        } else {
            key.to_string()
        },
        message: message.to_string(),
    }
}

/// The secrets file: systemd's `LoadCredential=secrets.json` wins, then the
/// configured path. The default path may be absent (no credentials); an
/// explicitly configured one must exist.
fn secrets_path(value: &Value, use_credentials: bool) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY").filter(|_| use_credentials) {
        let p = Path::new(&dir).join("secrets.json");
        if p.exists() {
            return Some(p);
        }
    }
    match value.get("secretsFile").and_then(Value::as_str) {
        Some(p) => Some(expand_home(p)),
        None => {
            let p = default_secrets_file();
            p.exists().then_some(p)
        }
    }
}

/// The secrets file is larger than any sane one at this size.
const MAX_SECRETS_FILE: u64 = 1 << 20;

/// Reads the secrets file through one descriptor: opened without following
/// a symlink (a link planted in /etc/oxibot must not redirect us), then
/// checked with `fstat` on that same descriptor (no window between check
/// and read): a regular file, owned by root or by us, writable only by its
/// owner, readable by nobody else — except a root-owned file readable by
/// our own group (the packaged `root:oxibot 0640`).
fn read_secrets(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let read_err = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(nix::libc::ELOOP) {
                ConfigError::Other(format!(
                    "secrets file {} is a symbolic link; refusing to follow it. Point secretsFile at the real file",
                    path.display()
                ))
            } else {
                read_err(e)
            }
        })?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.file_type().is_file() {
        return Err(ConfigError::Other(format!(
            "secrets file {} is not a regular file",
            path.display()
        )));
    }
    let me = nix::unistd::geteuid();
    let my_name = nix::unistd::User::from_uid(me)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| me.to_string());
    if meta.uid() != me.as_raw() && meta.uid() != 0 {
        return Err(ConfigError::Other(format!(
            "secrets file {} is owned by uid {}; only root or the broker's own user may own it. \
             Fix it with: chown {my_name} {}",
            path.display(),
            meta.uid(),
            path.display()
        )));
    }
    let mode = meta.permissions().mode() & 0o7777;
    let group_read_ok = meta.uid() == 0 && meta.gid() == nix::unistd::getegid().as_raw();
    let allowed = if group_read_ok { 0o640 } else { 0o600 };
    if mode & !allowed & 0o777 != 0 {
        return Err(ConfigError::SecretsPermissions {
            path: path.to_path_buf(),
            mode,
            owner: my_name,
        });
    }
    let mut text = String::new();
    file.take(MAX_SECRETS_FILE + 1)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    if text.len() as u64 > MAX_SECRETS_FILE {
        return Err(ConfigError::Other(format!(
            "secrets file {} is larger than {MAX_SECRETS_FILE} bytes",
            path.display()
        )));
    }
    Ok(text)
}

fn warn_inline_secrets(v: &Value, warnings: &mut Vec<String>) {
    for path in inline_secrets(v) {
        warnings.push(format!(
            "config.json holds a credential at `{path}`; move it to the secrets file \
             (`oxibotctl config import` does this)"
        ));
    }
}

/// Where a configuration document holds credentials itself (dotted
/// names), rather than leaving them to the secrets file.
pub fn inline_secrets(v: &Value) -> Vec<String> {
    fn walk(v: &Value, at: &str, out: &mut Vec<String>) {
        if let Value::Object(map) = v {
            for (k, child) in map {
                let path = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                match child {
                    Value::String(s) if SECRET_KEYS.contains(&k.as_str()) && !s.is_empty() => out.push(path),
                    Value::Number(_) if SECRET_KEYS.contains(&k.as_str()) => out.push(path),
                    // A provider's extra headers are credentials as a rule.
                    Value::Object(headers) if k == "extraHeaders" && !headers.is_empty() => out.push(path),
                    _ => walk(child, &path, out),
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(v, "", &mut out);
    out
}

/// Deep-merges `over` into `base`: objects merge key by key, anything else replaces.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// The biggest value a `…_FILE` variable may name.
const MAX_ENV_FILE: u64 = 64 * 1024;

/// `OXIBOT_…_FILE=PATH` (Docker and systemd secrets) stands for `OXIBOT_…`
/// with the file's content, its trailing newline removed. A file that
/// cannot be read stops the start, naming the variable; one that everybody
/// may read is used, with a warning (a container's secrets are often
/// mounted 0444, where nobody else is) when it holds a credential.
fn file_variables(
    env: Vec<(String, String)>,
    warnings: &mut Vec<String>,
) -> Result<Vec<(String, String)>, ConfigError> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    env.into_iter()
        .map(|(name, value)| {
            let Some(base) = name.strip_suffix("_FILE").filter(|_| name.starts_with("OXIBOT_")) else {
                return Ok((name, value));
            };
            let path = PathBuf::from(&value);
            let mut text = String::new();
            let file = std::fs::File::open(&path)
                .map_err(|e| ConfigError::Other(format!("{name}: cannot read {}: {e}", path.display())))?;
            if file.metadata().is_ok_and(|m| m.mode() & 0o004 != 0) && is_credential_env(base) {
                warnings.push(format!(
                    "{name}: everybody on this machine may read {}; chmod 0640 it (or 0400 for the broker's user)",
                    path.display()
                ));
            }
            file.take(MAX_ENV_FILE)
                .read_to_string(&mut text)
                .map_err(|e| ConfigError::Other(format!("{name}: cannot read {}: {e}", path.display())))?;
            Ok((base.to_string(), text.trim_end_matches(['\n', '\r']).to_string()))
        })
        .collect()
}

/// Applies `OXIBOT_A__B__C=value` to key path a.b.c. Each segment matches an
/// existing key case-insensitively, ignoring `_`; a new key is camelCased
/// (`MAX_TOOL_ITERATIONS` → `maxToolIterations`). The value replaces an
/// existing string as a string; otherwise it is read as JSON when it parses
/// (numbers, booleans, arrays) and as a string when it does not.
fn apply_env(value: &mut Value, env: &[(String, String)], warnings: &mut Vec<String>) {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("OXIBOT_") else {
            continue;
        };
        if NON_CONFIG_ENV.contains(&name.as_str()) || rest.is_empty() {
            continue;
        }
        let segments: Vec<&str> = rest.split("__").collect();
        if segments.iter().any(|s| s.is_empty()) {
            warnings.push(format!("ignoring {name}: empty key segment"));
            continue;
        }
        // A credential is text, even when it looks like a number.
        set_path(value, &segments, raw, is_credential_env(name));
    }
}

fn set_path(value: &mut Value, segments: &[&str], raw: &str, as_string: bool) {
    let Some((first, rest)) = segments.split_first() else {
        return;
    };
    if !value.is_object() {
        *value = Value::Object(Map::new());
    }
    let Value::Object(map) = value else { return };
    let key = map
        .keys()
        .find(|k| normalize(k) == normalize(first))
        .cloned()
        .unwrap_or_else(|| camel_case(first));
    if rest.is_empty() {
        let new = match map.get(&key) {
            _ if as_string => Value::String(raw.to_string()),
            Some(Value::String(_)) => Value::String(raw.to_string()),
            _ => serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string())),
        };
        map.insert(key, new);
    } else {
        let child = map.entry(key).or_insert_with(|| Value::Object(Map::new()));
        set_path(child, rest, raw, as_string);
    }
}

fn normalize(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

fn camel_case(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in s.split('_').filter(|p| !p.is_empty()).enumerate() {
        let lower = part.to_ascii_lowercase();
        if i == 0 {
            out.push_str(&lower);
        } else {
            let mut cs = lower.chars();
            if let Some(c) = cs.next() {
                out.push(c.to_ascii_uppercase());
                out.extend(cs);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
