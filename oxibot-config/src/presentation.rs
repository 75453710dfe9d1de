//! How a channel shows a turn while it runs, as `channels.<name>` says:
//!
//! - `streaming`: the answer appears as it is written, one message edited
//!   at most once a second, then edited into the final answer (Telegram,
//!   Discord, Slack; elsewhere the answer arrives whole, as without it).
//! - `progress`: one status message lists the tools as they run, edited
//!   as the next one starts.
//!
//! Both are off by default: a chat that has neither sees the typing
//! indicator and the whole answer at the end.

use serde::Deserialize;
use serde_json::Value;

use crate::config::SettingError;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Presentation {
    #[serde(default)]
    pub streaming: bool,
    #[serde(default)]
    pub progress: bool,
}

impl Presentation {
    /// A channel's settings; the error names the key
    /// (`channels.<channel>.streaming: invalid type …`).
    pub fn of(channel: &str, settings: &Value) -> Result<Presentation, SettingError> {
        crate::config::read_channel_settings(channel, settings)
    }

    /// Whether a watched turn is worth it: something is shown while it runs.
    pub fn watched(self) -> bool {
        self.streaming || self.progress
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_are_off_unless_said_and_a_wrong_type_names_its_key() {
        assert_eq!(
            Presentation::of("t", &json!({"token": "x"})).unwrap(),
            Presentation::default()
        );
        let p = Presentation::of("t", &json!({"streaming": true, "progress": true})).unwrap();
        assert!(p.streaming && p.progress && p.watched());
        let e = Presentation::of("telegram", &json!({"streaming": "yes"})).unwrap_err();
        assert!(e.key.contains("telegram.streaming"), "{}", e.key);
    }
}
