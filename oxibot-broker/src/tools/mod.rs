//! The model's tools: one table. Each entry has the tool's name, what the
//! model is told about it, which turns are offered it, and who runs it:
//! the jail (its arguments become one tool-daemon request) or the broker
//! (a tool that needs what the jail must not have: the outbox, the
//! schedule, background turns, the network). A new tool is one entry here
//! and one file beside this one.
//!
//! Whether a turn may use a tool is checked when the call is made, not only
//! when the tools are offered: the model can name any tool, seen or not.

mod cron;
pub mod jail;
mod message;
mod spawn;
mod time;
mod web;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use oxibot_proto::messages::ToolCall;
use serde::Deserialize;
use serde_json::Value;

use crate::config::Config;
use crate::providers::ToolDef;
use crate::services::Services;
use crate::turn::{Turn, TurnKind};

/// Every tool, in the order the model is shown them.
const TABLE: &[Tool] = &[
    jail::EXEC,
    jail::READ_FILE,
    jail::WRITE_FILE,
    jail::EDIT_FILE,
    jail::LIST_DIR,
    jail::FIND_FILES,
    jail::GREP,
    jail::APPLY_PATCH,
    web::FETCH,
    web::SEARCH,
    message::TOOL,
    cron::TOOL,
    spawn::TOOL,
    time::TOOL,
];

pub struct Tool {
    pub name: &'static str,
    pub description: &'static str,
    /// The JSON schema of the arguments.
    pub parameters: fn() -> Value,
    /// Whether a turn of this kind, under this configuration, gets it.
    pub offered: fn(TurnKind, &Config) -> bool,
    pub runs: Runs,
}

/// A broker-side tool's body: (services, turn, arguments as JSON text).
pub type BrokerTool = for<'a> fn(
    &'a Arc<Services>,
    &'a Turn,
    &'a str,
) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;

pub enum Runs {
    /// In the jail: the arguments (and the exec timeout in force) become
    /// one tool-daemon request; the error text goes back to the model so
    /// that it can correct itself.
    Jail(fn(&str, u32) -> Result<ToolCall, String>),
    /// In the broker.
    Broker(BrokerTool),
}

/// The tools a turn of this kind is offered.
pub fn definitions(kind: TurnKind, config: &Config) -> Vec<ToolDef> {
    TABLE
        .iter()
        .filter(|t| (t.offered)(kind, config))
        .map(|t| ToolDef {
            name: t.name.into(),
            description: t.description.into(),
            parameters: (t.parameters)(),
        })
        .collect()
}

/// Whether `name` is one of our tools (the model may invent any name).
pub fn is_ours(name: &str) -> bool {
    find(name).is_some()
}

/// Whether `name` is a built-in tool's (an MCP server may not take one).
pub fn is_built_in(name: &str) -> bool {
    TABLE.iter().any(|t| t.name.eq_ignore_ascii_case(name))
}

fn find(name: &str) -> Option<&'static Tool> {
    TABLE.iter().find(|t| t.name == name)
}

/// Runs one tool call for `turn`. The output is not scrubbed here: the
/// caller scrubs and audits every call alike.
pub async fn run(svc: &Arc<Services>, turn: &Turn, name: &str, arguments: &str) -> Result<String, String> {
    let config = svc.config();
    let Some(tool) = find(name) else {
        let args = if arguments.trim().is_empty() { "{}" } else { arguments };
        if name == crate::mcp::LOAD_TOOL {
            return svc.mcp.load(&turn.session, args);
        }
        if svc.mcp.offers(name) {
            crate::approval::check_mcp_tool(svc, turn, name, args).await?;
        }
        if let Some(result) = svc.mcp.call(&turn.session, name, args).await {
            return result;
        }
        return Err(unknown(name, turn.kind, &config));
    };
    if !(tool.offered)(turn.kind, &config) {
        return Err(format!("the {name} tool is not available here"));
    }
    let args = if arguments.trim().is_empty() { "{}" } else { arguments };
    match tool.runs {
        Runs::Jail(to_call) => {
            let timeout = svc.live.settings().exec_timeout_secs;
            let mut call = to_call(args, timeout)?;
            // The owner's gate, on what the jail is asked to do.
            gate(svc, turn, &call).await?;
            // An exec may reach the hosts tools.exec.allowedHosts lists,
            // with a key of its own, revoked when the call ends (dropped).
            let mut _key = None;
            if let ToolCall::Exec { egress, .. } = &mut call {
                _key = svc
                    .egress
                    .open(&config, turn, &crate::agent::arguments_digest(args))
                    .await;
                *egress = _key.as_ref().map(|k| k.pass());
            }
            // The daemon enforces the exec timeout itself; allow it time to
            // kill the process group and answer.
            let wait = std::time::Duration::from_secs(u64::from(timeout) + 15);
            // The model reads the error: here it becomes words.
            svc.tools.call(call, wait).await.map_err(|e| e.to_string())
        }
        Runs::Broker(body) => body(svc, turn, args).await,
    }
}

/// Asks `tools.approval` about a jail request: a command by what it runs,
/// a file change by the paths it touches.
async fn gate(svc: &Arc<Services>, turn: &Turn, call: &ToolCall) -> Result<(), String> {
    use crate::approval;
    if turn.by_admin {
        return Ok(());
    }
    match call {
        ToolCall::Exec {
            command, working_dir, ..
        } => approval::check_command(svc, turn, command, working_dir.as_deref()).await,
        ToolCall::WriteFile { path, content } => {
            let shown = format!("{path} ({} bytes):\n{content}", content.len());
            approval::check_write(svc, turn, "write_file", Some(vec![path.clone()]), &shown).await
        }
        ToolCall::EditFile {
            path,
            old_text,
            new_text,
        } => {
            let shown = format!("{path}:\n- {old_text}\n+ {new_text}");
            approval::check_write(svc, turn, "edit_file", Some(vec![path.clone()]), &shown).await
        }
        ToolCall::ApplyPatch { patch } => {
            approval::check_write(svc, turn, "apply_patch", approval::policy::patch_paths(patch), patch).await
        }
        _ => Ok(()),
    }
}

/// The jail request a call of a jail tool becomes (for the tests of what
/// the model can make the broker send).
pub fn to_request(name: &str, arguments: &str, exec_timeout_secs: u32) -> Result<ToolCall, String> {
    let args = if arguments.trim().is_empty() { "{}" } else { arguments };
    match find(name).map(|t| &t.runs) {
        Some(Runs::Jail(to_call)) => to_call(args, exec_timeout_secs),
        _ => Err(format!(
            "unknown tool \"{name}\"; available tools: {}",
            jail_names().join(", ")
        )),
    }
}

fn jail_names() -> Vec<&'static str> {
    TABLE
        .iter()
        .filter(|t| matches!(t.runs, Runs::Jail(_)))
        .map(|t| t.name)
        .collect()
}

fn unknown(name: &str, kind: TurnKind, config: &Config) -> String {
    let offered: Vec<&str> = TABLE
        .iter()
        .filter(|t| (t.offered)(kind, config))
        .map(|t| t.name)
        .collect();
    format!("unknown tool \"{name}\"; available tools: {}", offered.join(", "))
}

/// A tool's arguments, or the error the model reads to correct itself.
fn parse<T: for<'de> Deserialize<'de>>(name: &str, args: &str) -> Result<T, String> {
    serde_json::from_str(args).map_err(|e| format!("invalid arguments for {name}: {e}"))
}

/// Offered to turns where a person is in the loop (a chat, `oxibotctl
/// agent`): not to a job's run, the heartbeat or a background task, which
/// must not schedule or start work that outlives them.
fn chat_only(kind: TurnKind, _: &Config) -> bool {
    kind == TurnKind::Chat
}
