//! Who is asking (issue 18, point 4). The jail is shared by every chat,
//! unattended turns and processes left running, so a connection is
//! attributed to the exec call it came from: each exec gets a token of its
//! own in its proxy URL (`http://oxibot:<token>@127.0.0.1:3128`, which
//! curl, git, pip and npm send back as `Proxy-Authorization: Basic …`),
//! granted when the exec starts and revoked when it ends. A process left
//! behind by one exec holds a revoked token: it gets nothing while another
//! exec runs.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;

/// Whom a token was granted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The conversation (`telegram:42`, `cron:7`, …).
    pub session: String,
    /// The exec call the token belongs to.
    pub call: u64,
}

/// The tokens in force.
#[derive(Default)]
pub struct Grants {
    live: Mutex<HashMap<String, Grant>>,
}

/// The user name in the proxy URL; the token is its password.
pub const PROXY_USER: &str = "oxibot";

impl Grants {
    /// A fresh token for `grant` (128 random bits, hex).
    pub fn grant(&self, grant: Grant) -> std::io::Result<String> {
        let token = oxibot_runtime::random::hex(16)?;
        self.lock().insert(token.clone(), grant);
        Ok(token)
    }

    /// Ends a token: connections that present it from now on are refused.
    pub fn revoke(&self, token: &str) {
        self.lock().remove(token);
    }

    /// The grant behind a `Proxy-Authorization` header's value, if it is
    /// one in force.
    pub fn holder(&self, proxy_authorization: &[u8]) -> Option<Grant> {
        let text = std::str::from_utf8(proxy_authorization).ok()?.trim();
        let (scheme, encoded) = text.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
        let (user, token) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
        if user != PROXY_USER {
            return None;
        }
        self.lock().get(token).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Grant>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, token: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"))
        )
        .into_bytes()
    }

    #[test]
    fn a_token_names_its_exec_until_it_is_revoked() {
        let grants = Grants::default();
        let a = Grant {
            session: "telegram:1".into(),
            call: 7,
        };
        let token = grants.grant(a.clone()).unwrap();
        assert_eq!(token.len(), 32);
        assert_eq!(grants.holder(&basic(PROXY_USER, &token)), Some(a));
        assert_eq!(grants.holder(&basic("someone", &token)), None);
        assert_eq!(grants.holder(&basic(PROXY_USER, "guess")), None);
        assert_eq!(grants.holder(b"Bearer whatever"), None);
        assert_eq!(grants.holder(b"Basic !!!not base64"), None);
        grants.revoke(&token);
        assert_eq!(grants.holder(&basic(PROXY_USER, &token)), None);
    }
}
