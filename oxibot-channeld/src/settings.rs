//! Reading a channel's settings: the types are the protocol's
//! (`oxibot_proto::settings`).

use serde::de::DeserializeOwned;

use crate::Fatal;

/// A channel's settings as its `Setup` carries them (JSON), read into the
/// platform's type from the protocol crate (the broker checked the same
/// type when it loaded its configuration).
pub fn parse<T: DeserializeOwned>(channel: &str, settings: &str) -> Result<T, Fatal> {
    serde_json::from_str(settings).map_err(|e| Fatal::config(format!("channels.{channel}: {e}")))
}
