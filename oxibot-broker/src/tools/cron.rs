//! `cron`: the model schedules, lists and removes jobs of the chat it
//! speaks for, and only that chat's (`crate::cron::jobs` keeps them).

use serde::Deserialize;
use serde_json::json;

use super::{chat_only, parse, Runs, Tool};
use crate::cron::jobs::{add_job, describe_job};
use crate::cron::schedule::Schedule;
use crate::services::Services;
use crate::turn::Turn;

pub const TOOL: Tool = Tool {
    name: "cron",
    description: "Schedule reminders and recurring tasks for this chat. action add (with message and one of \
                  every_seconds, cron_expr (5 or 6 fields, with tz, an IANA zone) or at (ISO time)), \
                  list, or remove (job_id). When a job runs, you get its message and your answer is sent here.",
    parameters: || {
        json!({
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
        })
    },
    offered: chat_only,
    runs: Runs::Broker(|svc, turn, args| Box::pin(async move { run(svc, turn, parse("cron", args)?) })),
};

/// The `cron` tool's arguments (nanobot's names).
#[derive(Debug, Deserialize)]
struct ToolArgs {
    action: String,
    message: Option<String>,
    name: Option<String>,
    every_seconds: Option<u64>,
    cron_expr: Option<String>,
    tz: Option<String>,
    at: Option<String>,
    job_id: Option<i64>,
}

/// The agent's `cron` tool: add, list and remove, only in the chat that
/// asks.
fn run(svc: &Services, turn: &Turn, args: ToolArgs) -> Result<String, String> {
    let chat = turn.origin.as_ref().ok_or(
        "scheduled jobs belong to a chat, and this conversation has none (it runs from oxibotctl); \
         use oxibotctl cron add",
    )?;
    let scope = Some((chat.channel.as_str(), chat.chat_id.as_str()));
    match args.action.as_str() {
        "add" => {
            let message = args
                .message
                .filter(|m| !m.trim().is_empty())
                .ok_or("add needs a message: what to do when the job runs")?;
            let default_tz = svc.config().cron.timezone.clone();
            let schedule = match (args.every_seconds, args.cron_expr, args.at) {
                (Some(secs), None, None) => Schedule::parse(&format!("every {secs} s"), None, &default_tz),
                (None, Some(expr), None) => Schedule::cron(&expr, args.tz.as_deref().unwrap_or(&default_tz)),
                (None, None, Some(at)) => Schedule::parse(&format!("at {at}"), args.tz.as_deref(), &default_tz),
                _ => return Err("give exactly one of every_seconds, cron_expr or at".into()),
            }
            .map_err(|e| e.to_string())?;
            let name = args.name.unwrap_or_else(|| message.chars().take(40).collect());
            add_job(svc, &name, chat, &schedule, &message).map_err(|e| e.to_string())
        }
        "list" => {
            let jobs = svc.store.cron_jobs(scope).map_err(|e| e.to_string())?;
            if jobs.is_empty() {
                return Ok("No scheduled jobs in this chat.".into());
            }
            Ok(jobs.iter().map(describe_job).collect::<Vec<_>>().join("\n"))
        }
        "remove" => {
            let id = args.job_id.ok_or("remove needs job_id (see action list)")?;
            if svc.store.cron_remove(id, scope).map_err(|e| e.to_string())? {
                svc.audit.about(
                    "cron_job_removed",
                    Some(&chat.channel),
                    None,
                    &format!("job #{id} removed by the agent in {}", chat.session()),
                );
                Ok(format!("Removed job #{id}."))
            } else {
                Err(format!("this chat has no job #{id} (see action list)"))
            }
        }
        other => Err(format!("unknown action \"{other}\"; use add, list or remove")),
    }
}
