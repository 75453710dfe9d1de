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
use tokio::sync::watch;

/// Whom a token was granted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The conversation (`telegram:42`, `cron:7`, …).
    pub session: String,
    /// The exec call the token belongs to.
    pub call: u64,
}

/// The tokens in force, each with the signal that ends the connections
/// opened with it when it is revoked.
#[derive(Default)]
pub struct Grants {
    live: Mutex<HashMap<String, (Grant, watch::Sender<bool>)>>,
}

/// A token's holder, and what tells its connections that it was revoked.
pub struct Held {
    pub grant: Grant,
    pub revoked: watch::Receiver<bool>,
}

/// The user name in the proxy URL; the token is its password.
pub const PROXY_USER: &str = "oxibot";

impl Grants {
    /// A fresh token for `grant` (128 random bits, hex).
    pub fn grant(&self, grant: Grant) -> std::io::Result<String> {
        let token = oxibot_runtime::random::hex(16)?;
        self.lock().insert(token.clone(), (grant, watch::channel(false).0));
        Ok(token)
    }

    /// Ends a token: connections that present it from now on are refused,
    /// and those already open with it are closed.
    pub fn revoke(&self, token: &str) {
        if let Some((_, revoked)) = self.lock().remove(token) {
            revoked.send_replace(true);
        }
    }

    /// The grant behind a `Proxy-Authorization` header's value, if it is
    /// one in force.
    pub fn holder(&self, proxy_authorization: &[u8]) -> Option<Held> {
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
        self.lock().get(token).map(|(grant, revoked)| Held {
            grant: grant.clone(),
            revoked: revoked.subscribe(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Grant, watch::Sender<bool>)>> {
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
        let held = grants.holder(&basic(PROXY_USER, &token)).unwrap();
        assert_eq!(held.grant, a);
        assert!(!*held.revoked.borrow());
        assert!(grants.holder(&basic("someone", &token)).is_none());
        assert!(grants.holder(&basic(PROXY_USER, "guess")).is_none());
        assert!(grants.holder(b"Bearer whatever").is_none());
        assert!(grants.holder(b"Basic !!!not base64").is_none());
        grants.revoke(&token);
        assert!(grants.holder(&basic(PROXY_USER, &token)).is_none());
        // A connection opened before is told.
        assert!(*held.revoked.borrow());
    }
}
