//! Each platform's channel settings checked with the type its daemon reads
//! them into (`oxibot_proto::settings`), so that a wrong value stops the
//! broker's start with its key and line instead of the daemon's.

use oxibot_proto::settings::{ApiSettings, EmailSettings, WhatsAppSettings};
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

/// `channels` read from the file's text, each known platform with its
/// type (the line of a bad value is kept); other names are left alone.
#[derive(Default)]
pub struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Each;
        impl<'de> Visitor<'de> for Each {
            type Value = Checked;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of channels")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
                while let Some(name) = map.next_key::<String>()? {
                    match name.as_str() {
                        "telegram" | "discord" | "slack" => drop(map.next_value::<ApiSettings>()?),
                        "whatsapp" => drop(map.next_value::<WhatsAppSettings>()?),
                        "email" => drop(map.next_value::<EmailSettings>()?),
                        _ => drop(map.next_value::<IgnoredAny>()?),
                    }
                }
                Ok(Checked)
            }
        }
        d.deserialize_map(Each)
    }
}

/// A channel setting with a value its type does not take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SettingError {
    /// The whole key path: `channels.email.imapPort`.
    pub key: String,
    pub message: String,
}

/// One channel's settings read as `T`; the error names the key.
pub fn read<T: serde::de::DeserializeOwned>(name: &str, settings: &Value) -> Result<T, SettingError> {
    serde_path_to_error::deserialize::<_, T>(settings).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { format!(".{key}") };
        SettingError {
            key: format!("channels.{name}{key}"),
            message: e.inner().to_string(),
        }
    })
}

/// One channel's merged settings with its platform's type; the error
/// names the key (`channels.email.imapPort: invalid type …`).
pub fn check(name: &str, settings: &Value) -> Result<(), SettingError> {
    match name {
        "telegram" | "discord" | "slack" => read::<ApiSettings>(name, settings).map(drop),
        "whatsapp" => read::<WhatsAppSettings>(name, settings).map(drop),
        "email" => read::<EmailSettings>(name, settings).map(drop),
        _ => Ok(()),
    }
}
