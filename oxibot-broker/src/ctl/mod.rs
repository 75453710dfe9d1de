//! The control socket: what `oxibotctl` may ask.

use std::sync::Arc;

use oxibot_proto::messages::{CtlReply, CtlRequest, PairingInfo, MAX_LISTED};
use oxibot_proto::{accept_handshake, FrameError, Role};
use tokio::net::UnixStream;

use crate::broker::Broker;
use crate::services::Services;

mod chat;

pub async fn serve(broker: Arc<Broker>, stream: UnixStream) {
    let conn = match accept_handshake::<CtlRequest, CtlReply>(stream, Role::Broker, Role::Ctl).await {
        Ok(c) => c,
        // Connected and closed without a word: a liveness probe (a second
        // broker checking whether this one runs), not a violation.
        Err(FrameError::Closed) => {
            tracing::debug!("a ctl.sock connection closed before its hello: a liveness probe");
            return;
        }
        Err(e) => {
            broker
                .svc
                .audit
                .log("protocol_violation", &format!("ctl.sock handshake: {e}"));
            return;
        }
    };
    let (mut reader, mut writer) = conn.split();
    // One writer: answers, a chat turn's events and console deliveries
    // come from different tasks.
    // Bounded: a client that stops reading (a terminal paused with
    // Ctrl-S) holds up its own answers, not the broker's memory.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<CtlReply>(chat::QUEUED);
    let writing = tokio::spawn(async move {
        while let Some(reply) = rx.recv().await {
            if let Err(e) = writer.send(&reply).await {
                tracing::debug!("ctl client went away: {e}");
                return;
            }
        }
    });
    let mut client = chat::Client::new(tx.clone());
    loop {
        let request = match reader.recv().await {
            Ok(r) => r,
            Err(FrameError::Closed) => break,
            Err(e) => {
                broker.svc.audit.log("protocol_violation", &format!("ctl.sock: {e}"));
                break;
            }
        };
        let reply = match request {
            CtlRequest::Chat { session, message } => client.start(&broker.svc, session, message),
            CtlRequest::ChatCancel => client.cancel(),
            CtlRequest::ChatCommand { session, text } => chat::command(&broker.svc, &session, &text),
            CtlRequest::ConsoleAttach { session } => client.attach(&broker.svc, &session).await,
            CtlRequest::ConsoleAck { outbox_id } => client.ack(&broker.svc, outbox_id),
            other => Some(handle(&broker, other).await),
        };
        if let Some(reply) = reply {
            if tx.send(reply).await.is_err() {
                break;
            }
        }
    }
    // A running turn goes on: its answer is kept for the next client.
    client.end(&broker.svc);
    drop(tx);
    drop(writing);
}

async fn handle(broker: &Arc<Broker>, request: CtlRequest) -> CtlReply {
    let svc = &broker.svc;
    match request {
        CtlRequest::Status => CtlReply::Status(broker.status()),
        CtlRequest::Agent { session, message } => {
            let turn = crate::turn::Turn::console(&svc.config(), &session);
            agent_reply(crate::agent::run_turn(svc, &turn, &message, Vec::new()).await, svc)
        }
        CtlRequest::Cron(request) => crate::cron::scheduler::admin(svc, request),
        CtlRequest::McpList => CtlReply::McpServers(svc.mcp.list()),
        CtlRequest::ApprovalList => match svc.store.approval_patterns() {
            Ok(learned) => CtlReply::Approvals {
                waiting: svc.approvals.list(),
                learned,
            },
            Err(e) => CtlReply::Error { message: e.to_string() },
        },
        CtlRequest::ApprovalDecide { id, approve, always } => {
            match crate::approval::answer_from_admin(svc, &id, approve, always) {
                Ok(message) => CtlReply::Done { message },
                Err(e) => CtlReply::Error {
                    message: format!("{e}; see `oxibotctl approvals list`"),
                },
            }
        }
        CtlRequest::ApprovalForget { pattern } => match svc.store.remove_approval_pattern(&pattern) {
            Ok(true) => {
                svc.audit.log(
                    "approval_forgotten",
                    &format!("oxibotctl removed the learned pattern \"{pattern}\""),
                );
                CtlReply::Done {
                    message: format!("\"{pattern}\" is asked again from now on"),
                }
            }
            Ok(false) => CtlReply::Error {
                message: format!("no learned pattern \"{pattern}\"; see `oxibotctl approvals list`"),
            },
            Err(e) => CtlReply::Error { message: e.to_string() },
        },
        CtlRequest::BudgetList => match crate::budgets::report(svc) {
            Ok(list) => CtlReply::Budgets(list),
            Err(e) => CtlReply::Error { message: e },
        },
        CtlRequest::BudgetReset { chat } => match crate::budgets::reset(svc, &chat) {
            Ok(message) => CtlReply::Done { message },
            Err(e) => CtlReply::Error { message: e },
        },
        // Served by `serve` itself: they belong to the connection.
        CtlRequest::Chat { .. }
        | CtlRequest::ChatCancel
        | CtlRequest::ChatCommand { .. }
        | CtlRequest::ConsoleAttach { .. }
        | CtlRequest::ConsoleAck { .. } => CtlReply::Error {
            message: "this request belongs to a chat connection".into(),
        },
        CtlRequest::PromptList | CtlRequest::PromptShow { .. } | CtlRequest::PromptAccept { .. } => {
            crate::prompt_files::admin(svc, request).await
        }
        CtlRequest::PairingList => match svc.store.pairings() {
            Ok(list) => {
                let now = oxibot_runtime::clock::unix_now();
                CtlReply::Pairings(
                    list.into_iter()
                        .map(|p| PairingInfo {
                            code: p.code,
                            channel: p.channel,
                            sender: p.sender,
                            status: p.status,
                            age_secs: (now - p.created_at).max(0) as u64,
                        })
                        .collect(),
                )
            }
            Err(e) => CtlReply::Error { message: e.to_string() },
        },
        CtlRequest::PairingDecide { code, approve } => {
            let code = code.trim().to_ascii_uppercase();
            match svc.store.decide_pairing(&code, approve) {
                Ok(Some(p)) => {
                    let verb = if approve { "approved" } else { "denied" };
                    svc.audit.about(
                        "pairing_decided",
                        Some(&p.channel),
                        Some(&p.sender),
                        &format!("code {code} {verb}: channel {} user {}", p.channel, p.sender),
                    );
                    if approve {
                        let chat = crate::turn::ChatRef {
                            channel: p.channel.clone(),
                            chat_id: p.chat_id.clone(),
                        };
                        let text = "You're approved. Say hello!";
                        if let Err(e) = crate::message::queue_and_deliver(svc, &chat, text, None).await {
                            tracing::error!("cannot queue the approval notice: {e}");
                        }
                    }
                    CtlReply::Done {
                        message: format!("{verb} user {} on {}", p.sender, p.channel),
                    }
                }
                Ok(None) => CtlReply::Error {
                    message: format!("no pending pairing with code {code}; see `oxibotctl pairing list`"),
                },
                Err(e) => CtlReply::Error { message: e.to_string() },
            }
        }
        CtlRequest::Reload => match crate::reload::reload(broker) {
            Ok(what) => CtlReply::Done {
                message: format!("reloaded: {what}"),
            },
            Err(e) => CtlReply::Error {
                message: format!("reload refused, the running configuration stays: {e}"),
            },
        },
        CtlRequest::ChannelRestart { channel } => restart_channel(svc, &channel),
        CtlRequest::SessionList => match svc.store.sessions(MAX_LISTED) {
            Ok(list) => CtlReply::Sessions(list),
            Err(e) => CtlReply::Error { message: e.to_string() },
        },
        CtlRequest::SessionShow { session, limit } => match svc.store.session_exists(&session) {
            Ok(true) => match svc.store.session_messages(&session, limit) {
                Ok(list) => CtlReply::History(fit(list, true, |m| m.text.len(), |m| cut(&mut m.text))),
                Err(e) => CtlReply::Error { message: e.to_string() },
            },
            Ok(false) => no_session(&session),
            Err(e) => CtlReply::Error { message: e.to_string() },
        },
        CtlRequest::SessionReset { session } => match svc.store.session_exists(&session) {
            Ok(true) => match svc.store.clear_session(&session) {
                Ok(()) => {
                    svc.audit.about(
                        "session_reset",
                        session.split_once(':').map(|(c, _)| c),
                        None,
                        &format!("oxibotctl cleared the history of session {session}"),
                    );
                    CtlReply::Done {
                        message: format!("session {session} starts afresh"),
                    }
                }
                Err(e) => CtlReply::Error { message: e.to_string() },
            },
            Ok(false) => no_session(&session),
            Err(e) => CtlReply::Error { message: e.to_string() },
        },
        CtlRequest::Audit(query) => match svc.store.audit_entries(&query) {
            Ok(list) => CtlReply::Audit(fit(
                list,
                query.after_id == 0,
                |e| e.detail.len(),
                |e| cut(&mut e.detail),
            )),
            Err(e) => CtlReply::Error { message: e.to_string() },
        },
        CtlRequest::UserDecide { channel, user, allow } => decide_user(svc, &channel, &user, allow),
        CtlRequest::RunTool { name, arguments_json } => {
            svc.audit.log("admin_tool", &format!("oxibotctl ran tool {name}"));
            let turn = crate::turn::Turn {
                by_admin: true,
                ..crate::turn::Turn::console(&svc.config(), "oxibotctl")
            };
            match crate::agent::run_tool_checked(svc, &turn, &name, &arguments_json).await {
                Ok(output) => CtlReply::ToolResult { ok: true, output },
                Err(output) => CtlReply::ToolResult { ok: false, output },
            }
        }
    }
}

pub(crate) fn agent_reply(result: Result<String, crate::agent::AgentError>, svc: &Services) -> CtlReply {
    match result {
        Ok(text) => CtlReply::AgentReply { text },
        Err(e) => {
            let message = e.to_string();
            svc.audit.record_error(&message);
            CtlReply::Error { message }
        }
    }
}

fn no_session(session: &str) -> CtlReply {
    CtlReply::Error {
        message: format!("no session {session}; see `oxibotctl sessions list`"),
    }
}

/// The longest text one listed entry keeps; the whole answer stays well
/// inside a frame.
const ENTRY_TEXT: usize = 4096;
const ANSWER_BUDGET: usize = 768 * 1024;

fn cut(text: &mut String) {
    if text.len() > ENTRY_TEXT {
        let mut end = ENTRY_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(" …[cut]");
    }
}

/// Cuts each entry's text, then keeps what fits the budget: the newest
/// entries (the list is oldest first) for a tail, the oldest for a page
/// that continues after an id (the client asks again from the last one).
fn fit<T>(mut list: Vec<T>, newest: bool, size: impl Fn(&T) -> usize, shorten: impl Fn(&mut T)) -> Vec<T> {
    list.iter_mut().for_each(&shorten);
    let mut total = 0;
    let mut fits = |e: &T| {
        total += size(e) + 64;
        total <= ANSWER_BUDGET
    };
    if newest {
        let keep = list.iter().rev().take_while(|e| fits(e)).count();
        list.split_off(list.len() - keep)
    } else {
        let keep = list.iter().take_while(|e| fits(e)).count();
        list.truncate(keep);
        list
    }
}

fn restart_channel(svc: &Services, channel: &str) -> CtlReply {
    if !svc.config().enabled_channels().iter().any(|c| c == channel) {
        return CtlReply::Error {
            message: format!("channel {channel} is not enabled; see `oxibotctl channels list`"),
        };
    }
    if !svc.hub.drop_link(channel) {
        return CtlReply::Error {
            message: format!(
                "channel {channel} is not connected, so there is nothing to restart; \
                 see `oxibotctl status` and the daemon's log (journalctl -u oxibot-channeld@{channel})"
            ),
        };
    }
    svc.audit.about(
        "channel_restart",
        Some(channel),
        None,
        "oxibotctl asked the daemon to restart",
    );
    CtlReply::Done {
        message: format!("channel {channel}: its daemon was told to stop; its supervisor starts it again"),
    }
}

fn decide_user(svc: &Services, channel: &str, user: &str, allow: bool) -> CtlReply {
    if !svc.config().channels.contains_key(channel) {
        return CtlReply::Error {
            message: format!("no channel {channel} in the configuration"),
        };
    }
    let user = &crate::access::user_id(channel, user);
    if user.is_empty() {
        return CtlReply::Error {
            message: "the user id is empty".into(),
        };
    }
    if allow && crate::access::is_unverified(user) {
        return CtlReply::Error {
            message: format!(
                "{user} is what a mail's From header claimed, unverified: anyone can claim it, so it cannot be \
                 allowed. Set channels.{channel}.authservId so that the mail server vouches for senders, then \
                 allow the plain address"
            ),
        };
    }
    match svc.store.decide_user(channel, user, allow) {
        Ok(()) => {
            let verb = if allow { "allowed" } else { "denied" };
            svc.audit.about(
                "user_decided",
                Some(channel),
                Some(user),
                &format!("oxibotctl {verb} user {user} on {channel}"),
            );
            CtlReply::Done {
                message: format!("user {user} is {verb} on {channel}, whatever allowedUsers says"),
            }
        }
        Err(e) => CtlReply::Error { message: e.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_answers_keep_the_newest_entries_within_the_budget() {
        let list: Vec<String> = (0..1000).map(|i| format!("{i:04}{}", "x".repeat(10_000))).collect();
        let kept = fit(list.clone(), true, String::len, cut);
        assert!(kept.len() < 1000 && !kept.is_empty());
        assert!(kept.last().unwrap().starts_with("0999"), "the newest is kept");
        let page = fit(list, false, String::len, cut);
        assert!(
            page.len() < 1000 && page[0].starts_with("0000"),
            "a page keeps the oldest"
        );
        assert!(kept.iter().all(|t| t.len() <= ENTRY_TEXT + 16));
        let total: usize = kept.iter().map(|t| t.len() + 64).sum();
        assert!(total <= ANSWER_BUDGET);
    }
}
