//! Settings shared by several platform adapters.

use serde::Deserialize;

use crate::Fatal;

/// Settings of the platforms reached over an HTTP API (Telegram, Discord,
/// Slack): `apiBase` overrides the platform's URL (a proxy, or a test server).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiSettings {
    #[serde(default)]
    pub api_base: Option<String>,
}

impl ApiSettings {
    pub fn parse(channel: &str, settings: &str) -> Result<ApiSettings, Fatal> {
        serde_json::from_str(settings).map_err(|e| Fatal::config(format!("channels.{channel}: {e}")))
    }
}
