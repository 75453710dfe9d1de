//! MCP servers (`tools.mcpServers`): the broker is the MCP client (rmcp),
//! and each stdio server runs inside the jail, started by toold, which
//! relays its standard input and output (see `oxibot-toold/src/mcp.rs`
//! for how it is set apart there). Each server has a supervisor task of
//! its own that starts it, lists its tools, and restarts it with backoff
//! when it ends; a call to a server that is not running fails at once
//! with what happened, never waits for it.
//!
//! The model is offered a server's tools as `mcp_<server>_<tool>` (see
//! `offer`); every call goes through `tools::run`, which audits and scrubs
//! it like every other tool's.

mod http;
mod offer;
mod server;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxibot_config::mcp::{McpServer, Transport};
use oxibot_proto::messages::McpServerInfo;
use rmcp::model::CallToolRequestParams;
use rmcp::service::Peer;
use rmcp::RoleClient;

use crate::providers::ToolDef;
use crate::services::Services;

pub use offer::Offered;

/// Every configured server, by name.
#[derive(Default)]
pub struct Mcp {
    servers: Mutex<BTreeMap<String, Entry>>,
}

struct Entry {
    /// The settings it was started with (a change restarts it).
    fingerprint: String,
    shared: Arc<Shared>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// One server's state, as callers and `oxibotctl mcp list` see it.
pub struct Shared {
    name: String,
    transport: Transport,
    status: Mutex<Status>,
}

#[derive(Default)]
struct Status {
    state: String,
    /// While it runs: how to call it.
    ready: Option<Ready>,
    /// From its last listing: still offered while it restarts, so that a
    /// call says what happened instead of the tool vanishing.
    offered: Vec<Offered>,
    refused: Vec<String>,
    restarts: u32,
    last_error: Option<String>,
}

#[derive(Clone)]
struct Ready {
    peer: Peer<RoleClient>,
    timeout: Duration,
}

impl Shared {
    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Mcp {
    /// Starts the servers of the configuration in force, stops those it
    /// no longer has, and restarts those whose settings changed. Called at
    /// start and on every reload.
    pub fn reconcile(&self, svc: &Arc<Services>) {
        let config = svc.config();
        let wanted = &config.tools.mcp_servers;
        let mut servers = self.lock();
        let gone: Vec<String> = servers
            .iter()
            .filter(|(name, e)| wanted.get(*name).is_none_or(|s| fingerprint(s) != e.fingerprint))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(entry) = servers.remove(&name) {
                if let Some(task) = entry.task {
                    task.abort();
                }
                server::stop_in_jail(svc, &name);
            }
        }
        for (name, settings) in wanted {
            if servers.contains_key(name) {
                continue;
            }
            let shared = Arc::new(Shared {
                name: name.clone(),
                transport: settings.transport(),
                status: Mutex::new(Status::default()),
            });
            let task = match settings.transport() {
                Transport::Stdio if config.tools.sandbox == crate::config::SandboxMode::Off => {
                    shared.status().state =
                        "stopped: tools.sandbox is off, and an MCP server runs only in the jail".into();
                    None
                }
                Transport::Stdio | Transport::Http => {
                    Some(tokio::spawn(server::supervise(svc.clone(), shared.clone())))
                }
            };
            servers.insert(
                name.clone(),
                Entry {
                    fingerprint: fingerprint(settings),
                    shared,
                    task,
                },
            );
        }
    }

    /// The tools the model is offered, every server's.
    pub fn definitions(&self) -> Vec<ToolDef> {
        self.lock()
            .values()
            .flat_map(|e| {
                e.shared
                    .status()
                    .offered
                    .iter()
                    .map(Offered::definition)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Whether `name` is an MCP tool offered now.
    pub fn offers(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    fn find(&self, name: &str) -> Option<(Arc<Shared>, Offered)> {
        let rest = name.strip_prefix("mcp_")?;
        // Server names hold no '_'.
        let (server, _) = rest.split_once('_')?;
        let shared = self.lock().get(server)?.shared.clone();
        let offered = shared.status().offered.iter().find(|o| o.name == name).cloned()?;
        Some((shared, offered))
    }

    /// Calls MCP tool `name` (as the model names it) with `arguments` (a
    /// JSON object). None when no server offers it.
    pub async fn call(&self, name: &str, arguments: &str) -> Option<Result<String, String>> {
        let (shared, offered) = self.find(name)?;
        Some(call(&shared, &offered, arguments).await)
    }

    /// What `oxibotctl mcp list` shows.
    pub fn list(&self) -> Vec<McpServerInfo> {
        self.lock()
            .values()
            .map(|e| {
                let s = e.shared.status();
                McpServerInfo {
                    name: e.shared.name.clone(),
                    transport: match e.shared.transport {
                        Transport::Stdio => "stdio (in the jail)".into(),
                        Transport::Http => "http (from the broker, through the guard)".into(),
                    },
                    state: s.state.clone(),
                    tools: s.offered.iter().map(|o| o.name.clone()).collect(),
                    refused: s.refused.clone(),
                    restarts: s.restarts,
                    last_error: s.last_error.clone(),
                }
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.servers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn call(shared: &Shared, offered: &Offered, arguments: &str) -> Result<String, String> {
    let ready = {
        let s = shared.status();
        // Our words only: why it stopped may be the server's (its stderr),
        // and is for the admin (`oxibotctl mcp list`), not the model.
        s.ready.clone().ok_or_else(|| {
            format!(
                "MCP server {:?} is not running ({}); try again later. `oxibotctl mcp list` shows why",
                shared.name, s.state
            )
        })?
    };
    let arguments = match serde_json::from_str::<serde_json::Value>(arguments) {
        Ok(serde_json::Value::Object(map)) => map,
        Ok(_) => return Err(format!("the arguments of {} must be a JSON object", offered.name)),
        Err(e) => return Err(format!("invalid arguments for {}: {e}", offered.name)),
    };
    let mut params = CallToolRequestParams::new(offered.tool.clone());
    params.arguments = Some(arguments);
    match tokio::time::timeout(ready.timeout, ready.peer.call_tool(params)).await {
        Ok(Ok(result)) => offer::render(&shared.name, &offered.tool, &result),
        // An error answer holds the server's words: wrapped and cut like
        // its results.
        Ok(Err(e)) => Err(format!(
            "MCP server {:?} did not answer the call:\n{}",
            shared.name,
            offer::wrap_words(&shared.name, &offered.tool, &e.to_string())
        )),
        Err(_) => Err(format!(
            "MCP server {:?} did not answer within {} s (tools.mcpServers.{}.toolTimeout)",
            shared.name,
            ready.timeout.as_secs(),
            shared.name
        )),
    }
}

/// What a server was started with, the secrets' values included (by
/// digest): a change of any of it restarts the server.
fn fingerprint(s: &McpServer) -> String {
    let env: Vec<String> = s.env.iter().map(|(k, v)| format!("{k}={}", v.expose())).collect();
    let headers: Vec<String> = s.headers.iter().map(|(k, v)| format!("{k}={}", v.expose())).collect();
    let text = format!(
        "{:?}|{:?}|{:?}|{:?}|{}|{:?}|{}|{}",
        s.command,
        s.args,
        s.url,
        s.enabled_tools,
        s.tool_timeout,
        s.allowed_hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        env.join("\0"),
        headers.join("\0")
    );
    crate::agent::arguments_digest(&text)
}
