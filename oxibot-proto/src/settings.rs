//! The public halves of each platform's channel settings: what the broker
//! checks when its configuration loads (key and line in the error) and what
//! the channel daemon reads from its `Setup`, one definition for both, so
//! that channeld needs no configuration crate. Credentials are not here:
//! they travel apart, and only to their own daemon.

use serde::Deserialize;

/// `channels.telegram`, `channels.discord`, `channels.slack`: the platforms
/// reached over an HTTP API. `apiBase` overrides the platform's URL (a
/// proxy, or a test server).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiSettings {
    #[serde(default)]
    pub api_base: Option<String>,
}

/// `channels.whatsapp`: the bridge's WebSocket (on this machine: the token
/// crosses it in clear).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WhatsAppSettings {
    #[serde(default = "default_bridge")]
    pub bridge_url: String,
}

fn default_bridge() -> String {
    "ws://127.0.0.1:3001".into()
}

/// What any channel's daemon may have to read after its sandbox is up: a
/// private CA (`tlsCaFile`), which the sandbox must leave readable.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsSettings {
    #[serde(default)]
    pub tls_ca_file: Option<String>,
}

/// `channels.email`.
#[derive(Debug, Deserialize, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct EmailSettings {
    pub imap_host: String,
    pub imap_port: u16,
    pub imap_username: String,
    pub imap_mailbox: String,
    pub imap_use_ssl: bool,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_username: String,
    pub smtp_use_tls: bool,
    pub smtp_use_ssl: bool,
    pub from_address: String,
    pub poll_interval_seconds: u64,
    /// Wait with IMAP IDLE where the server offers it (polling otherwise).
    pub imap_idle: bool,
    /// How long one IDLE lasts before it is renewed (RFC 2177 asks for
    /// less than 29 minutes; NAT boxes often drop quiet connections sooner).
    pub idle_renew_seconds: u64,
    pub max_body_chars: usize,
    pub subject_prefix: String,
    pub trust_from_header: bool,
    /// The receiving server's authserv-id (RFC 8601): only its
    /// Authentication-Results header counts. Unset: no sender is verified.
    pub authserv_id: Option<String>,
    /// PEM certificates to trust beside the public roots, for servers with
    /// a private CA (read by this daemon: it must be readable by its user).
    pub tls_ca_file: Option<String>,
}

impl Default for EmailSettings {
    fn default() -> Self {
        EmailSettings {
            imap_host: String::new(),
            imap_port: 993,
            imap_username: String::new(),
            imap_mailbox: "INBOX".into(),
            imap_use_ssl: true,
            smtp_host: String::new(),
            smtp_port: 587,
            smtp_username: String::new(),
            smtp_use_tls: true,
            smtp_use_ssl: false,
            from_address: String::new(),
            poll_interval_seconds: 30,
            imap_idle: true,
            idle_renew_seconds: 300,
            max_body_chars: 12_000,
            subject_prefix: "Re: ".into(),
            trust_from_header: false,
            authserv_id: None,
            tls_ca_file: None,
        }
    }
}
