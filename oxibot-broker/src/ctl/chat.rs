//! A chat client's connection (`oxibotctl chat`): one watched turn at a
//! time, streamed as it runs; its cancel; the chat commands, which never
//! reach the model; and the console chat it is attached to.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use oxibot_proto::messages::{ChatEvent, CtlReply};
use tokio::sync::{mpsc, oneshot};

use crate::console::ClientTx;
use crate::services::Services;
use crate::turn::{ChatRef, Turn, CONSOLE};

/// Replies queued for a client's connection at most.
pub(super) const QUEUED: usize = 256;

pub(super) struct Client {
    tx: ClientTx,
    /// The running turn's cancel, and whether it ended.
    running: Option<(oneshot::Sender<()>, Arc<AtomicBool>)>,
    /// The console chat this client shows (its name).
    attached: Option<String>,
    /// Set when the connection ends: a turn still running keeps its
    /// answer in the outbox instead of sending it nowhere.
    gone: Arc<AtomicBool>,
}

impl Client {
    pub(super) fn new(tx: ClientTx) -> Client {
        Client {
            tx,
            running: None,
            attached: None,
            gone: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Starts a watched turn; its events and its answer come later.
    pub(super) fn start(&mut self, svc: &Arc<Services>, session: String, message: String) -> Option<CtlReply> {
        if self
            .running
            .as_ref()
            .is_some_and(|(_, ended)| !ended.load(Ordering::Acquire))
        {
            return Some(CtlReply::Error {
                message: "this client's previous message is still being answered; wait, or cancel it".into(),
            });
        }
        let (cancel_tx, cancel_rx) = oneshot::channel();
        let ended = Arc::new(AtomicBool::new(false));
        self.running = Some((cancel_tx, ended.clone()));
        let (events, mut watched) = mpsc::unbounded_channel();
        let turn = Turn {
            watcher: Some(events.clone()),
            ..Turn::console(&svc.config(), &session)
        };
        // Events and the answer go out in the order they happened, through
        // one forwarder.
        let tx = self.tx.clone();
        let gone = self.gone.clone();
        let svc2 = svc.clone();
        let chat = turn.origin.clone().filter(ChatRef::is_console);
        tokio::spawn(async move {
            // The turn never waits for the client: events queue here, the
            // streamed text of a slow reader merged into one piece.
            let mut queue: VecDeque<ChatEvent> = VecDeque::new();
            let mut ended = false;
            while !(ended && queue.is_empty()) {
                tokio::select! {
                    event = watched.recv(), if !ended => match event {
                        Some(ChatEvent::Text { delta }) => match queue.back_mut() {
                            Some(ChatEvent::Text { delta: queued }) => queued.push_str(&delta),
                            _ => queue.push_back(ChatEvent::Text { delta }),
                        },
                        Some(event) => queue.push_back(event),
                        None => ended = true,
                    },
                    permit = tx.reserve(), if !queue.is_empty() => {
                        let Some(event) = queue.pop_front() else { continue };
                        match (permit, event) {
                            // The client left: its answer waits for the next.
                            (_, ChatEvent::Answer { text }) if gone.load(Ordering::Acquire) => {
                                keep_for_later(&svc2, chat.as_ref(), &text).await;
                            }
                            (Ok(permit), event) => permit.send(CtlReply::Chat(event)),
                            (Err(_), ChatEvent::Answer { text }) => keep_for_later(&svc2, chat.as_ref(), &text).await,
                            (Err(_), _) => {}
                        }
                    }
                }
            }
        });
        let svc = svc.clone();
        tokio::spawn(async move {
            let stop = svc.sessions.stopper(&turn.session);
            let run = crate::agent::run_turn(&svc, &turn, &message, Vec::new());
            let event = tokio::select! {
                result = run => match super::agent_reply(result, &svc) {
                    CtlReply::AgentReply { text } => ChatEvent::Answer { text },
                    CtlReply::Error { message } => ChatEvent::Answer { text: format!("Sorry, I could not answer: {message}") },
                    _ => ChatEvent::Cancelled,
                },
                // A dropped sender (the client left) lets the turn go on.
                Ok(()) = cancel_rx => ChatEvent::Cancelled,
                _ = stop.notified() => ChatEvent::Cancelled,
            };
            let _ = events.send(event);
            ended.store(true, Ordering::Release);
        });
        None
    }

    /// Stops the running turn, as `/stop` does: the turn answers
    /// `Cancelled`. A cancel that comes after the turn ended is no error
    /// (the client pressed Ctrl-C as the answer arrived): nothing answers it.
    pub(super) fn cancel(&mut self) -> Option<CtlReply> {
        if let Some((cancel, ended)) = self.running.take() {
            if !ended.load(Ordering::Acquire) {
                let _ = cancel.send(());
            }
        }
        None
    }

    /// Shows the console chat's messages here: those waiting now, and
    /// those that come while the client stays.
    pub(super) async fn attach(&mut self, svc: &Services, session: &str) -> Option<CtlReply> {
        let Some(name) = session.strip_prefix("console:").filter(|n| !n.is_empty()) else {
            return Some(CtlReply::Error {
                message: format!("{session} is not a console chat (console:NAME); only those can be attached"),
            });
        };
        if let Some(previous) = self.attached.replace(name.to_string()) {
            svc.hub.consoles.detach(&previous, &self.tx);
        }
        // Attached first: a message queued meanwhile is shown twice at
        // worst, and the client drops the second by its id.
        svc.hub.consoles.attach(name, self.tx.clone());
        let waiting = match svc.store.pending_outbox(CONSOLE) {
            Ok(waiting) => waiting,
            Err(e) => return Some(CtlReply::Error { message: e.to_string() }),
        };
        for message in waiting.into_iter().filter(|m| m.chat_id == name) {
            let delivered = CtlReply::Chat(ChatEvent::Delivered {
                outbox_id: message.id as u64,
                text: message.text,
                buttons: message.buttons,
            });
            if self.tx.send(delivered).await.is_err() {
                break;
            }
        }
        Some(CtlReply::Done {
            message: format!("attached to {session}"),
        })
    }

    /// The client showed a delivered message. Nothing answers it: an
    /// answer would arrive in the middle of a turn's events.
    pub(super) fn ack(&self, svc: &Services, outbox_id: u64) -> Option<CtlReply> {
        let id = i64::try_from(outbox_id).unwrap_or(i64::MAX);
        match svc.store.outbox_delivered(CONSOLE, id) {
            Ok(true) => {}
            Ok(false) => tracing::debug!(outbox_id, "a console message acknowledged twice, or not one"),
            Err(e) => tracing::error!(outbox_id, "cannot mark a console message shown: {e}"),
        }
        None
    }

    pub(super) fn end(&mut self, svc: &Services) {
        self.gone.store(true, Ordering::Release);
        if let Some(name) = self.attached.take() {
            svc.hub.consoles.detach(&name, &self.tx);
        }
    }
}

/// The answer of a turn whose client left: queued for the console chat's
/// next client (a session without a chat keeps it in its history only).
async fn keep_for_later(svc: &Services, chat: Option<&ChatRef>, text: &str) {
    if let Some(chat) = chat {
        if let Err(e) = crate::message::queue_and_deliver(svc, chat, text, None).await {
            tracing::error!("cannot keep an answer for the console: {e}");
        }
    }
}

/// A chat command from the chat client, run as the chat platforms run it;
/// `/approve` and `/deny` are the admin's answers.
pub(super) fn command(svc: &Services, session: &str, text: &str) -> Option<CtlReply> {
    let Some(cmd) = crate::commands::parse(text) else {
        return Some(CtlReply::Error {
            message: format!("{text}: not a chat command; /help lists them"),
        });
    };
    let Some((channel, chat_id)) = session.split_once(':') else {
        return Some(CtlReply::Error {
            message: format!("{session} names no chat (channel:chat)"),
        });
    };
    let reply = match cmd {
        crate::commands::Command::Approve | crate::commands::Command::Deny => {
            let mut words = text.split_whitespace().skip(1);
            let code = words.next().unwrap_or_default();
            let always = words.next().is_some_and(|w| w.eq_ignore_ascii_case("always"));
            let approve = cmd == crate::commands::Command::Approve;
            crate::approval::answer_from_admin(svc, code, approve, always)
        }
        _ => {
            let chat = ChatRef {
                channel: channel.to_string(),
                chat_id: chat_id.to_string(),
            };
            Ok(crate::commands::run(svc, &chat, "oxibotctl", text, cmd))
        }
    };
    Some(match reply {
        Ok(message) => CtlReply::Done { message },
        Err(message) => CtlReply::Error { message },
    })
}
