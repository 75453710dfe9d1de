//! Loading the configuration: reading `config.json` and the secrets file
//! (and checking who may read the latter), `OXIBOT_…` environment
//! overrides and `…_FILE` variables, merging them, parsing the result into
//! the types of `schema.rs`, and the errors and warnings this produces,
//! with every secret redacted from them. Kept apart from the schema because
//! this is the part that touches the file system and the environment; the
//! rules a parsed config must then satisfy are in `validate.rs`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::credentials::{credential_at, Credential};
use super::schema::{default_secrets_file, Config};

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
    fn redacted(self, redactor: &oxibot_runtime::redact::Redactor) -> ConfigError {
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

/// An `OXIBOT_…` variable that names a credential
/// (`OXIBOT_PROVIDERS__OPENAI__API_KEY`, `OXIBOT_CHANNELS__TELEGRAM__TOKEN`).
fn is_credential_env(name: &str) -> bool {
    env_credential(name).is_some()
}

/// What kind of credential an `OXIBOT_…` variable sets, if any: by its
/// position (`credential_at`) or by its last key's name.
fn env_credential(name: &str) -> Option<Credential> {
    let path: Vec<&str> = name.strip_prefix("OXIBOT_")?.split("__").collect();
    credential_at(&path).or_else(|| {
        path.last()
            .filter(|k| super::credentials::looks_like_credential(k))
            .map(|_| Credential::Value)
    })
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
        let mut quotable: Vec<String> = Vec::new();
        for (name, raw) in &env {
            match env_credential(name) {
                // An object of them (extraHeaders as JSON): each value.
                Some(Credential::Object) => match serde_json::from_str::<Value>(raw) {
                    Ok(v) => collect_leaves(&v, &mut quotable),
                    Err(_) => quotable.push(raw.clone()),
                },
                Some(_) => quotable.push(raw.clone()),
                None => {}
            }
        }
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
        let redactor = oxibot_runtime::redact::Redactor::new(quotable.iter().map(String::as_str));
        let (mut config, report) =
            Self::parse_merged(path, &text, &value, report).map_err(|e| e.redacted(&redactor))?;
        config.loaded_secrets = quotable
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(crate::secret::Secret::new)
            .collect();
        Ok((config, report))
    }

    /// Every channel's settings, typed as the broker (access) and its daemon
    /// (the platform's settings) read them: first in the file's own text (the
    /// error has the line), then as merged with the secrets file and the
    /// environment.
    fn check_channels(path: &Path, text: &str, config: &Config) -> Result<(), ConfigError> {
        #[derive(serde::Deserialize)]
        struct Top {
            // Read for their errors only.
            #[serde(default)]
            #[allow(dead_code)]
            channels: std::collections::BTreeMap<String, crate::access::Access>,
        }
        #[derive(serde::Deserialize)]
        struct Shown {
            #[serde(default)]
            #[allow(dead_code)]
            channels: std::collections::BTreeMap<String, crate::presentation::Presentation>,
        }
        #[derive(serde::Deserialize)]
        struct Platforms {
            #[serde(default)]
            #[allow(dead_code)]
            channels: super::channels::Checked,
        }
        let mut de = serde_json::Deserializer::from_str(text);
        if let Err(e) = serde_path_to_error::deserialize::<_, Top>(&mut de) {
            return Err(invalid(path, &e.path().to_string(), &e.inner().to_string()));
        }
        let mut de = serde_json::Deserializer::from_str(text);
        if let Err(e) = serde_path_to_error::deserialize::<_, Shown>(&mut de) {
            return Err(invalid(path, &e.path().to_string(), &e.inner().to_string()));
        }
        let mut de = serde_json::Deserializer::from_str(text);
        if let Err(e) = serde_path_to_error::deserialize::<_, Platforms>(&mut de) {
            return Err(invalid(path, &e.path().to_string(), &e.inner().to_string()));
        }
        let merged = |e: super::channels::SettingError| {
            invalid(
                path,
                &e.key,
                &format!(
                    "{} (after applying the secrets file and OXIBOT_ environment overrides)",
                    e.message
                ),
            )
        };
        for (name, settings) in &config.channels {
            crate::access::Access::of(name, settings).map_err(merged)?;
            crate::presentation::Presentation::of(name, settings).map_err(merged)?;
            super::channels::check(name, settings).map_err(merged)?;
        }
        Ok(())
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
        for name in config
            .channels
            .keys()
            .filter(|n| super::credentials::platform(n).is_none())
        {
            report.warnings.push(format!(
                "{}: OxiBot has no channel `{name}` (it has telegram, discord, slack, whatsapp and email); \
                 channels.{name} is ignored, and every value in it is treated as a credential",
                path.display()
            ));
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
        Self::check_channels(path, text, &config)?;
        Ok((config, report))
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

pub(super) fn invalid(path: &Path, key: &str, message: &str) -> ConfigError {
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
        Some(p) => Some(crate::paths::expand_home(p)),
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
/// names), rather than leaving them to the secrets file. (A channel OxiBot
/// does not know is warned about as such, when the configuration loads.)
pub fn inline_secrets(v: &Value) -> Vec<String> {
    fn walk<'a>(v: &'a Value, at: &mut Vec<&'a str>, out: &mut Vec<String>) {
        let Value::Object(map) = v else { return };
        for (k, child) in map {
            at.push(k);
            let named = super::credentials::looks_like_credential(k);
            let credential = match (credential_at(at), child) {
                (Some(Credential::Value), Value::String(s)) => !s.is_empty(),
                (Some(Credential::Value), Value::Number(_)) => true,
                (Some(Credential::Object), Value::Object(headers)) => !headers.is_empty(),
                (_, Value::String(s)) => named && !s.is_empty(),
                (_, Value::Number(_)) => named,
                _ => false,
            };
            if credential {
                out.push(at.join("."));
            } else {
                walk(child, at, out);
            }
            at.pop();
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

/// Deep-merges `over` into `base`: objects merge key by key, anything else
/// replaces. How the secrets file lies over the config (and how the tests
/// build theirs).
pub fn merge(base: &mut Value, over: Value) {
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
        // A credential is text, even when it looks like a number (an
        // object of them, extraHeaders, is still read as JSON).
        let as_text = matches!(
            env_credential(name),
            Some(Credential::Value | Credential::UnknownChannel)
        );
        set_path(value, &segments, raw, as_text);
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

pub(super) fn camel_case(s: &str) -> String {
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
