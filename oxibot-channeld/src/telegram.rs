//! Telegram through teloxide (its `teloxide-core` client), long polling.
//!
//! At-least-once: an update's offset is committed to Telegram (by asking
//! for the next one) only after the broker acknowledged the message, so a
//! crash between the two redelivers it, and the broker drops the duplicate
//! by its id. Replies are acknowledged to the broker only after Telegram
//! accepted every part.

use std::time::Duration;

use oxibot_proto::messages::{Attachment, AttachmentKind};
use teloxide_core::net::Download;
use teloxide_core::payloads::setters::*;
use teloxide_core::requests::{Request, Requester};
use teloxide_core::types::{
    ChatAction, ChatId, FileMeta, InlineKeyboardButton, InlineKeyboardMarkup, Message, MessageId, ParseMode,
    ReplyParameters, Update, UpdateKind,
};
use teloxide_core::{ApiError, Bot, RequestError};
use tokio::sync::mpsc;

use crate::incoming::Incoming;
use crate::link::{Draft, Job, Link, Part};
use crate::{format, Fatal};

/// Telegram's limit, in characters.
const MAX_MESSAGE: usize = 4096;
/// The long-poll timeout: below teloxide's 17 s client timeout, so an idle
/// poll is a normal empty answer, not a timeout error and a 5 s sleep.
const POLL_TIMEOUT_SECS: u32 = 10;
/// Telegram shows "typing…" for 5 s; repeat a little sooner.
const TYPING_EVERY: Duration = Duration::from_secs(4);
const TYPING_MAX: Duration = Duration::from_secs(120);

use oxibot_proto::settings::TokenCredential as Credential;

pub async fn run(link: Link, mut jobs: mpsc::Receiver<Job>, settings: &str, credential: &str) -> Result<(), Fatal> {
    let settings = crate::settings::parse::<oxibot_proto::settings::ApiSettings>("telegram", settings)?;
    let credential: Credential = serde_json::from_str(credential)
        .map_err(|_| Fatal::config("channels.telegram.token is missing from the secrets file".into()))?;
    // One client for the daemon's life: a new one per send wastes a TLS
    // handshake each time.
    let mut bot = Bot::new(credential.token);
    if let Some(base) = settings.api_base {
        let url = url::Url::parse(&base).map_err(|e| Fatal::config(format!("channels.telegram.apiBase: {e}")))?;
        bot = bot.set_api_url(url);
    }

    let me = loop {
        match bot.get_me().send().await {
            Ok(me) => break me,
            Err(e) if is_unauthorized(&e) => {
                let msg = "Telegram refused the bot token (401 Unauthorized): check channels.telegram.token \
                           in the secrets file (from @BotFather)"
                    .to_string();
                link.status(false, Some(msg.clone())).await;
                return Err(Fatal::config(msg));
            }
            Err(e) => {
                link.status(false, Some(format!("cannot reach Telegram: {e}"))).await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    let username = me.user.username.clone().unwrap_or_default();
    tracing::info!(bot = %username, "connected to Telegram");
    link.status(true, None).await;

    let sender = tokio::spawn(outbound(bot.clone(), link.clone(), jobs_take(&mut jobs)));
    let result = poll(&bot, &link, &username).await;
    sender.abort();
    result
}

fn jobs_take(jobs: &mut mpsc::Receiver<Job>) -> mpsc::Receiver<Job> {
    let (tx, rx) = mpsc::channel(1);
    drop(tx);
    std::mem::replace(jobs, rx)
}

fn is_unauthorized(e: &RequestError) -> bool {
    matches!(e, RequestError::Api(ApiError::InvalidToken))
        || matches!(e, RequestError::Api(ApiError::Unknown(s)) if s.contains("Unauthorized"))
}

/// Long polling. The offset moves past an update only once the broker has
/// it (or it is not a message we handle).
async fn poll(bot: &Bot, link: &Link, username: &str) -> Result<(), Fatal> {
    let mut offset: i32 = 0;
    let mut backoff = Duration::from_secs(1);
    let mut failing = false;
    loop {
        let updates = match bot.get_updates().offset(offset).timeout(POLL_TIMEOUT_SECS).send().await {
            Ok(u) => {
                backoff = Duration::from_secs(1);
                if std::mem::take(&mut failing) {
                    tracing::info!("Telegram reachable again");
                    link.status(true, None).await;
                }
                u
            }
            Err(e) if is_unauthorized(&e) => {
                let msg = "Telegram refused the bot token (401 Unauthorized)".to_string();
                link.status(false, Some(msg.clone())).await;
                return Err(Fatal::config(msg));
            }
            Err(e) => {
                tracing::warn!("getUpdates failed: {e}; retrying in {backoff:?}");
                link.status(false, Some(format!("getUpdates failed: {e}"))).await;
                failing = true;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
                continue;
            }
        };
        for update in updates {
            let next = update.id.0 as i32 + 1;
            if let Some((incoming, file)) = read(&update, username) {
                let (attachments, notes) = match file {
                    Some(file) if link.may_fetch(incoming.may_fetch()).await => fetch(bot, file).await,
                    _ => (Vec::new(), Vec::new()),
                };
                let platform_id = incoming.platform_id.clone();
                if let Err(e) = link
                    .deliver_inbound(incoming.into_inbound(attachments, &notes), &platform_id)
                    .await
                {
                    // Not acked: leave the offset, exit, and let the
                    // supervisor restart us; Telegram redelivers.
                    return Err(Fatal::from(e));
                }
                // A pressed button spins until its query is answered.
                if let UpdateKind::CallbackQuery(q) = &update.kind {
                    if let Err(e) = bot.answer_callback_query(q.id.clone()).send().await {
                        tracing::debug!("answerCallbackQuery failed: {e}");
                    }
                }
            }
            offset = next;
        }
    }
}

/// An update as the broker will see it, with the file it carries; None for
/// what is not a user's message with text or a file.
pub(crate) fn read<'u>(update: &'u Update, username: &str) -> Option<(Incoming, Option<Attached<'u>>)> {
    let msg = match &update.kind {
        UpdateKind::Message(msg) => msg,
        UpdateKind::CallbackQuery(q) => return pressed(update, q).map(|i| (i, None)),
        _ => return None,
    };
    let text = msg.text().or(msg.caption()).unwrap_or_default();
    let from = msg.from.as_ref()?;
    let file = attached(msg);
    if text.is_empty() && file.is_none() {
        return None;
    }
    let mentioned = (!username.is_empty() && text.contains(&format!("@{username}")))
        || msg
            .reply_to_message()
            .and_then(|r| r.from.as_ref())
            .is_some_and(|u| u.is_bot && u.username.as_deref() == Some(username));
    let incoming = Incoming {
        // "update/message": unique per bot for de-duplication, and the
        // message id to thread the reply under.
        platform_id: format!("{}/{}", update.id.0, msg.id.0),
        chat_id: msg.chat.id.0.to_string(),
        sender: from.id.0.to_string(),
        text: text.to_string(),
        is_group: !msg.chat.is_private(),
        mentioned,
    };
    Some((incoming, file))
}

/// A pressed button under one of our messages: it says its data in that
/// chat, from the one who pressed it (addressed to us, in a group too).
/// The broker believes it as it would a typed message.
fn pressed(update: &Update, q: &teloxide_core::types::CallbackQuery) -> Option<Incoming> {
    let data = q.data.as_deref().filter(|d| !d.is_empty())?;
    let chat = q.message.as_ref()?.chat();
    Some(Incoming {
        // No message id: the answer is not threaded under the button's.
        platform_id: format!("{}/button", update.id.0),
        chat_id: chat.id.0.to_string(),
        sender: q.from.id.0.to_string(),
        text: data.to_string(),
        is_group: !chat.is_private(),
        mentioned: true,
    })
}

/// A file a message carries.
pub(crate) struct Attached<'a> {
    kind: AttachmentKind,
    meta: &'a FileMeta,
    name: String,
    mime: String,
}

fn mime_or(m: Option<&impl std::fmt::Display>, fallback: &str) -> String {
    m.map_or_else(|| fallback.to_string(), |m| m.to_string())
}

fn attached(msg: &Message) -> Option<Attached<'_>> {
    let id = msg.id.0;
    if let Some(sizes) = msg.photo() {
        // Telegram offers each photo in several sizes: the largest that fits.
        let best = sizes
            .iter()
            .filter(|p| crate::attach::fits(p.file.size.into()))
            .max_by_key(|p| u64::from(p.width) * u64::from(p.height))
            .or(sizes.last())?;
        return Some(Attached {
            kind: AttachmentKind::Image,
            meta: &best.file,
            name: format!("photo-{id}.jpg"),
            mime: "image/jpeg".into(),
        });
    }
    if let Some(v) = msg.voice() {
        return Some(Attached {
            kind: AttachmentKind::Audio,
            meta: &v.file,
            name: format!("voice-{id}.ogg"),
            mime: mime_or(v.mime_type.as_ref(), "audio/ogg"),
        });
    }
    if let Some(a) = msg.audio() {
        return Some(Attached {
            kind: AttachmentKind::Audio,
            meta: &a.file,
            name: a.file_name.clone().unwrap_or_else(|| format!("audio-{id}.mp3")),
            mime: mime_or(a.mime_type.as_ref(), "audio/mpeg"),
        });
    }
    let d = msg.document()?;
    let mime = mime_or(d.mime_type.as_ref(), "application/octet-stream");
    Some(Attached {
        // A photo sent "as a file" is still a picture.
        kind: crate::attach::kind_for(&mime),
        meta: &d.file,
        name: d.file_name.clone().unwrap_or_else(|| format!("document-{id}")),
        mime,
    })
}

/// Downloads a file (getFile, then the file URL), with a few tries; what
/// cannot be passed on becomes a note for the model instead.
async fn fetch(bot: &Bot, file: Attached<'_>) -> (Vec<Attachment>, Vec<String>) {
    let size = u64::from(file.meta.size);
    if !crate::attach::fits(size) {
        return (Vec::new(), vec![crate::attach::too_large(&file.name, size)]);
    }
    let mut last_error = String::new();
    for attempt in 0..3u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
        }
        match download(bot, file.meta).await {
            Ok(data) if crate::attach::fits(data.len() as u64) => {
                let attachment = Attachment {
                    kind: file.kind,
                    name: file.name,
                    mime: file.mime,
                    data,
                };
                return (vec![attachment], Vec::new());
            }
            Ok(data) => {
                return (
                    Vec::new(),
                    vec![crate::attach::too_large(&file.name, data.len() as u64)],
                )
            }
            Err(e) => {
                tracing::warn!(file = %file.name, attempt, "download failed: {e}");
                last_error = e.to_string();
            }
        }
    }
    (Vec::new(), vec![crate::attach::not_downloaded(&file.name, &last_error)])
}

/// Why a file could not be fetched from Telegram (tried again, then told
/// to the model as "not downloaded").
#[derive(Debug, thiserror::Error)]
enum DownloadError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Download(#[from] teloxide_core::DownloadError),
}

async fn download(bot: &Bot, meta: &FileMeta) -> Result<Vec<u8>, DownloadError> {
    let file = bot.get_file(meta.id.clone()).send().await?;
    let mut data = Vec::new();
    bot.download_file(&file.path, &mut data).await?;
    Ok(data)
}

/// Sends what the broker asks, and keeps typing indicators alive.
async fn outbound(bot: Bot, link: Link, jobs: mpsc::Receiver<Job>) {
    let typer = bot.clone();
    let drafter = bot.clone();
    let typing = move |chat: &str| {
        let id = chat.parse::<i64>().ok()?;
        let bot = typer.clone();
        Some(async move {
            let started = tokio::time::Instant::now();
            while started.elapsed() < TYPING_MAX {
                let _ = bot.send_chat_action(ChatId(id), ChatAction::Typing).send().await;
                tokio::time::sleep(TYPING_EVERY).await;
            }
        })
    };
    let sender = move |part: Part| {
        let bot = bot.clone();
        async move { send(&bot, part).await }
    };
    let split = |text: &str| format::split_for_telegram(text, MAX_MESSAGE);
    let drafts = crate::link::DraftFn(move |d: Draft| {
        let bot = drafter.clone();
        async move { draft(&bot, d).await }
    });
    crate::link::serve_jobs(link, jobs, split, sender, typing, drafts).await
}

/// Shows a draft as plain text (a half-written answer is not yet valid
/// Markdown): posted the first time, edited after.
async fn draft(bot: &Bot, d: Draft) -> Result<Option<String>, String> {
    let chat = d
        .chat_id
        .parse::<i64>()
        .map_err(|_| format!("bad Telegram chat id {}", d.chat_id))?;
    let text = crate::link::draft_text(&d.text, MAX_MESSAGE);
    match d.message_id.as_deref().and_then(|m| m.parse::<i32>().ok()) {
        Some(m) => match bot.edit_message_text(ChatId(chat), MessageId(m), text).send().await {
            Ok(_) | Err(RequestError::Api(ApiError::MessageNotModified)) => Ok(None),
            Err(e) => Err(e.to_string()),
        },
        None => {
            let mut post = bot.send_message(ChatId(chat), text);
            if let Some(m) = replied(d.reply_to.as_deref()) {
                post = post.reply_parameters(ReplyParameters::new(MessageId(m)).allow_sending_without_reply());
            }
            post.send()
                .await
                .map(|sent| Some(sent.id.0.to_string()))
                .map_err(|e| e.to_string())
        }
    }
}

/// One part of a reply, as HTML; the first part answers the user's message.
async fn send(bot: &Bot, part: Part) -> Result<(), (String, bool)> {
    let chat: i64 = part
        .chat_id
        .parse()
        .map_err(|_| (format!("bad Telegram chat id {}", part.chat_id), false))?;
    let reply_msg = replied(part.reply_to.as_deref().filter(|_| part.index == 0));
    let html = format::markdown_to_telegram_html(&part.text);
    // Telegram carries at most 64 bytes of callback data; a longer button
    // is left out (the text says the same).
    let buttons: Vec<InlineKeyboardButton> = part
        .buttons
        .iter()
        .filter(|b| (1..=64).contains(&b.says.len()))
        .map(|b| InlineKeyboardButton::callback(b.label.clone(), b.says.clone()))
        .collect();
    let keyboard = (!buttons.is_empty()).then(|| InlineKeyboardMarkup::new(vec![buttons]));
    // The draft a streamed answer was shown in becomes the answer. Editing
    // it again to the same text (a retry) changes nothing: shown once.
    if let Some(m) = part.edit.as_deref().and_then(|m| m.parse::<i32>().ok()) {
        let mut edit = bot
            .edit_message_text(ChatId(chat), MessageId(m), html.clone())
            .parse_mode(ParseMode::Html);
        if let Some(k) = keyboard.clone() {
            edit = edit.reply_markup(k);
        }
        match edit.send().await {
            Ok(_) | Err(RequestError::Api(ApiError::MessageNotModified)) => return Ok(()),
            Err(e) => match failure(e) {
                // Tried again later, as an edit.
                (why, true) => return Err((why, true)),
                // Deleted, too old to edit, refused: the answer is posted
                // instead, never lost with the draft.
                (why, false) => tracing::warn!("the draft could not become the answer ({why}); posting it"),
            },
        }
    }
    let mut req = bot.send_message(ChatId(chat), html).parse_mode(ParseMode::Html);
    if let Some(m) = reply_msg {
        req = req.reply_parameters(ReplyParameters::new(MessageId(m)).allow_sending_without_reply());
    }
    if let Some(k) = keyboard {
        req = req.reply_markup(k);
    }
    req.send().await.map(drop).map_err(failure)
}

/// The message id in a platform id ("chat/message").
fn replied(platform_id: Option<&str>) -> Option<i32> {
    platform_id?.split('/').nth(1)?.parse().ok()
}

/// A refused send, and whether trying again could help.
fn failure(e: RequestError) -> (String, bool) {
    let retryable = matches!(
        e,
        RequestError::Network(_) | RequestError::RetryAfter(_) | RequestError::Io(_)
    );
    (e.to_string(), retryable)
}
