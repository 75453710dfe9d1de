//! The public halves of each platform's channel settings: what the broker
//! checks when its configuration loads (key and line in the error) and what
//! the channel daemon reads from its `Setup`, one definition for both, so
//! that channeld needs no configuration crate; and the egress door's host
//! patterns (`hosts.rs`), read the same way by the broker and the daemon
//! that will enforce them. Credentials are typed here too, but travel
//! apart from settings, and only to their own daemon.

use serde::Deserialize;

mod hosts;

pub use hosts::{BadHostPattern, HostPattern};

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

/// The platforms a channel daemon serves, by their name under `channels`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Telegram,
    Discord,
    Slack,
    WhatsApp,
    Email,
}

impl Platform {
    pub const ALL: [Platform; 5] = [
        Platform::Telegram,
        Platform::Discord,
        Platform::Slack,
        Platform::WhatsApp,
        Platform::Email,
    ];

    pub fn from_name(name: &str) -> Option<Platform> {
        Platform::ALL.into_iter().find(|p| p.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Platform::Telegram => "telegram",
            Platform::Discord => "discord",
            Platform::Slack => "slack",
            Platform::WhatsApp => "whatsapp",
            Platform::Email => "email",
        }
    }

    /// The keys of `channels.<name>` that are this platform's credential:
    /// the fields of its credential type, read from the type itself, so
    /// that a new secret field is a secret everywhere (split off for the
    /// daemon alone, redacted, moved by `config import`, warned about when
    /// inline).
    pub fn credential_keys(self) -> &'static [&'static str] {
        match self {
            Platform::Telegram | Platform::Discord => fields::<TokenCredential>(),
            Platform::Slack => fields::<SlackCredential>(),
            Platform::WhatsApp => fields::<WhatsAppCredential>(),
            Platform::Email => fields::<EmailCredential>(),
        }
    }
}

/// Telegram's bot token, Discord's bot token: `channels.<name>.token`.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenCredential {
    pub token: String,
}

/// `channels.slack`: the bot token (Web API) and the app-level token
/// (Socket Mode).
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlackCredential {
    pub bot_token: String,
    pub app_token: String,
}

/// `channels.whatsapp.bridgeToken`: what the local bridge expects first.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WhatsAppCredential {
    pub bridge_token: String,
}

/// `channels.email`: the IMAP and SMTP passwords (either may be empty).
#[derive(Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EmailCredential {
    pub imap_password: String,
    pub smtp_password: String,
}

// A credential never prints.
macro_rules! redacted_debug {
    ($($t:ty),*) => {$(
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($t), " { .. }"))
            }
        }
    )*};
}
redacted_debug!(TokenCredential, SlackCredential, WhatsAppCredential, EmailCredential);

/// The JSON keys a struct reads, as its derived `Deserialize` names them
/// (serde hands them to `deserialize_struct`; nothing is decoded).
fn fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Names(&'static [&'static str]);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("field names taken")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> serde::Deserializer<'de> for &mut Names {
        type Error = Stop;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0 = fields;
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut names = Names(&[]);
    let _ = T::deserialize(&mut names);
    names.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_platform_names_its_credential_keys_from_its_type() {
        assert_eq!(Platform::Telegram.credential_keys(), ["token"]);
        assert_eq!(Platform::Slack.credential_keys(), ["botToken", "appToken"]);
        assert_eq!(Platform::WhatsApp.credential_keys(), ["bridgeToken"]);
        assert_eq!(Platform::Email.credential_keys(), ["imapPassword", "smtpPassword"]);
        for p in Platform::ALL {
            assert_eq!(Platform::from_name(p.name()), Some(p));
        }
    }

    #[test]
    fn a_credential_does_not_print() {
        let c: SlackCredential = serde_json::from_str(r#"{"botToken":"xoxb-1","appToken":"xapp-2"}"#).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("xoxb") && !shown.contains("xapp"), "{shown}");
    }
}
