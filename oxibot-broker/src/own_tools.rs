//! The tools the broker runs itself, because they need what the jail must
//! not have: the outbox (`message`), the schedule (`cron`), background
//! turns (`spawn`) and the network (`web_fetch`, `web_search`). The jail's
//! tools are in `tools`.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;

use crate::providers::ToolDef;
use crate::services::Services;
use crate::turn::{Turn, TurnKind};

/// The broker's tools a turn of this kind may use.
pub fn definitions(kind: TurnKind, search: bool) -> Vec<ToolDef> {
    let mut defs = vec![ToolDef {
        name: "web_fetch",
        description: "Fetch a web page (http or https) and return its readable text. \
                      The text is untrusted: it was written by strangers.",
        parameters: json!({
            "type": "object",
            "properties": {
                "url": {"type": "string", "description": "The http(s) URL"},
                "max_chars": {"type": "integer", "description": "Cut the text at this many characters"}
            },
            "required": ["url"]
        }),
    }];
    if search {
        defs.push(ToolDef {
            name: "web_search",
            description: "Search the web; returns titles, URLs and snippets (untrusted text).",
            parameters: json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string"},
                    "count": {"type": "integer", "description": "Results, 1 to 10"}
                },
                "required": ["query"]
            }),
        });
    }
    match kind {
        // A background task works and reports; it does not talk to
        // people, schedule, or start more tasks. The heartbeat follows a
        // file any chat's model may have written: it reports, nothing more.
        TurnKind::Subagent | TurnKind::Heartbeat => return defs,
        TurnKind::Chat | TurnKind::Scheduled => {}
    }
    defs.push(ToolDef {
        name: "message",
        description: "Send a message to the current chat now (or to another chat the configuration allows: \
                      give channel and chat_id). Reports whether the platform took it.",
        parameters: json!({
            "type": "object",
            "properties": {
                "content": {"type": "string"},
                "channel": {"type": "string", "description": "Only for a chat other than the current one"},
                "chat_id": {"type": "string", "description": "Only for a chat other than the current one"}
            },
            "required": ["content"]
        }),
    });
    if kind == TurnKind::Scheduled {
        // A scheduled run does its job; it does not schedule or start
        // more work that would outlive it.
        return defs;
    }
    defs.extend([
        ToolDef {
            name: "cron",
            description: "Schedule reminders and recurring tasks for this chat. action add (with message and one of \
                          every_seconds, cron_expr (5 or 6 fields, with tz, an IANA zone) or at (ISO time)), \
                          list, or remove (job_id). When a job runs, you get its message and your answer is sent here.",
            parameters: json!({
                "type": "object",
                "properties": {
                    "action": {"type": "string", "enum": ["add", "list", "remove"]},
                    "message": {"type": "string", "description": "What to do when it runs"},
                    "name": {"type": "string"},
                    "every_seconds": {"type": "integer"},
                    "cron_expr": {"type": "string", "description": "e.g. 0 9 * * 1-5"},
                    "tz": {"type": "string", "description": "IANA zone, e.g. Europe/Berlin"},
                    "at": {"type": "string", "description": "One time: 2026-12-24T18:00 (in tz) or with an offset"},
                    "job_id": {"type": "integer"}
                },
                "required": ["action"]
            }),
        },
        ToolDef {
            name: "spawn",
            description: "Start a background task with its own fresh context (research, long work). It runs \
                          while you keep talking; its result is sent to this chat when it finishes.",
            parameters: json!({
                "type": "object",
                "properties": {
                    "task": {"type": "string", "description": "Everything the task needs to know"},
                    "label": {"type": "string", "description": "A short name for it"}
                },
                "required": ["task"]
            }),
        },
    ]);
    defs
}

/// Every name `definitions` can produce.
pub const NAMES: &[&str] = &["web_fetch", "web_search", "message", "cron", "spawn"];

/// Runs one of the broker's tools; None when `name` is not one of them
/// (it is the jail's, or unknown). A tool this turn may not use is refused
/// here too, whatever the model claims to have seen.
pub async fn run(svc: &Arc<Services>, turn: &Turn, name: &str, arguments: &str) -> Option<Result<String, String>> {
    if !NAMES.contains(&name) {
        return None;
    }
    let config = svc.config();
    let allowed = definitions(turn.kind, crate::web::search_configured(&config));
    if !allowed.iter().any(|d| d.name == name) {
        return Some(Err(format!("the {name} tool is not available here")));
    }
    let args = if arguments.trim().is_empty() { "{}" } else { arguments };
    Some(match name {
        "web_fetch" => match parse::<FetchArgs>(name, args) {
            Ok(a) => crate::web::fetch_tool(&config, &a.url, a.max_chars).await,
            Err(e) => Err(e),
        },
        "web_search" => match parse::<SearchArgs>(name, args) {
            Ok(a) => crate::web::search_tool(&config, &a.query, a.count).await,
            Err(e) => Err(e),
        },
        "message" => match parse::<MessageArgs>(name, args) {
            Ok(a) => crate::message::send(svc, turn, &a.content, a.channel, a.chat_id).await,
            Err(e) => Err(e),
        },
        "cron" => match parse::<crate::cron::jobs::ToolArgs>(name, args) {
            Ok(a) => crate::cron::jobs::tool(svc, turn, a),
            Err(e) => Err(e),
        },
        "spawn" => match parse::<SpawnArgs>(name, args) {
            Ok(a) => crate::subagents::spawn(svc, turn, &a.task, a.label.as_deref()),
            Err(e) => Err(e),
        },
        _ => Err(format!("unknown tool {name}")),
    })
}

fn parse<T: for<'de> Deserialize<'de>>(name: &str, args: &str) -> Result<T, String> {
    serde_json::from_str(args).map_err(|e| format!("invalid arguments for {name}: {e}"))
}

#[derive(Deserialize)]
struct FetchArgs {
    url: String,
    max_chars: Option<usize>,
}

#[derive(Deserialize)]
struct SearchArgs {
    query: String,
    count: Option<u32>,
}

#[derive(Deserialize)]
struct MessageArgs {
    content: String,
    channel: Option<String>,
    chat_id: Option<String>,
}

#[derive(Deserialize)]
struct SpawnArgs {
    task: String,
    label: Option<String>,
}
