//! Who runs in the jail now: the sessions of the commands and of the MCP
//! servers running. A sweep spares them and kills the rest; whatever
//! starts a process takes this lock first, so that a sweep never meets a
//! process it does not know yet.

use std::sync::{Mutex, MutexGuard};

pub struct Running {
    /// Each running command's session (its shell's pid; 0 when unknown).
    pub commands: Vec<i32>,
    /// Each running MCP server's session.
    pub servers: Vec<i32>,
}

static RUNNING: Mutex<Running> = Mutex::new(Running {
    commands: Vec::new(),
    servers: Vec::new(),
});

pub fn lock() -> MutexGuard<'static, Running> {
    RUNNING.lock().unwrap_or_else(|p| p.into_inner())
}

impl Running {
    /// Removes one entry of `session` from `list`.
    pub fn forget(list: &mut Vec<i32>, session: i32) {
        if let Some(at) = list.iter().position(|s| *s == session) {
            list.swap_remove(at);
        }
    }

    /// Whether a process of `session` belongs to something running.
    pub fn keeps(&self, session: Option<i32>) -> bool {
        session.is_some_and(|s| s != 0 && (self.commands.contains(&s) || self.servers.contains(&s)))
    }
}
