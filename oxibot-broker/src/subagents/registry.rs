//! The background tasks now running: what `spawn` checks its caps
//! against and `/stop` cancels.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

/// The running tasks.
#[derive(Default)]
pub struct Registry {
    pub(super) running: Mutex<HashMap<u64, Running>>,
    pub(super) next: AtomicU64,
}

pub(super) struct Running {
    /// The task's own session.
    pub(super) session: String,
    /// The chat it works for ("channel:chat", or the parent session when
    /// there is no chat): caps and /stop go by it, whichever turn of that
    /// chat started the task.
    pub(super) chat_key: String,
    pub(super) label: String,
    pub(super) task: tokio::task::AbortHandle,
}

impl Registry {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many run (for `parent`, and in all).
    pub fn counts(&self, chat_key: &str) -> (usize, usize) {
        let running = self.lock();
        (
            running.values().filter(|r| r.chat_key == chat_key).count(),
            running.len(),
        )
    }
}
