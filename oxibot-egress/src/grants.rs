//! Who is asking. The jail is shared by every chat, unattended turns and
//! processes left running, so a connection is attributed to the exec call
//! it came from: each exec has a key of its own, granted here (by the
//! broker) before the exec starts and revoked when it ends. No command
//! ever sees its key: the jail's end of the door finds which exec's
//! processes hold the connecting socket, and tags the connection with that
//! exec's key on its way out. A process left behind by one exec belongs to
//! an exec whose key was revoked: it gets nothing while another runs.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

/// Whom a token was granted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The conversation (`telegram:42`, `cron:7`, …).
    pub session: String,
    /// The exec call the key belongs to, as the audit names it.
    pub call: String,
    /// The credentials (`tools.exec.credentials.<name>`) the door may set
    /// on this exec's requests: the broker chose them by the exec's chat
    /// and kind of turn.
    pub credentials: Vec<String>,
    /// Where this key's connections may go instead of
    /// `tools.exec.allowedHosts`: an MCP server's own `allowedHosts`.
    pub hosts: Option<Vec<oxibot_proto::settings::HostPattern>>,
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

impl Grants {
    /// A fresh key for `grant` (128 random bits, hex).
    pub fn grant(&self, grant: Grant) -> std::io::Result<String> {
        let key = oxibot_runtime::random::hex(16)?;
        self.insert(key.clone(), grant);
        Ok(key)
    }

    /// Puts `key` in force for `grant` (the broker chose the key). A key
    /// granted again keeps its connections.
    pub fn insert(&self, key: String, grant: Grant) {
        self.lock()
            .entry(key)
            .and_modify(|(held, _)| *held = grant.clone())
            .or_insert_with(|| (grant, watch::channel(false).0));
    }

    /// Ends a token: connections that present it from now on are refused,
    /// and those already open with it are closed.
    pub fn revoke(&self, token: &str) {
        if let Some((_, revoked)) = self.lock().remove(token) {
            revoked.send_replace(true);
        }
    }

    /// The grant behind `key`, if it is in force.
    pub fn held(&self, key: &[u8]) -> Option<Held> {
        let key = std::str::from_utf8(key).ok()?;
        self.lock().get(key).map(|(grant, revoked)| Held {
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

    #[test]
    fn a_key_names_its_exec_until_it_is_revoked() {
        let grants = Grants::default();
        let a = Grant {
            session: "telegram:1".into(),
            call: "exec 7".into(),
            credentials: Vec::new(),
            hosts: None,
        };
        let key = grants.grant(a.clone()).unwrap();
        assert_eq!(key.len(), 32);
        let held = grants.held(key.as_bytes()).unwrap();
        assert_eq!(held.grant, a);
        assert!(!*held.revoked.borrow());
        assert!(grants.held(b"guess").is_none());
        assert!(grants.held(b"").is_none());
        assert!(grants.held(&[0xff, 0xfe]).is_none());
        grants.revoke(&key);
        assert!(grants.held(key.as_bytes()).is_none());
        // A connection opened before is told.
        assert!(*held.revoked.borrow());
    }
}
