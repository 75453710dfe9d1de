//! What a chat sees while its turn runs (`channels.<name>.streaming`,
//! `progress`): the answer as the model writes it, in one message edited
//! at most once a second, and a status message listing the tools as they
//! start. Both are drafts: shown on a best-effort basis, never queued.
//!
//! The answer's draft becomes the answer: the final reply goes through
//! the outbox as always, naming the draft's message (`Send.edit`), which
//! the daemon edits instead of posting. The broker, not the daemon, keeps
//! which message a draft is, so a daemon restarted in the middle edits
//! the same message, and a final reply retried after a crash edits it
//! again to the same text: whole, and once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxibot_proto::messages::{BrokerToChannel, ChatEvent};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::services::Services;
use crate::turn::{ChatRef, Watcher};
use oxibot_config::presentation::Presentation;

/// At most one edit a second per draft: the platforms' own pace.
const EDIT_EVERY: Duration = Duration::from_secs(1);
/// How much of the tool list the status message keeps.
const MAX_TOOL_LINES: usize = 20;

/// The drafts being shown, by id: which channel each belongs to, and the
/// platform message it was posted as (once the daemon said so).
#[derive(Default)]
pub struct Drafts {
    next: AtomicU64,
    shown: Mutex<HashMap<u64, Shown>>,
}

/// A draft's channel, and where its platform message id is told.
type Shown = (String, watch::Sender<Option<String>>);

impl Drafts {
    fn open(&self, channel: &str) -> (u64, watch::Receiver<Option<String>>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = watch::channel(None);
        self.lock().insert(id, (channel.to_string(), tx));
        (id, rx)
    }

    fn close(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// The daemon's `DraftShown`. False when the draft is not one of this
    /// channel's (a daemon names only its own) or no longer shown.
    pub fn shown(&self, channel: &str, id: u64, message_id: String) -> bool {
        match self.lock().get(&id) {
            Some((owner, tx)) if owner == channel => {
                tx.send_replace(Some(message_id));
                true
            }
            _ => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Shown>> {
        self.shown.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One draft of one turn.
struct Draft {
    id: u64,
    /// The platform message, once known.
    message: watch::Receiver<Option<String>>,
    /// Posted and not yet answered: another post would make a second message.
    posting: bool,
    /// Sent at least once.
    sent: bool,
    /// What was shown last.
    shown: String,
    last: Option<Instant>,
}

impl Draft {
    fn new(svc: &Services, channel: &str) -> Draft {
        let (id, message) = svc.hub.drafts.open(channel);
        Draft {
            id,
            message,
            posting: false,
            sent: false,
            shown: String::new(),
            last: None,
        }
    }

    /// Shows `text` if the pace allows and it changed. Compared (and
    /// copied) only when due: a long answer in small pieces costs one
    /// look a second, not one per piece.
    async fn show(&mut self, svc: &Services, chat: &ChatRef, reply_to: Option<&str>, text: &str) {
        let message_id = self.message.borrow().clone();
        if message_id.is_some() {
            self.posting = false;
        }
        let due = self.last.is_none_or(|at| at.elapsed() >= EDIT_EVERY);
        if !due || self.posting {
            return;
        }
        let text = clip(text);
        if text.trim().is_empty() || text == self.shown {
            return;
        }
        self.posting = message_id.is_none();
        self.sent = true;
        self.last = Some(Instant::now());
        self.shown = text.to_string();
        let draft = BrokerToChannel::Draft {
            chat_id: chat.chat_id.clone(),
            draft_id: self.id,
            message_id,
            reply_to: reply_to.map(str::to_string),
            text: self.shown.clone(),
        };
        svc.hub.deliver(&chat.channel, draft).await;
    }
}

/// A draft shows the beginning of a long answer: every platform cuts it
/// to a few thousand characters, and a frame carries at most `MAX_TEXT`.
fn clip(text: &str) -> &str {
    let mut end = text.len().min(MAX_DRAFT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// More than any platform shows of a message.
const MAX_DRAFT: usize = 64 * 1024;

/// A watched chat turn's drafts, shown by a task of their own.
pub struct Showing {
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<(Option<String>, Option<u64>)>,
}

impl Showing {
    /// Starts showing the turn whose watcher this returns, as `shown` says.
    /// `reply_to` is the platform id of the message the turn answers.
    pub fn start(svc: &Arc<Services>, chat: &ChatRef, reply_to: &str, shown: Presentation) -> (Watcher, Showing) {
        let (watcher, events) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel();
        let reply_to = Some(reply_to.to_string());
        let done = tokio::spawn(show(svc.clone(), chat.clone(), reply_to, shown, events, stopped));
        (watcher, Showing { stop, done })
    }

    /// The turn ended: the tool list is shown as it ends. Returns what the
    /// final reply replaces: the answer draft's message when the daemon
    /// said it, and the draft's id when it was sent (a daemon that posted
    /// it and has not said so yet still knows it: it posts in order).
    pub async fn finish(self) -> (Option<String>, Option<u64>) {
        let _ = self.stop.send(());
        self.done.await.unwrap_or_default()
    }
}

async fn show(
    svc: Arc<Services>,
    chat: ChatRef,
    reply_to: Option<String>,
    shown: Presentation,
    mut events: mpsc::UnboundedReceiver<ChatEvent>,
    mut stopped: oneshot::Receiver<()>,
) -> (Option<String>, Option<u64>) {
    let mut answer = Draft::new(&svc, &chat.channel);
    let mut tools = Draft::new(&svc, &chat.channel);
    let mut streamed = String::new();
    let mut lines: Vec<String> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let reply_to = reply_to.as_deref();
    loop {
        tokio::select! {
            event = events.recv() => match event {
                // Bounded by the provider's reader (8 MiB an answer).
                Some(ChatEvent::Text { delta }) => streamed.push_str(&delta),
                Some(ChatEvent::Retry) => streamed.clear(),
                // The text before a tool call is not the answer: the next
                // step's text replaces it.
                Some(ChatEvent::Tool { name, summary }) => {
                    streamed.clear();
                    lines.push(format!("⚙ {name} {summary}").trim_end().to_string());
                }
                Some(_) => {}
                None => break,
            },
            _ = tick.tick() => {}
            _ = &mut stopped => break,
        }
        if shown.streaming {
            answer.show(&svc, &chat, reply_to, &streamed).await;
        }
        if shown.progress && !lines.is_empty() {
            tools.show(&svc, &chat, reply_to, &tool_list(&lines)).await;
        }
    }
    // The last tool is listed even if it started in the last second.
    if shown.progress && !lines.is_empty() {
        tools.last = None;
        tools.show(&svc, &chat, reply_to, &tool_list(&lines)).await;
    }
    let message = answer.message.borrow().clone();
    svc.hub.drafts.close(answer.id);
    svc.hub.drafts.close(tools.id);
    (message, answer.sent.then_some(answer.id))
}

fn tool_list(lines: &[String]) -> String {
    let skipped = lines.len().saturating_sub(MAX_TOOL_LINES);
    let mut text = String::from("Working:\n");
    if skipped > 0 {
        text.push_str(&format!("… {skipped} earlier\n"));
    }
    text.push_str(&lines[skipped..].join("\n"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemon_names_only_its_own_drafts() {
        let drafts = Drafts::default();
        let (id, rx) = drafts.open("telegram");
        assert!(!drafts.shown("discord", id, "1".into()));
        assert!(rx.borrow().is_none());
        assert!(drafts.shown("telegram", id, "7".into()));
        assert_eq!(rx.borrow().as_deref(), Some("7"));
        drafts.close(id);
        assert!(!drafts.shown("telegram", id, "8".into()), "a closed draft is gone");
    }

    #[test]
    fn the_tool_list_keeps_the_last_lines() {
        let lines: Vec<String> = (0..25).map(|i| format!("⚙ exec step {i}")).collect();
        let text = tool_list(&lines);
        assert!(text.starts_with("Working:\n… 5 earlier\n⚙ exec step 5"), "{text}");
        assert!(text.ends_with("step 24"));
    }
}
