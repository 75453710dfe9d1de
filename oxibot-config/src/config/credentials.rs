//! Where a configuration document holds credentials: the one answer for
//! the scrubber (`Config::all_secrets`), the warning about a credential left
//! in `config.json`, the environment (`OXIBOT_…` values kept as text and
//! never quoted), `config import` (which moves them to the secrets file) and
//! the broker's split of a channel's settings from its credential. A new
//! secret setting is added here, or, for a channel, as a field of its
//! platform's credential type (`oxibot_proto::settings`).
//!
//! Only these positions decide what a daemon is handed. To *catch* a
//! credential where OxiBot does not expect one (an old config's
//! `botToken`, a nanobot `gateway.token`), a key whose name says it is one
//! (`looks_like_credential`) is treated as one too by everything that
//! guards against leaks: the scrubber, the inline warning, `config import`
//! and the environment. And every value of the secrets file is redacted,
//! whatever its key.

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

/// Whether a key's name says it holds a credential (`token`, `botToken`,
/// `password`, `appSecret`, `apiKey`, …), wherever it is.
pub fn looks_like_credential(key: &str) -> bool {
    let key = plain(key);
    [
        "token",
        "password",
        "passwd",
        "secret",
        "apikey",
        "accesskey",
        "privatekey",
        "credential",
    ]
    .iter()
    .any(|w| key.ends_with(w))
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
        5 if key(0, "tools") && key(1, "exec") && key(2, "credentials") && key(4, "secret") => Some(Credential::Value),
        // An MCP server's environment and headers: every value.
        4 if key(0, "tools") && key(1, "mcpServers") && (key(3, "env") || key(3, "headers")) => {
            Some(Credential::Object)
        }
        5 if key(0, "tools") && key(1, "mcpServers") && (key(3, "env") || key(3, "headers")) => Some(Credential::Value),
        3.. if key(0, "channels") => match Platform::ALL.into_iter().find(|p| same(p.name(), path[1])) {
            Some(p) => {
                (path.len() == 3 && p.credential_keys().iter().any(|k| same(k, path[2]))).then_some(Credential::Value)
            }
            None => Some(Credential::UnknownChannel),
        },
        _ => None,
    }
}

/// The platform a channel's name (its key under `channels`, exactly as
/// the broker and the daemons match it) stands for.
pub fn platform(name: &str) -> Option<Platform> {
    Platform::from_name(name)
}

fn plain(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

fn same(a: &str, b: &str) -> bool {
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
        assert_eq!(at("tools.exec.credentials.github.secret"), Some(Credential::Value));
        assert_eq!(at("tools.mcpServers.github.env"), Some(Credential::Object));
        assert_eq!(at("tools.mcpServers.github.env.GITHUB_TOKEN"), Some(Credential::Value));
        assert_eq!(
            at("tools.mcpServers.remote.headers.Authorization"),
            Some(Credential::Value)
        );
        assert_eq!(at("tools.mcpServers.github.command"), None);
        assert_eq!(at("tools.mcpServers.github.args"), None);
        // A key named like a credential elsewhere is not one.
        assert_eq!(at("channels.telegram.allowedUsers"), None);
        assert_eq!(at("channels.email.imapUsername"), None);
        assert_eq!(at("channels.slack.token"), None);
        assert_eq!(at("agents.defaults.token"), None);
        assert_eq!(at("providers.openai.apiBase"), None);
    }

    #[test]
    fn keys_named_like_credentials_are_caught_and_others_are_not() {
        for key in [
            "token",
            "botToken",
            "BOT_TOKEN",
            "password",
            "imap-password",
            "appSecret",
            "apiKey",
            "accessKey",
        ] {
            assert!(looks_like_credential(key), "{key}");
        }
        for key in [
            "maxTokens",
            "secretsFile",
            "enabled",
            "allowedUsers",
            "apiBase",
            "keyFile",
            "tokenBudget",
        ] {
            assert!(!looks_like_credential(key), "{key}");
        }
        // A channel name is matched exactly, as the broker matches it.
        assert_eq!(platform("slack"), Some(Platform::Slack));
        assert_eq!(platform("Slack"), None);
    }
}
