//! Discord through serenity: its gateway client for events, its HTTP
//! client for replies. DMs are direct messages; guild messages go through
//! the group policy (mention by default).

use std::sync::Arc;

use oxibot_proto::messages::{Attachment, ChannelToBroker, MAX_ATTACHMENT, MAX_ATTACHMENTS};
use serde::Deserialize;
use serenity::all::{
    ChannelId, Context, CreateMessage, EventHandler, GatewayIntents, Http, HttpBuilder, Message, MessageId, Ready,
};
use serenity::async_trait;
use tokio::sync::mpsc;

use crate::link::{Job, Link};
use crate::{format, Fatal};

/// Discord's limit, in characters.
const MAX_MESSAGE: usize = 2000;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Settings {
    /// Overrides the Discord API (a proxy, or a test server).
    #[serde(default)]
    api_base: Option<String>,
}

#[derive(Deserialize)]
struct Credential {
    token: String,
}

struct Handler {
    link: Link,
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _ctx: Context, ready: Ready) {
        tracing::info!(bot = %ready.user.name, "connected to Discord");
        self.link.status(true, None).await;
    }

    async fn message(&self, ctx: Context, msg: Message) {
        if msg.author.bot || (msg.content.trim().is_empty() && msg.attachments.is_empty()) {
            return;
        }
        let me = ctx.cache.current_user().id;
        let mentioned = msg.mentions.iter().any(|u| u.id == me)
            || msg.referenced_message.as_ref().is_some_and(|r| r.author.id == me);
        let platform_id = msg.id.get().to_string();
        let (attachments, notes) = fetch_attachments(&msg).await;
        let inbound = ChannelToBroker::Inbound {
            platform_id: platform_id.clone(),
            chat_id: msg.channel_id.get().to_string(),
            sender: msg.author.id.get().to_string(),
            text: crate::attach::with_notes(&msg.content, &notes),
            is_group: msg.guild_id.is_some(),
            mentioned,
            attachments,
        };
        if let Err(e) = self.link.deliver_inbound(inbound, &platform_id).await {
            // Without the broker there is nothing to do: exit and restart.
            tracing::error!("{e}");
            std::process::exit(1);
        }
    }
}

/// Downloads what fits (up to MAX_ATTACHMENTS, together within one
/// attachment's size); the rest becomes notes for the model.
async fn fetch_attachments(msg: &Message) -> (Vec<Attachment>, Vec<String>) {
    let (mut files, mut notes) = (Vec::new(), Vec::new());
    let mut budget = MAX_ATTACHMENT as u64;
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

pub async fn run(link: Link, jobs: mpsc::Receiver<Job>, settings: &str, credential: &str) -> Result<(), Fatal> {
    let settings: Settings =
        serde_json::from_str(settings).map_err(|e| Fatal::config(format!("channels.discord: {e}")))?;
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
        .event_handler(Handler { link: link.clone() })
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
    let sender = move |chat: String, text: String, reply: Option<String>| {
        let http = http.clone();
        async move { send(&http, &chat, &text, reply.as_deref()).await }
    };
    crate::link::serve_jobs(link, jobs, sender, typing).await
}

async fn send(http: &Http, chat_id: &str, text: &str, reply_to: Option<&str>) -> Result<(), (String, bool)> {
    let channel = chat_id
        .parse::<u64>()
        .ok()
        .filter(|c| *c != 0)
        .map(ChannelId::new)
        .ok_or_else(|| (format!("bad Discord channel id {chat_id}"), false))?;
    let reply = reply_to
        .and_then(|r| r.parse::<u64>().ok())
        .filter(|m| *m != 0)
        .map(MessageId::new);
    for (i, chunk) in format::split(text, MAX_MESSAGE).into_iter().enumerate() {
        let mut m = CreateMessage::new().content(chunk);
        if let (0, Some(id)) = (i, reply) {
            m = m.reference_message((channel, id));
        }
        if let Err(e) = channel.send_message(http, m).await {
            let retryable = !matches!(e, serenity::Error::Http(serenity::http::HttpError::UnsuccessfulRequest(ref r)) if r.status_code.is_client_error());
            return Err((e.to_string(), retryable));
        }
    }
    Ok(())
}
