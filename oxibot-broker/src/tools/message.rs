//! `message`: the model sends to the current chat now (or to another chat
//! that `tools.message.allowedTargets` allows this chat to reach), and
//! learns what really happened: delivered, refused, or still waiting.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::{parse, Runs, Tool};
use crate::services::Services;
use crate::turn::{ChatRef, Turn, TurnKind};

/// How long the tool waits for the platform's answer.
const CONFIRM_WAIT: Duration = Duration::from_secs(15);

pub const TOOL: Tool = Tool {
    name: "message",
    description: "Send a message to the current chat now (or to another chat the configuration allows: \
                  give channel and chat_id). Reports whether the platform took it.",
    parameters: || {
        json!({
            "type": "object",
            "properties": {
                "content": {"type": "string"},
                "channel": {"type": "string", "description": "Only for a chat other than the current one"},
                "chat_id": {"type": "string", "description": "Only for a chat other than the current one"}
            },
            "required": ["content"]
        })
    },
    // A scheduled job may report to its chat; a background task and the
    // heartbeat report through their result, not by talking to people.
    offered: |kind, _| matches!(kind, TurnKind::Chat | TurnKind::Scheduled),
    runs: Runs::Broker(|svc, turn, args| {
        Box::pin(async move {
            let a: MessageArgs = parse("message", args)?;
            send(svc, turn, &a.content, a.channel, a.chat_id).await
        })
    }),
};

#[derive(Deserialize)]
struct MessageArgs {
    content: String,
    channel: Option<String>,
    chat_id: Option<String>,
}

/// Sends `content` to the turn's chat (or an allowed other), and waits
/// for the platform's answer.
async fn send(
    svc: &Arc<Services>,
    turn: &Turn,
    content: &str,
    channel: Option<String>,
    chat_id: Option<String>,
) -> Result<String, String> {
    if content.trim().is_empty() {
        return Err("content is empty; nothing was sent".into());
    }
    let target = target(svc, turn, channel, chat_id)?;
    let config = svc.config();
    // The console's chats are there without configuration.
    if !target.is_console() && !config.enabled_channels().contains(&target.channel) {
        return Err(format!(
            "channel {} is not enabled, so nothing was sent",
            target.channel
        ));
    }
    let text = svc.audit.scrub(content, "a message the model sent");
    let id = crate::message::queue_and_deliver(svc, &target, &text, None)
        .await
        .map_err(|e| format!("the message could not be queued ({e}); nothing was sent"))?;
    svc.audit.about(
        "message_sent",
        Some(&target.channel),
        None,
        &format!(
            "session {}: the message tool queued outbox message {id} for {}",
            turn.session,
            target.session()
        ),
    );
    if target.is_console() {
        // No platform to confirm: a chat client shows it, now or later.
        return Ok(format!(
            "queued for {}: the admin's chat client shows it (the open one, or the next)",
            target.session()
        ));
    }
    confirm(svc, &target, id).await
}

/// The chat to send to: the turn's own, or another that the config allows.
fn target(svc: &Services, turn: &Turn, channel: Option<String>, chat_id: Option<String>) -> Result<ChatRef, String> {
    let named = match (channel, chat_id) {
        (None, None) => None,
        (Some(channel), Some(chat_id)) => Some(ChatRef { channel, chat_id }),
        _ => return Err("give both channel and chat_id, or neither (the current chat)".into()),
    };
    match (named, &turn.origin) {
        (None, Some(origin)) => Ok(origin.clone()),
        (None, None) => Err(
            "this conversation has no chat to send to (it runs from oxibotctl); name channel and chat_id \
             of a chat listed for \"console\" in tools.message.allowedTargets"
                .into(),
        ),
        (Some(named), origin) if origin.as_ref() == Some(&named) => Ok(named),
        (Some(named), origin) => {
            // Targets are per chat: what one chat's turn may reach says
            // nothing about another's.
            // The console's chats are all "console" in allowedTargets.
            let from = origin
                .as_ref()
                .filter(|o| !o.is_console())
                .map_or_else(|| "console".to_string(), ChatRef::session);
            let allowed = svc
                .config()
                .tools
                .message
                .allowed_targets
                .allows(&from, &named.session());
            if allowed {
                Ok(named)
            } else {
                Err(format!(
                    "{} is not the current chat and not among {from}'s targets in tools.message.allowedTargets; \
                     nothing was sent",
                    named.session()
                ))
            }
        }
    }
}

/// Waits for the channel daemon's answer about outbox message `id`.
async fn confirm(svc: &Services, target: &ChatRef, id: i64) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + CONFIRM_WAIT;
    loop {
        let state = svc
            .store
            .outbox_state(id)
            .map_err(|e| format!("cannot read the outbox ({e}); whether it was sent is unknown"))?;
        match state {
            Some((status, _, _)) if status == "delivered" => {
                return Ok(format!("delivered to {}", target.session()));
            }
            Some((status, _, error)) if status == "failed" => {
                return Err(format!(
                    "{} refused the message: {}; it was not delivered",
                    target.channel,
                    error.unwrap_or_else(|| "no reason given".into())
                ));
            }
            Some((_, attempts, error)) if tokio::time::Instant::now() >= deadline => {
                let why = match (attempts, error) {
                    (0, _) => format!("the {} daemon has not taken it (it is not connected)", target.channel),
                    (n, Some(e)) => format!("{n} attempt(s) failed, the last with: {e}"),
                    (n, None) => format!("{n} attempt(s) failed"),
                };
                return Err(format!(
                    "not delivered yet: {why}. It stays queued and is retried until {} takes it; do not send it again",
                    target.channel
                ));
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            None => return Err("the message vanished from the outbox; whether it was sent is unknown".into()),
        }
    }
}
