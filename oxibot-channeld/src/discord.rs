//! Discord through serenity: its gateway client for events, its HTTP
//! client for replies. DMs are direct messages; guild messages go through
//! the group policy (mention by default).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use oxibot_proto::messages::{Attachment, MAX_ATTACHMENTS, MAX_FILE_BYTES};
use serenity::all::{
    ButtonStyle, ChannelId, ComponentInteraction, Context, CreateActionRow, CreateAllowedMentions, CreateButton,
    CreateInteractionResponse, CreateMessage, EditMessage, EventHandler, GatewayIntents, GetMessages, Http,
    HttpBuilder, Interaction, Message, MessageId, Nonce, Ready, UserId,
};
use serenity::async_trait;
use tokio::sync::mpsc;

use crate::incoming::Incoming;
use crate::link::{Draft, Job, Link, Part};
use crate::{format, Fatal};

/// Discord's limit, in characters.
const MAX_MESSAGE: usize = 2000;

use oxibot_proto::settings::TokenCredential as Credential;

struct Handler {
    link: Link,
    /// The newest message handed to the broker, per channel: where to catch
    /// up from after a reconnect (the gateway does not redeliver).
    resume_after: Mutex<HashMap<u64, u64>>,
}

impl Handler {
    /// Hands one user message to the broker and waits for its ack. False
    /// when the broker is gone: nothing more may be handed over (the
    /// restarted daemon catches up from what the broker committed).
    async fn deliver(&self, msg: Message, me: UserId) -> bool {
        if self.link.is_gone() {
            return false;
        }
        let Some(incoming) = read(&msg, me) else {
            return true;
        };
        let (attachments, notes) = if !msg.attachments.is_empty() && self.link.may_fetch(incoming.may_fetch()).await {
            fetch_attachments(&msg).await
        } else {
            (Vec::new(), Vec::new())
        };
        let platform_id = incoming.platform_id.clone();
        let inbound = incoming.into_inbound(attachments, &notes);
        if let Err(e) = self.link.deliver_inbound(inbound, &platform_id).await {
            // Without the broker there is nothing to do: stop, be restarted,
            // and catch up from the last message the broker committed.
            tracing::error!("{e}");
            self.link.give_up();
            return false;
        }
        let mut resume = self.resume_after.lock().unwrap_or_else(|p| p.into_inner());
        let newest = resume.entry(msg.channel_id.get()).or_default();
        *newest = (*newest).max(msg.id.get());
        true
    }

    /// Fetches, oldest first, what each known channel received after the
    /// newest message the broker has: messages that arrived while no
    /// gateway session was listening. The broker drops any it already has.
    async fn catch_up(&self, http: &Http, me: UserId) {
        let points: Vec<(u64, u64)> = self
            .resume_after
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(c, m)| (*c, *m))
            .collect();
        for (channel, after) in points {
            let query = GetMessages::new().after(MessageId::new(after)).limit(CATCH_UP_LIMIT);
            match ChannelId::new(channel).messages(http, query).await {
                Ok(mut missed) => {
                    missed.sort_by_key(|m| m.id);
                    if !missed.is_empty() {
                        tracing::info!(channel, count = missed.len(), "catching up on missed messages");
                    }
                    for m in missed {
                        if !self.deliver(m, me).await {
                            return;
                        }
                    }
                }
                Err(e) => tracing::warn!(channel, "cannot fetch missed messages: {e}"),
            }
        }
    }
}

/// A message as the broker will see it; None for bots (ourselves
/// included) and for messages with neither text nor files.
pub(crate) fn read(msg: &Message, me: UserId) -> Option<Incoming> {
    if msg.author.bot || (msg.content.trim().is_empty() && msg.attachments.is_empty()) {
        return None;
    }
    Some(Incoming {
        platform_id: msg.id.get().to_string(),
        chat_id: msg.channel_id.get().to_string(),
        sender: msg.author.id.get().to_string(),
        text: msg.content.clone(),
        is_group: msg.guild_id.is_some(),
        mentioned: msg.mentions.iter().any(|u| u.id == me)
            || msg.referenced_message.as_ref().is_some_and(|r| r.author.id == me),
    })
}

/// Discord's page size for message history.
const CATCH_UP_LIMIT: u8 = 100;

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, ctx: Context, ready: Ready) {
        tracing::info!(bot = %ready.user.name, "connected to Discord");
        self.link.status(true, None).await;
        self.catch_up(&ctx.http, ready.user.id).await;
    }

    async fn message(&self, ctx: Context, msg: Message) {
        let me = ctx.cache.current_user().id;
        self.deliver(msg, me).await;
    }

    /// A pressed button: acknowledged at once (Discord wants an answer
    /// within 3 s), then said in its channel by the one who pressed it.
    /// A press the broker does not take is lost; the button stays, and can
    /// be pressed again.
    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        let Interaction::Component(press) = interaction else {
            return;
        };
        if let Err(e) = press
            .create_response(&ctx.http, CreateInteractionResponse::Acknowledge)
            .await
        {
            tracing::debug!("cannot acknowledge a button press: {e}");
        }
        let Some(incoming) = pressed(&press) else {
            return;
        };
        let platform_id = incoming.platform_id.clone();
        if let Err(e) = self
            .link
            .deliver_inbound(incoming.into_inbound(Vec::new(), &[]), &platform_id)
            .await
        {
            tracing::error!("{e}");
            self.link.give_up();
        }
    }
}

/// A button press as the broker will see it: its id says it, in the
/// channel of the message it is under, from the one who pressed it.
pub(crate) fn pressed(press: &ComponentInteraction) -> Option<Incoming> {
    if press.user.bot || press.data.custom_id.trim().is_empty() {
        return None;
    }
    Some(Incoming {
        platform_id: format!("button-{}", press.id.get()),
        chat_id: press.channel_id.get().to_string(),
        sender: press.user.id.get().to_string(),
        text: press.data.custom_id.clone(),
        is_group: press.guild_id.is_some(),
        mentioned: true,
    })
}

/// Downloads what fits (up to MAX_ATTACHMENTS, together within one
/// attachment's size); the rest becomes notes for the model.
async fn fetch_attachments(msg: &Message) -> (Vec<Attachment>, Vec<String>) {
    let (mut files, mut notes) = (Vec::new(), Vec::new());
    let mut budget = MAX_FILE_BYTES as u64;
    for a in &msg.attachments {
        let size = u64::from(a.size);
        if files.len() >= MAX_ATTACHMENTS || size > budget {
            notes.push(crate::attach::too_large(&a.filename, size));
            continue;
        }
        match a.download().await {
            Ok(data) if data.len() as u64 <= budget => {
                budget -= data.len() as u64;
                let mime = a
                    .content_type
                    .clone()
                    .unwrap_or_else(|| "application/octet-stream".into());
                files.push(Attachment {
                    kind: crate::attach::kind_for(&mime),
                    name: a.filename.clone(),
                    mime,
                    data,
                });
            }
            Ok(data) => notes.push(crate::attach::too_large(&a.filename, data.len() as u64)),
            Err(e) => notes.push(crate::attach::not_downloaded(&a.filename, &e.to_string())),
        }
    }
    (files, notes)
}

pub async fn run(
    link: Link,
    jobs: mpsc::Receiver<Job>,
    settings: &str,
    credential: &str,
    resume_after: Vec<(String, String)>,
) -> Result<(), Fatal> {
    let settings = crate::settings::parse::<oxibot_proto::settings::ApiSettings>("discord", settings)?;
    let credential: Credential = serde_json::from_str(credential)
        .map_err(|_| Fatal::config("channels.discord.token is missing from the secrets file".into()))?;
    let make_http = || {
        let mut b = HttpBuilder::new(&credential.token);
        if let Some(base) = &settings.api_base {
            b = b.proxy(base.clone()).ratelimiter_disabled(true);
        }
        b.build()
    };
    let http = make_http();
    if let Err(e) = http.get_current_user().await {
        let msg = if e.to_string().contains("401") || e.to_string().to_ascii_lowercase().contains("unauthorized") {
            "Discord refused the bot token (401 Unauthorized): check channels.discord.token".to_string()
        } else {
            format!("cannot reach Discord: {e}")
        };
        link.status(false, Some(msg.clone())).await;
        return Err(Fatal::config(msg));
    }
    let http = Arc::new(http);
    tokio::spawn(outbound(http.clone(), link.clone(), jobs));

    let intents = GatewayIntents::GUILD_MESSAGES | GatewayIntents::DIRECT_MESSAGES | GatewayIntents::MESSAGE_CONTENT;
    let mut client = serenity::all::ClientBuilder::new_with_http(make_http(), intents)
        .event_handler(Handler {
            link: link.clone(),
            resume_after: Mutex::new(parse_resume_points(&resume_after)),
        })
        .await
        .map_err(|e| Fatal::config(format!("cannot set up the Discord client: {e}")))?;
    // serenity reconnects by itself; an error here is final.
    let result = client.start().await;
    let why = match result {
        Ok(()) => "the Discord gateway closed".to_string(),
        Err(e) => format!("the Discord gateway failed: {e}"),
    };
    link.status(false, Some(why.clone())).await;
    Err(Fatal::broker(why))
}

/// The broker's (chat id, message id) pairs as Discord ids; others are ignored.
fn parse_resume_points(points: &[(String, String)]) -> HashMap<u64, u64> {
    points
        .iter()
        .filter_map(|(chat, id)| Some((chat.parse::<u64>().ok()?, id.parse::<u64>().ok()?)))
        .filter(|(chat, id)| *chat != 0 && *id != 0)
        .collect()
}

async fn outbound(http: Arc<Http>, link: Link, jobs: mpsc::Receiver<Job>) {
    let typer = http.clone();
    let typing = move |chat: &str| {
        let id = chat.parse::<u64>().ok().filter(|c| *c != 0)?;
        let http = typer.clone();
        // Discord shows "typing…" for 10 s per call.
        Some(async move {
            for _ in 0..12 {
                let _ = ChannelId::new(id).broadcast_typing(&http).await;
                tokio::time::sleep(std::time::Duration::from_secs(8)).await;
            }
        })
    };
    let drafter = http.clone();
    let drafts = crate::link::DraftFn(move |d: Draft| {
        let http = drafter.clone();
        async move { draft(&http, d).await }
    });
    let sender = move |part: Part| {
        let http = http.clone();
        async move { send(&http, part).await }
    };
    let split = |text: &str| format::split(text, MAX_MESSAGE);
    crate::link::serve_jobs(link, jobs, split, sender, typing, drafts).await
}

fn channel_of(chat_id: &str) -> Option<ChannelId> {
    chat_id.parse::<u64>().ok().filter(|c| *c != 0).map(ChannelId::new)
}

fn message_of(id: Option<&str>) -> Option<MessageId> {
    id?.parse::<u64>().ok().filter(|m| *m != 0).map(MessageId::new)
}

/// Shows a draft: posted (as a reply to the message it answers) the first
/// time, edited after. It pings nobody.
async fn draft(http: &Http, d: Draft) -> Result<Option<String>, String> {
    let channel = channel_of(&d.chat_id).ok_or_else(|| format!("bad Discord channel id {}", d.chat_id))?;
    let text = crate::link::draft_text(&d.text, MAX_MESSAGE);
    let quiet = CreateAllowedMentions::new();
    match message_of(d.message_id.as_deref()) {
        Some(id) => channel
            .edit_message(http, id, EditMessage::new().content(text).allowed_mentions(quiet))
            .await
            .map(|_| None)
            .map_err(|e| e.to_string()),
        None => {
            let mut m = CreateMessage::new().content(text).allowed_mentions(quiet);
            if let Some(id) = message_of(d.reply_to.as_deref()) {
                m = m.reference_message((channel, id));
            }
            channel
                .send_message(http, m)
                .await
                .map(|sent| Some(sent.id.get().to_string()))
                .map_err(|e| e.to_string())
        }
    }
}

/// One part of a reply; the first part answers the user's message. The
/// model's text may name `@everyone`, `@here`, a role or a user: Discord
/// is told to ping none of them (only the author of the message answered).
async fn send(http: &Http, part: Part) -> Result<(), (String, bool)> {
    let channel = part
        .chat_id
        .parse::<u64>()
        .ok()
        .filter(|c| *c != 0)
        .map(ChannelId::new)
        .ok_or_else(|| (format!("bad Discord channel id {}", part.chat_id), false))?;
    let reply = part
        .reply_to
        .as_deref()
        .filter(|_| part.index == 0)
        .and_then(|r| r.parse::<u64>().ok())
        .filter(|m| *m != 0)
        .map(MessageId::new);
    // A part the daemon sent but could not report (killed in between) is
    // sent again after the restart: Discord drops the repeat when it carries
    // the same nonce within a few minutes, so the chat sees it once.
    let nonce = Nonce::String(idempotency_key(&part));
    let mut m = CreateMessage::new()
        .content(part.text.clone())
        .nonce(nonce)
        .enforce_nonce(true)
        .allowed_mentions(CreateAllowedMentions::new().replied_user(true));
    if let Some(id) = reply {
        m = m.reference_message((channel, id));
    }
    // A button's id is what pressing it says (at most 100 characters).
    let buttons: Vec<CreateButton> = part
        .buttons
        .iter()
        .filter(|b| (1..=100).contains(&b.says.len()) && (1..=80).contains(&b.label.len()))
        .map(|b| {
            let style = if b.says.starts_with("/deny") {
                ButtonStyle::Danger
            } else {
                ButtonStyle::Primary
            };
            CreateButton::new(b.says.clone()).label(b.label.clone()).style(style)
        })
        .collect();
    let row = (!buttons.is_empty()).then(|| vec![CreateActionRow::Buttons(buttons)]);
    // The draft a streamed answer was shown in becomes the answer; an
    // edit to the same content again (a retry) changes nothing.
    if let Some(id) = message_of(part.edit.as_deref()) {
        let mut edit = EditMessage::new()
            .content(part.text.clone())
            .allowed_mentions(CreateAllowedMentions::new().replied_user(true));
        if let Some(row) = row.clone() {
            edit = edit.components(row);
        }
        match channel.edit_message(http, id, edit).await {
            Ok(_) => return Ok(()),
            Err(e) => match failure(e) {
                // Tried again later, as an edit.
                (why, true) => return Err((why, true)),
                // Deleted or refused: the answer is posted instead, never
                // lost with the draft.
                (why, false) => tracing::warn!("the draft could not become the answer ({why}); posting it"),
            },
        }
    }
    if let Some(row) = row {
        m = m.components(row);
    }
    channel.send_message(http, m).await.map(drop).map_err(failure)
}

/// A refused send, and whether trying again could help.
fn failure(e: serenity::Error) -> (String, bool) {
    let retryable = !matches!(e, serenity::Error::Http(serenity::http::HttpError::UnsuccessfulRequest(ref r)) if r.status_code.is_client_error());
    (e.to_string(), retryable)
}

/// The nonce of a part: the same for every attempt at it (outbox id, part,
/// chat and text), and different for a different message even when a reset
/// database hands out the same outbox id again. 16 hex digits (Discord
/// takes up to 25 characters). FNV-1a: stable across builds and platforms.
fn idempotency_key(part: &Part) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let (outbox, index) = (part.outbox_id.to_le_bytes(), (part.index as u64).to_le_bytes());
    let fields = [
        outbox.as_slice(),
        index.as_slice(),
        part.chat_id.as_bytes(),
        &[0xff],
        part.text.as_bytes(),
    ];
    for byte in fields.into_iter().flatten() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_keeps_its_nonce_across_attempts_and_others_differ() {
        let part = |outbox_id, index, text: &str| Part {
            outbox_id,
            chat_id: "7001".into(),
            index,
            text: text.into(),
            reply_to: None,
            buttons: Vec::new(),
            edit: None,
        };
        let key = idempotency_key(&part(5, 0, "hello"));
        assert_eq!(key, idempotency_key(&part(5, 0, "hello")));
        assert_eq!(key.len(), 16);
        assert_ne!(key, idempotency_key(&part(5, 1, "hello")));
        assert_ne!(key, idempotency_key(&part(6, 0, "hello")));
        assert_ne!(key, idempotency_key(&part(5, 0, "hello!")));
    }

    #[test]
    fn resume_points_from_the_broker_are_checked() {
        let points = [
            ("7001".to_string(), "1005".to_string()),
            ("0".to_string(), "5".to_string()),
            ("general".to_string(), "9".to_string()),
            ("7002".to_string(), "not-a-snowflake".to_string()),
        ];
        assert_eq!(parse_resume_points(&points), HashMap::from([(7001, 1005)]));
    }
}
