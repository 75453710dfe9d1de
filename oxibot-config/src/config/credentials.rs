//! Where a configuration document holds credentials: the one answer for
//! the scrubber (`Config::all_secrets`), the warning about a credential left
//! in `config.json`, the environment (`OXIBOT_…` values kept as text and
//! never quoted), `config import` (which moves them to the secrets file) and
//! the broker's split of a channel's settings from its credential. A new
//! secret setting is added here, or, for a channel, as a field of its
//! platform's credential type (`oxibot_proto::settings`).

use oxibot_proto::settings::Platform;

/// How much of the value at a path is a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// A string (or number) that is a credential.
    Value,
    /// An object whose every value is one (a provider's `extraHeaders`:
    /// `Authorization`, `x-api-key`; a harmless header is merely redacted too).
    Object,
    /// A channel OxiBot has no daemon for: nothing of it is used, and all
    /// of its values are treated as credentials.
    UnknownChannel,
}

/// Whether the value at this dotted key path is a credential. Keys compare
/// as the environment writes them: case, `_` and `-` ignored.
pub fn credential_at(path: &[&str]) -> Option<Credential> {
    let key = |i: usize, name: &str| path.get(i).is_some_and(|k| same(k, name));
    match path.len() {
        3 if key(0, "providers") && key(2, "apiKey") => Some(Credential::Value),
        3 if key(0, "providers") && key(2, "extraHeaders") => Some(Credential::Object),
        4 if key(0, "providers") && key(2, "extraHeaders") => Some(Credential::Value),
        4 if key(0, "tools") && key(1, "web") && key(2, "search") && key(3, "apiKey") => Some(Credential::Value),
        3.. if key(0, "channels") => match platform(path[1]) {
            Some(p) => {
                (path.len() == 3 && p.credential_keys().iter().any(|k| same(k, path[2]))).then_some(Credential::Value)
            }
            None => Some(Credential::UnknownChannel),
        },
        _ => None,
    }
}

/// The platform a channel name stands for, compared as `credential_at` compares.
pub fn platform(name: &str) -> Option<Platform> {
    Platform::ALL.into_iter().find(|p| same(p.name(), name))
}

fn same(a: &str, b: &str) -> bool {
    let plain = |s: &str| {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    plain(a) == plain(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_found_where_the_schema_puts_them_and_nowhere_else() {
        let at = |p: &str| credential_at(&p.split('.').collect::<Vec<_>>());
        assert_eq!(at("providers.openai.apiKey"), Some(Credential::Value));
        assert_eq!(at("PROVIDERS.OPENAI.API_KEY"), Some(Credential::Value));
        assert_eq!(at("providers.openai.extraHeaders"), Some(Credential::Object));
        assert_eq!(at("PROVIDERS.OPENAI.EXTRA_HEADERS.X_API_KEY"), Some(Credential::Value));
        assert_eq!(at("tools.web.search.apiKey"), Some(Credential::Value));
        assert_eq!(at("channels.telegram.token"), Some(Credential::Value));
        assert_eq!(at("channels.slack.appToken"), Some(Credential::Value));
        assert_eq!(at("channels.email.smtpPassword"), Some(Credential::Value));
        assert_eq!(at("channels.whatsapp.bridgeToken"), Some(Credential::Value));
        assert_eq!(at("channels.feishu.appSecret"), Some(Credential::UnknownChannel));
        // A key named like a credential elsewhere is not one.
        assert_eq!(at("channels.telegram.allowedUsers"), None);
        assert_eq!(at("channels.email.imapUsername"), None);
        assert_eq!(at("channels.slack.token"), None);
        assert_eq!(at("agents.defaults.token"), None);
        assert_eq!(at("providers.openai.apiBase"), None);
    }
}
