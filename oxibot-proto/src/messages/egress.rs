//! The egress daemon's connection. The daemon parses what the jail's
//! commands send to the network, so it learns only what deciding needs:
//! where commands may go, and which running exec a key belongs to. It
//! answers with what became of each connection, for the audit.

use serde::{Deserialize, Serialize};

use super::*;

/// Broker → egress daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EgressRequest {
    /// Sent first, and again when the configuration is reloaded.
    Settings {
        /// `tools.exec.allowedHosts`, as written (the daemon parses them
        /// again: it trusts no text it did not check).
        #[serde(with = "limit::host_patterns")]
        allowed_hosts: Vec<String>,
        /// `tools.web.allowPrivate`: the private addresses and ranges
        /// that may be reached, as for `web_fetch`.
        #[serde(with = "limit::host_patterns")]
        allow_private: Vec<String>,
        /// `tools.exec.credentials`, each with its secret: the headers the
        /// door sets for the hosts they name.
        #[serde(with = "limit::credentials")]
        credentials: Vec<CredentialSetting>,
        /// The certificates (PEM) of `tools.exec.upstreamCaFile`: anchors
        /// the door trusts for real hosts besides the system's.
        #[serde(with = "limit::text")]
        upstream_roots: String,
    },
    /// An exec is about to start: connections tagged with `key` are its.
    /// Answered with `Granted` once the key is in force.
    Grant {
        #[serde(with = "limit::id")]
        key: String,
        /// The conversation (`telegram:42`, `cron:7`, …).
        #[serde(with = "limit::id")]
        session: String,
        /// Which exec call, as the audit names it.
        #[serde(with = "limit::id")]
        call: String,
        /// The credentials the door may set on this exec's requests (by
        /// name): those whose `chats` take this exec's conversation.
        #[serde(with = "limit::credential_names")]
        credentials: Vec<String>,
        /// Where this key's connections may go instead of `allowed_hosts`
        /// (an MCP server's own `allowedHosts`), as written.
        #[serde(with = "limit::host_patterns_opt")]
        hosts: Option<Vec<String>>,
    },
    /// The exec ended: its key opens nothing more, and the connections
    /// opened with it are closed.
    Revoke {
        #[serde(with = "limit::id")]
        key: String,
    },
}

/// One `tools.exec.credentials.<name>`, as the door needs it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialSetting {
    #[serde(with = "limit::id")]
    pub name: String,
    /// Host patterns, as written (parsed again by the daemon).
    #[serde(with = "limit::host_patterns")]
    pub hosts: Vec<String>,
    /// The header set, e.g. `Authorization`.
    #[serde(with = "limit::id")]
    pub header: String,
    /// Written before the secret, e.g. `Bearer `.
    #[serde(with = "limit::id")]
    pub prefix: String,
    /// From the secrets file.
    #[serde(with = "limit::path")]
    pub secret: String,
    /// Also set on plain `http://` to loopback (`plainHttp`).
    pub plain_http: bool,
}

impl std::fmt::Debug for CredentialSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialSetting")
            .field("name", &self.name)
            .field("hosts", &self.hosts)
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

/// How many credentials the door may hold.
pub const MAX_CREDENTIALS: usize = 64;

/// Egress daemon → broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EgressEvent {
    /// Sent first: the certificate (PEM, no key) of the authority the
    /// door answers TLS with for hosts with a credential. The jail's
    /// commands are given it to trust; its key stays in the daemon.
    Authority {
        #[serde(with = "limit::path")]
        certificate: String,
    },
    /// The key of a `Grant` is in force.
    Granted {
        #[serde(with = "limit::id")]
        key: String,
    },
    /// One connection from the jail, when it ended.
    Connection(ConnectionRecord),
}

/// What became of one connection from the jail. Host and reason may hold
/// what a command wrote: the broker files them as data, never as its own
/// words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionRecord {
    #[serde(with = "limit::id")]
    pub session: Option<String>,
    #[serde(with = "limit::id")]
    pub call: Option<String>,
    #[serde(with = "limit::id")]
    pub host: Option<String>,
    pub port: Option<u16>,
    pub allowed: bool,
    /// Why it was refused, or how a relayed connection ended.
    #[serde(with = "limit::path")]
    pub outcome: String,
    /// The credential set at the door, by name.
    #[serde(with = "limit::id")]
    pub injected: Option<String>,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub millis: u64,
}

/// How many host patterns one list may hold.
pub const MAX_HOST_PATTERNS: usize = 256;

impl Message for EgressRequest {}

impl Message for EgressEvent {}
