//! Answering a committed inbound message: the chat command or the agent's
//! turn (with a typing indicator meanwhile), then the reply queued in the
//! outbox and handed to the channel's daemon.
//!
//! Separate from the link in `mod.rs` because a turn is tied to no
//! connection: it runs in its own task, for a message just received or for
//! one found unanswered at start-up, and its reply goes to whichever link
//! is up when it ends (or waits in the outbox for the next).

use std::sync::Arc;

use oxibot_proto::messages::BrokerToChannel;

use crate::hub::replacing_send;
use crate::services::Services;
use crate::store::Inbound;

/// Runs the agent (or a chat command) for one committed inbound message
/// and queues the reply.
pub(super) async fn answer(svc: Arc<Services>, inbound: Inbound) {
    let session = format!("{}:{}", inbound.channel, inbound.chat_id);
    let command = match inbound.files.is_empty() {
        true => crate::commands::parse(&inbound.text),
        false => None,
    };
    // With `streaming` or `progress`, the turn is shown as it runs; the
    // answer then replaces the draft it streamed into.
    let mut showing = None;
    let reply = match command {
        Some(cmd) => {
            let chat = crate::turn::ChatRef {
                channel: inbound.channel.clone(),
                chat_id: inbound.chat_id.clone(),
            };
            crate::commands::run(&svc, &chat, &inbound.sender, &inbound.text, cmd)
        }
        None => {
            svc.hub
                .deliver(
                    &inbound.channel,
                    BrokerToChannel::Typing {
                        chat_id: inbound.chat_id.clone(),
                    },
                )
                .await;
            let stop = svc.sessions.stopper(&session);
            let turn = async {
                let files = crate::uploads::prepare(&svc, &inbound.files).await;
                let text = std::iter::once(inbound.text.as_str())
                    .filter(|t| !t.is_empty())
                    .chain(files.notes.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join("\n");
                let chat = crate::turn::ChatRef {
                    channel: inbound.channel.clone(),
                    chat_id: inbound.chat_id.clone(),
                };
                let shown = svc
                    .config()
                    .channels
                    .get(&inbound.channel)
                    .and_then(|s| oxibot_config::presentation::Presentation::of(&inbound.channel, s).ok())
                    .unwrap_or_default();
                let mut turn = crate::turn::Turn::chat(chat.clone());
                if shown.watched() {
                    let (watcher, show) = super::drafts::Showing::start(&svc, &chat, &inbound.platform_id, shown);
                    turn.watcher = Some(watcher);
                    showing = Some(show);
                }
                crate::agent::run_turn(&svc, &turn, &text, files.images).await
            };
            tokio::select! {
                result = turn => match result {
                    Ok(text) => text,
                    // Told once per window: after that, nothing is sent.
                    Err(crate::agent::AgentError::Budget(crate::budgets::Stopped { message: None })) => {
                        if let Err(e) = svc.store.finish_inbound_silently(&inbound) {
                            tracing::error!("cannot mark the message answered: {e}");
                        }
                        return;
                    }
                    Err(crate::agent::AgentError::Budget(crate::budgets::Stopped { message: Some(m) })) => m,
                    Err(e) => {
                        let message = e.to_string();
                        svc.audit.record_error(&message);
                        match &e {
                            // Nothing to fix: the provider asks us to wait.
                            crate::agent::AgentError::Llm { error, .. } if error.rate_limited() => {
                                "Sorry, the model is busy right now (its provider asked us to slow down). \
                                 Please try again in a minute."
                                    .to_string()
                            }
                            _ => format!("Sorry, I could not answer: {message}"),
                        }
                    }
                },
                _ = stop.notified() => "Stopped.".to_string(),
            }
        }
    };
    let (edit, draft) = match showing {
        Some(show) => show.finish().await,
        None => (None, None),
    };
    let reply = fit_message(reply);
    match svc.store.finish_inbound_replacing(&inbound, &reply, edit.as_deref()) {
        Ok(id) => {
            let mut send = replacing_send(id, inbound.chat_id, reply, Some(inbound.platform_id), edit);
            if let BrokerToChannel::Send { draft: d, .. } = &mut send {
                *d = draft;
            }
            svc.hub.deliver(&inbound.channel, send).await
        }
        Err(e) => tracing::error!("cannot queue the reply: {e}"),
    }
}

/// At start-up, answers inbound messages that were committed (and acked)
/// before a crash but never answered.
pub async fn resume_pending(svc: Arc<Services>) {
    match svc.store.pending_inbound() {
        Ok(items) => {
            for inbound in items {
                tokio::spawn(answer(svc.clone(), inbound));
            }
        }
        Err(e) => tracing::error!("cannot read the inbound queue: {e}"),
    }
}

/// A reply longer than a channel message carries (a hostile provider's
/// 8 MiB answer) is cut, and says so: sent, it would stop the channel.
fn fit_message(mut reply: String) -> String {
    const NOTE: &str = "\n\n[The answer was cut here: it was longer than a chat message can carry.]";
    let max = oxibot_proto::messages::MAX_TEXT - NOTE.len();
    if reply.len() <= max {
        return reply;
    }
    let mut end = max;
    while !reply.is_char_boundary(end) {
        end -= 1;
    }
    reply.truncate(end);
    reply.push_str(NOTE);
    reply
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_reply_fits_a_channel_message() {
        let long = "é".repeat(oxibot_proto::messages::MAX_TEXT);
        let fit = super::fit_message(long);
        assert!(fit.len() <= oxibot_proto::messages::MAX_TEXT && fit.ends_with("can carry.]"));
        assert_eq!(super::fit_message("short".into()), "short");
    }
}
