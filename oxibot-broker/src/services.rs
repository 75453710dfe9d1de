//! What a turn (and every other piece of work the broker does for a chat)
//! is given, as one value: the configuration in force, the state, the
//! audit room, the tool daemon's client, the channel hub, the per-session
//! locks and stop signals, and the background tasks. It holds no process
//! supervision, no sockets and no listeners: those stay with the broker
//! that builds this value.

use std::sync::Arc;
use std::time::Instant;

use crate::audit::Audit;
use crate::config::Config;
use crate::hub::Hub;
use crate::live::Live;
use crate::sessions::Sessions;
use crate::store::Store;
use crate::subagents::registry::Registry;
use crate::toolclient::ToolClient;

pub struct Services {
    /// The configuration, model clients and transcriber in force.
    pub live: Live,
    pub store: Store,
    pub audit: Audit,
    pub tools: Arc<ToolClient>,
    /// The egress door's daemon, and the keys of running execs.
    pub egress: Arc<crate::egress::Egress>,
    /// The MCP servers and their tools.
    pub mcp: Arc<crate::mcp::Mcp>,
    pub hub: Hub,
    pub sessions: Sessions,
    /// Background tasks started with `spawn`.
    pub subagents: Registry,
    /// Approval requests waiting for the owner's answer.
    pub approvals: crate::approval::Approvals,
    /// What each chat spent, and its turns running now.
    pub budgets: crate::budgets::Budgets,
    pub started: Instant,
}

impl Services {
    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.live.config()
    }
}
