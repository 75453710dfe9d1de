//! `spawn`: a background task with its own session (`crate::subagents`).

use serde::Deserialize;
use serde_json::json;

use super::{chat_only, parse, Runs, Tool};

pub const TOOL: Tool = Tool {
    name: "spawn",
    description: "Start a background task with its own fresh context (research, long work). It runs \
                  while you keep talking; its result is sent to this chat when it finishes.",
    parameters: || {
        json!({
            "type": "object",
            "properties": {
                "task": {"type": "string", "description": "Everything the task needs to know"},
                "label": {"type": "string", "description": "A short name for it"}
            },
            "required": ["task"]
        })
    },
    offered: chat_only,
    runs: Runs::Broker(|svc, turn, args| {
        Box::pin(async move {
            let a: SpawnArgs = parse("spawn", args)?;
            crate::subagents::spawn(svc, turn, &a.task, a.label.as_deref())
        })
    }),
};

#[derive(Deserialize)]
struct SpawnArgs {
    task: String,
    label: Option<String>,
}
