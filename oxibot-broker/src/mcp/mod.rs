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

use std::collections::{BTreeMap, BTreeSet, HashMap};
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
    /// The servers each session has loaded (`mcp_load`) or called.
    loaded: Mutex<HashMap<String, BTreeSet<String>>>,
}

/// The tool that loads a server's schemas into a session.
pub const LOAD_TOOL: &str = "mcp_load";
/// What `mcp_load`'s description lists at most, in bytes.
const MAX_LOAD_LISTING: usize = 1500;
const MAX_LOADED_SESSIONS: usize = 4096;

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

    /// The tools a session's model call carries: the full schemas of the
    /// servers this session has used, and for the others one `mcp_load`
    /// tool that lists them by name. A first "hello" does not pay for
    /// every server's schemas.
    pub fn definitions_for(&self, session: &str) -> Vec<ToolDef> {
        let loaded = self.loaded_servers(session);
        let mut defs = Vec::new();
        let mut waiting = Vec::new();
        for (name, e) in self.lock().iter() {
            let status = e.shared.status();
            if status.offered.is_empty() {
                continue;
            }
            if loaded.contains(name) {
                defs.extend(status.offered.iter().map(Offered::definition));
            } else {
                let prefix = format!("mcp_{name}_");
                let tools: Vec<&str> = status
                    .offered
                    .iter()
                    .map(|o| o.name.strip_prefix(&prefix).unwrap_or(&o.name))
                    .collect();
                waiting.push(format!("{name}: {}", tools.join(" ")));
            }
        }
        if !waiting.is_empty() {
            let mut listing = waiting.join("\n");
            if listing.len() > MAX_LOAD_LISTING {
                let mut end = MAX_LOAD_LISTING;
                while !listing.is_char_boundary(end) {
                    end -= 1;
                }
                listing.truncate(end);
                listing.push_str(" …");
            }
            defs.push(ToolDef {
                name: LOAD_TOOL.into(),
                description: format!(
                    "Load an MCP server's tools before calling them (as mcp_<server>_<tool>). \
                     Servers: tools\n{listing}"
                )
                .into(),
                parameters: serde_json::json!({
                    "type": "object",
                    "properties": {"server": {"type": "string"}},
                    "required": ["server"]
                }),
            });
        }
        defs
    }

    fn loaded_servers(&self, session: &str) -> BTreeSet<String> {
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(session)
            .cloned()
            .unwrap_or_default()
    }

    /// `mcp_load`: the session is offered the server's tools from its next
    /// model call on.
    pub fn load(&self, session: &str, arguments: &str) -> Result<String, String> {
        #[derive(serde::Deserialize)]
        struct Args {
            server: String,
        }
        let a: Args = serde_json::from_str(arguments).map_err(|e| format!("invalid arguments for {LOAD_TOOL}: {e}"))?;
        let server = a.server.trim().trim_start_matches("mcp_");
        let names: Vec<String> = match self.lock().get(server) {
            Some(e) => e.shared.status().offered.iter().map(|o| o.name.clone()).collect(),
            None => {
                let known: Vec<String> = self.lock().keys().cloned().collect();
                return Err(format!("no MCP server \"{server}\"; servers: {}", known.join(", ")));
            }
        };
        self.mark_loaded(session, server);
        Ok(format!("Loaded: {}. Call them now.", names.join(", ")))
    }

    fn mark_loaded(&self, session: &str, server: &str) {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        // Sessions come and go; a broker restart forgets which were loaded
        // (the model loads again), so a bounded map is enough.
        if loaded.len() >= MAX_LOADED_SESSIONS && !loaded.contains_key(session) {
            loaded.clear();
        }
        loaded
            .entry(session.to_string())
            .or_default()
            .insert(server.to_string());
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
    pub async fn call(&self, session: &str, name: &str, arguments: &str) -> Option<Result<String, String>> {
        let (shared, offered) = self.find(name)?;
        self.mark_loaded(session, &shared.name);
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
