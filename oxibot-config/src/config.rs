//! Configuration: a non-secret `config.json`, a secrets file only the broker
//! may read, and `OXIBOT_…__…` environment overrides for every key.
//!
//! Loading order: config file, then the secrets file laid over it, then the
//! environment. A file that does not parse is an error naming the file, the
//! key and the line; there is never a silent fallback to defaults.
//!
//! In three parts: `schema.rs` is what the file may say (the types, their
//! defaults and the meaning of each key, and the queries on a loaded
//! config); `load.rs` how it is read (the files, the environment, merging,
//! errors and warnings); `validate.rs` the rules a parsed config must
//! satisfy. Everything public is re-exported here, so callers name
//! `config::X` whichever part holds `X`.

mod channels;
mod credentials;
mod load;
mod schema;
mod validate;

pub use crate::paths::expand_home;
pub use channels::{read as read_channel_settings, SettingError};
pub use credentials::{credential_at, looks_like_credential, platform, Credential};
pub use load::{inline_secrets, merge, ConfigError, LoadReport};
pub(crate) use schema::default_workspace;
pub use schema::{
    AgentDefaults, Agents, Config, ExecSettings, Health, ProviderName, ProviderSettings, SandboxMode, Tools,
    Transcription, UnresolvedProvider, Users,
};

pub(crate) use schema::{default_runtime_dir, default_secrets_file, default_state_dir};

#[cfg(test)]
mod tests;
