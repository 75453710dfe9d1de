//! Slack through slack-morphism, Socket Mode. The envelope of an event is
//! acknowledged (by slack-morphism, when our callback returns Ok) only after
//! the broker committed the message; if the broker is gone the callback
//! fails, nothing is acknowledged, and Slack redelivers.

use std::sync::Arc;

use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
use tokio::sync::mpsc;

mod files;

use crate::incoming::Incoming;
use crate::link::{Draft, Job, Link, Part};
use crate::{format, Fatal};

/// Slack truncates messages past 40,000 characters; 4,000 keeps them readable.
const MAX_MESSAGE: usize = 4000;

use oxibot_proto::settings::SlackCredential as Credential;

type Connector = SlackClientHyperHttpsConnector;

struct State {
    link: Link,
    bot_user: String,
    /// For files: the client (no redirects: the token must not follow
    /// one), the bot token, and where file links may point.
    http: reqwest::Client,
    bot_token: zeroize::Zeroizing<String>,
    file_host: files::FileHost,
}

pub async fn run(link: Link, jobs: mpsc::Receiver<Job>, settings: &str, credential: &str) -> Result<(), Fatal> {
    let settings = crate::settings::parse::<oxibot_proto::settings::ApiSettings>("slack", settings)?;
    let credential: Credential = serde_json::from_str(credential).map_err(|_| {
        Fatal::config("channels.slack.botToken and channels.slack.appToken must be in the secrets file".into())
    })?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    let mut connector = SlackClientHyperConnector::with_connector(https);
    if let Some(base) = &settings.api_base {
        // slack-morphism joins "{base}/{method}".
        connector = connector.with_slack_api_url(base.trim_end_matches('/'));
    }
    let client: Arc<SlackClient<Connector>> = Arc::new(SlackClient::new(connector));
    let bot_token = SlackApiToken::new(credential.bot_token.clone().into());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .map_err(|e| Fatal::config(format!("cannot build the HTTP client for Slack files: {e}")))?;
    let me = match client.open_session(&bot_token).auth_test().await {
        Ok(me) => me.user_id.to_string(),
        Err(SlackClientError::ApiError(e)) => {
            let msg = format!("Slack refused channels.slack.botToken ({e})");
            link.status(false, Some(msg.clone())).await;
            return Err(Fatal::config(msg));
        }
        Err(e) => {
            // Slack unreachable: exit, and the broker restarts us with backoff.
            let msg = format!("cannot reach Slack: {e}");
            link.status(false, Some(msg.clone())).await;
            return Err(Fatal::broker(msg));
        }
    };
    tokio::spawn(outbound(client.clone(), bot_token, link.clone(), jobs));

    let callbacks = SlackSocketModeListenerCallbacks::new()
        .with_push_events(on_push)
        .with_interaction_events(on_interaction);
    let env = Arc::new(
        SlackClientEventsListenerEnvironment::new(client.clone())
            .with_error_handler(on_error)
            .with_user_state(State {
                link: link.clone(),
                bot_user: me,
                http,
                bot_token: zeroize::Zeroizing::new(credential.bot_token.clone()),
                file_host: files::FileHost::of(settings.api_base.as_deref()),
            }),
    );
    let listener = SlackClientSocketModeListener::new(&SlackClientSocketModeConfig::new(), env, callbacks);
    let app_token = SlackApiToken::new(credential.app_token.clone().into());
    // slack-morphism retries a refused app token forever in the background;
    // ask once up front so that a wrong token stops the channel with a reason.
    let probe = client.open_session(&app_token);
    if let Err(e) = probe
        .apps_connections_open(&SlackApiAppsConnectionOpenRequest::new())
        .await
    {
        let refused = matches!(e, SlackClientError::ApiError(_));
        let msg = format!("Slack refused channels.slack.appToken for Socket Mode ({e})");
        link.status(false, Some(msg.clone())).await;
        return Err(if refused {
            Fatal::config(msg)
        } else {
            Fatal::broker(msg)
        });
    }
    if let Err(e) = listener.listen_for(&app_token).await {
        let msg = format!("Slack refused channels.slack.appToken for Socket Mode ({e})");
        link.status(false, Some(msg.clone())).await;
        return Err(Fatal::config(msg));
    }
    listener.start().await;
    link.status(true, None).await;
    // slack-morphism keeps the socket alive and reconnects; we live as
    // long as the broker connection (the link ends the process).
    std::future::pending::<()>().await;
    Ok(())
}

fn on_error(err: BoxError, _client: Arc<SlackClient<Connector>>, _state: SlackClientEventsUserState) -> HttpStatusCode {
    tracing::warn!("Slack event not acknowledged: {err}");
    HttpStatusCode::INTERNAL_SERVER_ERROR
}

async fn on_push(
    event: SlackPushEventCallback,
    _client: Arc<SlackClient<Connector>>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let SlackEventCallbackBody::Message(msg) = event.event else {
        return Ok(());
    };
    let guard = states.read().await;
    let Some(state) = guard.get_user_state::<State>() else {
        return Ok(());
    };
    let Some(incoming) = read(&msg, &state.bot_user) else {
        return Ok(());
    };
    let platform_id = incoming.platform_id.clone();
    let shared = msg.content.as_ref().and_then(|c| c.files.clone()).unwrap_or_default();
    // A stranger's files are not even downloaded.
    let (attachments, notes) = if !shared.is_empty() && state.link.may_fetch(incoming.may_fetch()).await {
        files::fetch(&state.http, &state.bot_token, &state.file_host, &shared).await
    } else {
        (Vec::new(), Vec::new())
    };
    let link = state.link.clone();
    drop(guard);
    let inbound = incoming.into_inbound(attachments, &notes);
    link.deliver_inbound(inbound, &platform_id)
        .await
        .map_err(|e| -> BoxError { e.into() })
}

/// A pressed button (Socket Mode `interactive`, `block_actions`): its
/// value is said in the channel by the one who pressed it. The envelope is
/// acknowledged once the broker has it.
async fn on_interaction(
    event: SlackInteractionEvent,
    _client: Arc<SlackClient<Connector>>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let SlackInteractionEvent::BlockActions(press) = event else {
        return Ok(());
    };
    let link = {
        let guard = states.read().await;
        let Some(state) = guard.get_user_state::<State>() else {
            return Ok(());
        };
        state.link.clone()
    };
    let Some(incoming) = pressed(&press) else {
        return Ok(());
    };
    let platform_id = incoming.platform_id.clone();
    link.deliver_inbound(incoming.into_inbound(Vec::new(), &[]), &platform_id)
        .await
        .map_err(|e| -> BoxError { e.into() })
}

/// A button press as the broker will see it; None without a user, a
/// channel or a value.
pub(crate) fn pressed(press: &SlackInteractionBlockActionsEvent) -> Option<Incoming> {
    let user = press.user.as_ref()?;
    let channel = press.channel.as_ref()?;
    let action = press.actions.as_ref()?.first()?;
    let says = action.value.as_deref().filter(|v| !v.trim().is_empty())?;
    let ts = action.action_ts.as_ref().map_or("0", |t| t.0.as_str());
    Some(Incoming {
        platform_id: format!("{}/button/{}/{}", channel.id, user.id, ts),
        chat_id: channel.id.to_string(),
        sender: user.id.to_string(),
        text: says.to_string(),
        is_group: !channel.id.0.starts_with('D'),
        mentioned: true,
    })
}

/// A message event as the broker will see it; None for edits, joins, bots
/// (ourselves included) and messages without a channel, user, text or file.
pub(crate) fn read(msg: &SlackMessageEvent, bot_user: &str) -> Option<Incoming> {
    let shares_files = matches!(&msg.subtype, Some(SlackMessageEventType::FileShare));
    if (msg.subtype.is_some() && !shares_files) || msg.sender.bot_id.is_some() {
        return None;
    }
    let (channel, user) = (msg.origin.channel.as_ref()?, msg.sender.user.as_ref()?);
    let text = msg.content.as_ref().and_then(|c| c.text.clone()).unwrap_or_default();
    let has_files = msg
        .content
        .as_ref()
        .and_then(|c| c.files.as_ref())
        .is_some_and(|f| !f.is_empty());
    if text.trim().is_empty() && !has_files {
        return None;
    }
    let thread = msg.origin.thread_ts.as_ref().unwrap_or(&msg.origin.ts);
    Some(Incoming {
        // channel/ts is unique; the thread to answer in rides along.
        platform_id: format!("{}/{}/{}", channel, msg.origin.ts, thread),
        chat_id: channel.to_string(),
        sender: user.to_string(),
        mentioned: text.contains(&format!("<@{bot_user}>")),
        text,
        is_group: msg.origin.channel_type.as_ref().is_none_or(|t| t.0 != "im"),
    })
}

async fn outbound(client: Arc<SlackClient<Connector>>, token: SlackApiToken, link: Link, jobs: mpsc::Receiver<Job>) {
    let (drafter, draft_token) = (client.clone(), token.clone());
    let drafts = crate::link::DraftFn(move |d: Draft| {
        let (client, token) = (drafter.clone(), draft_token.clone());
        async move { draft(&client, &token, d).await }
    });
    let sender = move |part: Part| {
        let (client, token) = (client.clone(), token.clone());
        async move { send(&client, &token, part).await }
    };
    let split = |text: &str| format::split(text, MAX_MESSAGE);
    // Slack bots have no typing indicator over the Web API.
    crate::link::serve_jobs(
        link,
        jobs,
        split,
        sender,
        |_: &str| None::<std::future::Ready<()>>,
        drafts,
    )
    .await
}

/// The thread of the message a reply answers ("channel/ts/thread").
fn thread_of(reply_to: Option<&str>) -> Option<SlackTs> {
    reply_to?.rsplit('/').next().map(|t| SlackTs::new(t.to_string()))
}

/// Shows a draft in the thread it answers: posted the first time, updated
/// after (its `ts` is its id).
async fn draft(client: &SlackClient<Connector>, token: &SlackApiToken, d: Draft) -> Result<Option<String>, String> {
    let session = client.open_session(token);
    // Escaped as every reply is: `<!channel>` in the model's text must
    // not ping anyone.
    let text = format::escape_slack(&crate::link::draft_text(&d.text, MAX_MESSAGE));
    let content = SlackMessageContent::new().with_text(text);
    let channel = SlackChannelId::new(d.chat_id);
    match d.message_id {
        Some(ts) => session
            .chat_update(&SlackApiChatUpdateRequest::new(channel, content, SlackTs::new(ts)))
            .await
            .map(|_| None)
            .map_err(|e| e.to_string()),
        None => {
            let mut req = SlackApiChatPostMessageRequest::new(channel, content);
            if let Some(ts) = thread_of(d.reply_to.as_deref()) {
                req = req.with_thread_ts(ts);
            }
            session
                .chat_post_message(&req)
                .await
                .map(|posted| Some(posted.ts.0))
                .map_err(|e| e.to_string())
        }
    }
}

/// One part of a reply, in the thread of the message it answers.
async fn send(client: &SlackClient<Connector>, token: &SlackApiToken, part: Part) -> Result<(), (String, bool)> {
    let thread = thread_of(part.reply_to.as_deref());
    let session = client.open_session(token);
    let text = format::markdown_to_slack(&part.text);
    let mut content = SlackMessageContent::new().with_text(text.clone());
    // Buttons go in blocks, which Slack shows instead of the text: the
    // text rides along in a section (at most 3,000 characters; a longer
    // one is left without buttons, its words say the same).
    let buttons: Vec<SlackActionBlockElement> = part
        .buttons
        .iter()
        .filter(|b| (1..=2000).contains(&b.says.len()) && (1..=75).contains(&b.label.len()))
        .enumerate()
        .map(|(i, b)| {
            SlackActionBlockElement::Button(
                SlackBlockButtonElement::new(SlackBlockPlainTextOnly::from(b.label.clone()))
                    .with_action_id(SlackActionId::new(format!("oxibot-{i}")))
                    .with_value(b.says.clone()),
            )
        })
        .collect();
    if !buttons.is_empty() && text.chars().count() <= 3000 {
        content = content.with_blocks(vec![
            SlackSectionBlock::new()
                .with_text(SlackBlockText::MarkDown(SlackBlockMarkDownText::new(text)))
                .into(),
            SlackActionsBlock::new(buttons).into(),
        ]);
    }
    let channel = SlackChannelId::new(part.chat_id);
    // The draft a streamed answer was shown in becomes the answer; an
    // update to the same text again (a retry) changes nothing.
    if let Some(ts) = part.edit {
        let update = SlackApiChatUpdateRequest::new(channel.clone(), content.clone(), SlackTs::new(ts));
        match session.chat_update(&update).await {
            Ok(_) => return Ok(()),
            Err(e) => match failure(e) {
                // Tried again later, as an update.
                (why, true) => return Err((why, true)),
                // Deleted, past the edit window, refused: the answer is
                // posted instead, never lost with the draft.
                (why, false) => tracing::warn!("the draft could not become the answer ({why}); posting it"),
            },
        }
    }
    let mut req = SlackApiChatPostMessageRequest::new(channel, content);
    if let Some(ts) = thread {
        req = req.with_thread_ts(ts);
    }
    session.chat_post_message(&req).await.map(drop).map_err(failure)
}

/// A refused send, and whether trying again could help.
fn failure(e: SlackClientError) -> (String, bool) {
    let retryable = !matches!(e, SlackClientError::ApiError(_));
    (e.to_string(), retryable)
}
