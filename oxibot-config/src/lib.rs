//! OxiBot's configuration: the non-secret `config.json`, the secrets file,
//! their `OXIBOT_…` overrides, the provider registry, importing an older
//! single-file config, and editing the secrets file. Shared by the broker
//! and `oxibotctl`, so that the admin's tool links this and the protocol,
//! not the broker.

pub mod abilities;
pub mod access;
pub mod config;
pub mod cron_import;
pub mod import;
pub mod layout;
pub mod mcp;
pub mod owner;
pub mod paths;
pub mod presentation;
pub mod registry;
pub mod secret;
pub mod secrets_file;
