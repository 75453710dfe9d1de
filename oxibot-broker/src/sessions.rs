//! Per-session order: a lock so that one chat's turns run one at a time
//! (two chats never wait on each other), and the stop signal `/stop` uses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Default)]
pub struct Sessions {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    stops: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Sessions {
    /// The session's turn lock (made on first use).
    pub fn lock(&self, session: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(session.to_string()).or_default().clone()
    }

    /// The stop signal of a session's running turns (made on first use).
    pub fn stopper(&self, session: &str) -> Arc<Notify> {
        let mut stops = self.stops.lock().unwrap_or_else(|p| p.into_inner());
        stops.entry(session.to_string()).or_default().clone()
    }

    /// Stops the session's running turns; false when none was waiting.
    pub fn stop(&self, session: &str) -> bool {
        let stops = self.stops.lock().unwrap_or_else(|p| p.into_inner());
        match stops.get(session) {
            // Only the turn's own task and the map hold it while it runs.
            Some(n) if Arc::strong_count(n) > 1 => {
                n.notify_waiters();
                true
            }
            _ => false,
        }
    }
}
