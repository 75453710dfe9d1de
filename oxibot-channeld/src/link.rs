//! The connection to the broker: one writer, acks matched to the messages
//! waiting for them, and everything else handed to the platform adapter.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxibot_proto::messages::{BrokerToChannel, Button, ChannelToBroker, MAX_ID, MAX_PART};
use oxibot_proto::{Checked, ConnReader, ConnWriter, FrameError};
use tokio::sync::{mpsc, oneshot};

/// What the adapter must do for the broker.
#[derive(Debug)]
pub enum Job {
    Send(Reply),
    Typing { chat_id: String },
    Draft(Draft),
}

/// A draft to show: a streamed answer, or the tools running (see
/// `BrokerToChannel::Draft`).
#[derive(Debug)]
pub struct Draft {
    pub chat_id: String,
    pub draft_id: u64,
    /// The message to edit; None: post one.
    pub message_id: Option<String>,
    /// The message the answer replies to (its thread).
    pub reply_to: Option<String>,
    pub text: String,
}

/// Shows drafts, where the platform can edit a message.
pub(crate) trait DraftShower {
    /// Edits the draft's message, or posts it and returns its id.
    async fn show(&mut self, draft: Draft) -> Result<Option<String>, String>;
}

/// For platforms that cannot edit a message: drafts are not shown, and
/// the answer arrives whole.
pub(crate) struct NoDrafts;

impl DraftShower for NoDrafts {
    async fn show(&mut self, _: Draft) -> Result<Option<String>, String> {
        Ok(None)
    }
}

/// A closure as a [`DraftShower`].
pub(crate) struct DraftFn<F>(pub F);

impl<F, Fut> DraftShower for DraftFn<F>
where
    F: FnMut(Draft) -> Fut,
    Fut: std::future::Future<Output = Result<Option<String>, String>>,
{
    async fn show(&mut self, draft: Draft) -> Result<Option<String>, String> {
        (self.0)(draft).await
    }
}

/// The most of a draft's text a platform is given: the final answer is
/// split at the platform's limit; a draft shows its beginning.
pub fn draft_text(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars.saturating_sub(1)) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// One part of a reply, as a platform sends it.
#[derive(Debug, Clone)]
pub struct Part {
    /// The outbox message this part belongs to: with `index`, the same on
    /// every attempt, so a platform with idempotency keys can refuse a repeat.
    pub outbox_id: u64,
    pub chat_id: String,
    /// 0 for the first part of the reply.
    pub index: usize,
    pub text: String,
    /// The platform id of the message the reply answers (each platform
    /// decides which parts carry it: Telegram and Discord the first,
    /// Slack every part, to keep the thread).
    pub reply_to: Option<String>,
    /// Buttons under this part (the last part of a reply that has them).
    pub buttons: Vec<Button>,
    /// The platform message this part replaces (a draft): edited, not
    /// posted. Only ever on the first part.
    pub edit: Option<String>,
}

/// Delivers one part of a reply to a platform.
pub(crate) trait PartSender {
    async fn send_part(&mut self, part: Part) -> Result<(), (String, bool)>;
}

/// A closure as a [`PartSender`].
struct SendFn<F>(F);

impl<F, Fut> PartSender for SendFn<F>
where
    F: FnMut(Part) -> Fut,
    Fut: std::future::Future<Output = Result<(), (String, bool)>>,
{
    async fn send_part(&mut self, part: Part) -> Result<(), (String, bool)> {
        (self.0)(part).await
    }
}

/// One outbox message to deliver.
#[derive(Debug)]
pub struct Reply {
    pub outbox_id: u64,
    pub chat_id: String,
    pub text: String,
    /// The platform id of the message it answers, for threading.
    pub reply_to: Option<String>,
    /// Parts an earlier attempt delivered: not sent again.
    pub first_part: u32,
    /// Buttons under the last part.
    pub buttons: Vec<Button>,
    /// The draft message the first part replaces.
    pub edit: Option<String>,
    /// The draft it replaces, when the broker did not know its message:
    /// the one this daemon posted for it, if any.
    pub draft: Option<u64>,
}

/// A message already checked against the broker's limits (so the writer
/// never meets one it cannot encode), and who waits for it to be written.
type Outgoing = (Checked<ChannelToBroker>, Option<oneshot::Sender<()>>);

/// Cuts `text` to at most `max` bytes, at a character boundary.
fn clip(text: &mut String, max: usize) {
    if text.len() > max {
        let mut at = max;
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
    }
}

/// The broker link failed a message: the daemon gives up and its
/// supervisor starts a fresh one (nothing acked is lost).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the broker connection is closed")]
    Closed,
    #[error("the broker connection closed before the ack")]
    ClosedBeforeAck,
    #[error("no ack from the broker within {0} s")]
    NoAck(u64),
    #[error("too many attachments")]
    TooManyAttachments,
    /// Over the protocol's limits: not sent, and the link lives on.
    #[error("not passed to the broker: {0}")]
    Refused(FrameError),
}

#[derive(Clone)]
pub struct Link {
    out: mpsc::Sender<Outgoing>,
    /// Callers waiting for an `Ack`, by platform id. Several may wait for
    /// the same message: a platform that redelivers it (Slack retries an
    /// envelope on another connection) gets one commit and one ack for all.
    acks: Arc<Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>>,
    /// Callers waiting for a `FetchAnswer`, by platform id.
    fetch_answers: Arc<Mutex<HashMap<String, oneshot::Sender<bool>>>>,
    /// Held while a message's file pieces and the message itself go out, so
    /// that pieces of two messages never interleave.
    inbound_turn: Arc<tokio::sync::Mutex<()>>,
    /// Turns true when the broker is gone (or the daemon gave up on it).
    gone: Arc<tokio::sync::watch::Sender<bool>>,
}

/// How long the broker may take to commit a message before we give up on
/// the connection (the message is then redelivered by the platform).
const ACK_TIMEOUT: Duration = Duration::from_secs(60);

/// Works through the broker's jobs for a platform: `split` cuts a reply
/// into the parts the platform takes (at its length limit); `send` delivers
/// one part; `typing` makes the repeating indicator task for a chat (None
/// when the platform has none). An indicator stops when its chat's reply
/// goes out.
pub async fn serve_jobs<P, S, SF, T, TF>(
    link: Link,
    mut jobs: mpsc::Receiver<Job>,
    split: P,
    send: S,
    typing: T,
    mut drafts: impl DraftShower,
) where
    P: Fn(&str) -> Vec<String>,
    S: FnMut(Part) -> SF,
    SF: std::future::Future<Output = Result<(), (String, bool)>>,
    T: Fn(&str) -> Option<TF>,
    TF: std::future::Future<Output = ()> + Send + 'static,
{
    let mut indicators: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut send = SendFn(send);
    // The drafts this daemon posted, newest last (a few turns' worth): a
    // reply that replaces one the broker has not heard of yet finds it here.
    let mut posted: std::collections::VecDeque<(u64, String)> = std::collections::VecDeque::new();
    while let Some(job) = jobs.recv().await {
        match job {
            Job::Typing { chat_id } => {
                if let Some(task) = typing(&chat_id) {
                    if let Some(old) = indicators.insert(chat_id, tokio::spawn(task)) {
                        old.abort();
                    }
                }
            }
            Job::Draft(draft) => {
                let draft_id = draft.draft_id;
                match drafts.show(draft).await {
                    Ok(Some(message_id)) => {
                        let mut message_id = message_id;
                        clip(&mut message_id, MAX_ID);
                        if posted.len() >= 256 {
                            posted.pop_front();
                        }
                        posted.push_back((draft_id, message_id.clone()));
                        if link
                            .send(ChannelToBroker::DraftShown { draft_id, message_id })
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(None) => {}
                    // Best effort: the final answer still comes whole.
                    Err(e) => tracing::debug!(draft_id, "a draft was not shown: {e}"),
                }
            }
            Job::Send(mut reply) => {
                if reply.edit.is_none() {
                    reply.edit = reply
                        .draft
                        .and_then(|d| posted.iter().find(|(id, _)| *id == d))
                        .map(|(_, m)| m.clone());
                }
                if let Some(t) = indicators.remove(&reply.chat_id) {
                    t.abort();
                }
                let parts = split(&reply.text);
                let delivered = link.deliver_parts(&reply, parts, &mut send).await;
                if delivered.is_err() {
                    return;
                }
            }
        }
    }
}

impl Link {
    /// Starts the reader and writer tasks. The returned receiver yields
    /// the broker's jobs; it closes when the broker goes away.
    pub fn start(
        mut reader: ConnReader<BrokerToChannel>,
        mut writer: ConnWriter<ChannelToBroker>,
    ) -> (Link, mpsc::Receiver<Job>) {
        let (out, mut out_rx) = mpsc::channel::<Outgoing>(64);
        let (jobs_tx, jobs) = mpsc::channel::<Job>(64);
        let acks: Arc<Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>> = Arc::default();
        let fetch_answers: Arc<Mutex<HashMap<String, oneshot::Sender<bool>>>> = Arc::default();
        let answers = fetch_answers.clone();
        tokio::spawn(async move {
            while let Some((msg, written)) = out_rx.recv().await {
                if writer.send_checked(&msg).await.is_err() {
                    break;
                }
                if let Some(w) = written {
                    let _ = w.send(());
                }
            }
        });
        let waiting = acks.clone();
        let gone = Arc::new(tokio::sync::watch::channel(false).0);
        let gone_tx = gone.clone();
        tokio::spawn(async move {
            loop {
                match reader.recv().await {
                    Ok(BrokerToChannel::Ack { platform_id }) => {
                        let waiters = waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(&platform_id);
                        for w in waiters.unwrap_or_default() {
                            let _ = w.send(());
                        }
                    }
                    Ok(BrokerToChannel::Send {
                        outbox_id,
                        chat_id,
                        text,
                        reply_to,
                        first_part,
                        buttons,
                        edit,
                        draft,
                    }) => {
                        let _ = jobs_tx
                            .send(Job::Send(Reply {
                                outbox_id,
                                chat_id,
                                text,
                                reply_to,
                                first_part,
                                buttons,
                                edit,
                                draft,
                            }))
                            .await;
                    }
                    Ok(BrokerToChannel::Draft {
                        chat_id,
                        draft_id,
                        message_id,
                        reply_to,
                        text,
                    }) => {
                        let draft = Draft {
                            chat_id,
                            draft_id,
                            message_id,
                            reply_to,
                            text,
                        };
                        let _ = jobs_tx.send(Job::Draft(draft)).await;
                    }
                    Ok(BrokerToChannel::Typing { chat_id }) => {
                        let _ = jobs_tx.send(Job::Typing { chat_id }).await;
                    }
                    Ok(BrokerToChannel::FetchAnswer { platform_id, allowed }) => {
                        if let Some(w) = answers.lock().unwrap_or_else(|p| p.into_inner()).remove(&platform_id) {
                            let _ = w.send(allowed);
                        }
                    }
                    Ok(BrokerToChannel::Shutdown) | Err(FrameError::Closed) => break,
                    Ok(BrokerToChannel::Setup { .. }) => {
                        tracing::error!("the broker sent Setup twice; closing");
                        break;
                    }
                    Err(e) => {
                        tracing::error!("bad frame from the broker: {e}");
                        break;
                    }
                }
            }
            // Dropping jobs_tx and the ack senders tells everyone the broker is gone.
            waiting.lock().unwrap_or_else(|p| p.into_inner()).clear();
            answers.lock().unwrap_or_else(|p| p.into_inner()).clear();
            gone_tx.send_replace(true);
        });
        (
            Link {
                out,
                acks,
                fetch_answers,
                inbound_turn: Arc::default(),
                gone,
            },
            jobs,
        )
    }

    /// Resolves when the broker connection has ended: the daemon must then
    /// stop at once, not go on talking to its platform with its credential.
    pub async fn closed(&self) {
        let mut gone = self.gone.subscribe();
        let _ = gone.wait_for(|g| *g).await;
    }

    /// Whether the broker is gone (or the daemon gave up on it).
    pub fn is_gone(&self) -> bool {
        *self.gone.borrow()
    }

    /// Gives up on the broker (it took no ack in time): the daemon stops as
    /// if the connection had closed, and the supervisor starts a fresh one.
    /// For adapters whose platform client calls back into us, where no
    /// error can be returned to `run`.
    pub fn give_up(&self) {
        self.gone.send_replace(true);
    }

    pub async fn send(&self, msg: ChannelToBroker) -> Result<(), LinkError> {
        let checked = Checked::new(&msg).map_err(LinkError::Refused)?;
        self.out.send((checked, None)).await.map_err(|_| LinkError::Closed)
    }

    /// Hands a message to the broker and waits until it is committed.
    /// A message the protocol cannot carry (an id over its bound: a
    /// stranger's 300-byte From address) is skipped with a warning and
    /// reported as handled, so the platform cursor moves past it: one such
    /// message must not stop the channel at every restart. A file name,
    /// a type or a text over its bound is cut to fit instead.
    pub async fn deliver_inbound(&self, mut msg: ChannelToBroker, platform_id: &str) -> Result<(), LinkError> {
        let mut pieces = Vec::new();
        if let ChannelToBroker::Inbound { attachments, text, .. } = &mut msg {
            clip(text, oxibot_proto::messages::MAX_TEXT);
            // Files travel ahead of their message, a piece per frame.
            for (index, a) in attachments.iter_mut().enumerate() {
                let index = u8::try_from(index).map_err(|_| LinkError::TooManyAttachments)?;
                clip(&mut a.name, MAX_ID);
                clip(&mut a.mime, MAX_ID);
                for piece in std::mem::take(&mut a.data).chunks(MAX_PART) {
                    pieces.push(ChannelToBroker::FilePart {
                        platform_id: platform_id.to_string(),
                        index,
                        data: piece.to_vec(),
                    });
                }
            }
        }
        if let Err(why) = Checked::new(&msg) {
            tracing::warn!(
                "a platform message cannot be passed to the broker ({why}); skipped, and the platform told it was handled"
            );
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        self.acks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(platform_id.to_string())
            .or_default()
            .push(tx);
        {
            let _turn = self.inbound_turn.lock().await;
            for piece in pieces {
                self.send(piece).await?;
            }
            self.send(msg).await?;
        }
        match tokio::time::timeout(ACK_TIMEOUT, rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(LinkError::ClosedBeforeAck),
            Err(_) => Err(LinkError::NoAck(ACK_TIMEOUT.as_secs())),
        }
    }

    /// Asks the broker whether a message's sender would be admitted, before
    /// its files are downloaded. False when the broker says no or is gone.
    pub async fn may_fetch(&self, question: ChannelToBroker) -> bool {
        let ChannelToBroker::MayFetch { platform_id, .. } = &question else {
            return false;
        };
        let (tx, rx) = oneshot::channel();
        self.fetch_answers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(platform_id.clone(), tx);
        if self.send(question).await.is_err() {
            return false;
        }
        matches!(tokio::time::timeout(ACK_TIMEOUT, rx).await, Ok(Ok(true)))
    }

    /// Sends the parts of `reply` that no earlier attempt delivered, one at
    /// a time, telling the broker after each that the platform took it (so
    /// a failure, or a crash, later in the reply never repeats the parts
    /// before it), then how the whole ended. Err only when the broker is gone.
    pub(crate) async fn deliver_parts(
        &self,
        reply: &Reply,
        parts: Vec<String>,
        send: &mut impl PartSender,
    ) -> Result<(), LinkError> {
        let total = parts.len();
        for (i, text) in parts.into_iter().enumerate().skip(reply.first_part as usize) {
            // A blank part (a platform refuses an empty message) counts as sent.
            if !text.trim().is_empty() {
                let part = Part {
                    outbox_id: reply.outbox_id,
                    chat_id: reply.chat_id.clone(),
                    index: i,
                    text,
                    reply_to: reply.reply_to.clone(),
                    buttons: if i + 1 == total {
                        reply.buttons.clone()
                    } else {
                        Vec::new()
                    },
                    edit: if i == 0 { reply.edit.clone() } else { None },
                };
                if let Err(failure) = send.send_part(part).await {
                    return self.report(reply.outbox_id, Err(failure)).await;
                }
            }
            if i + 1 < total {
                self.send(ChannelToBroker::PartDelivered {
                    outbox_id: reply.outbox_id,
                    parts: (i + 1) as u32,
                })
                .await?;
            }
        }
        self.report(reply.outbox_id, Ok(())).await
    }

    /// Tells the broker how a `Send` ended: delivered, or failed (and
    /// whether trying again could help).
    pub async fn report(&self, outbox_id: u64, outcome: Result<(), (String, bool)>) -> Result<(), LinkError> {
        let msg = match outcome {
            Ok(()) => ChannelToBroker::Delivered { outbox_id },
            Err((error, retryable)) => {
                tracing::warn!(outbox_id, retryable, %error, "the platform did not take the message");
                let mut error = error;
                clip(&mut error, 4096);
                ChannelToBroker::SendFailed {
                    outbox_id,
                    error,
                    retryable,
                }
            }
        };
        self.send(msg).await
    }

    /// Reports the connection state, and waits until it is on the wire: a
    /// daemon about to exit on a fatal error must not lose its last word.
    pub async fn status(&self, connected: bool, mut last_error: Option<String>) {
        if let Some(e) = last_error.as_mut() {
            clip(e, 4096);
        }
        let (tx, rx) = oneshot::channel();
        let Ok(checked) = Checked::new(&ChannelToBroker::Status { connected, last_error }) else {
            return;
        };
        if self.out.send((checked, Some(tx))).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
    }
}
