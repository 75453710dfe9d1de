//! A fake Discord: the REST API under `/api/v10` (what serenity's
//! `HttpBuilder::proxy` sends there) and a `ws://` gateway that sends HELLO
//! (op 10), READY after IDENTIFY, answers every heartbeat (op 1) with op 11,
//! and injects MESSAGE_CREATE events.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message as Ws;

pub const BOT_ID: u64 = 900_000_000_000_000_001;

#[derive(Default)]
struct Inner {
    token: String,
    gateway: String,
    sent: Vec<(String, Value)>,
    typing: Vec<String>,
    next_id: u64,
    identified: usize,
    /// Message ids sent to a client over the gateway.
    dispatched: Vec<u64>,
    /// Every user message, for `GET /channels/{id}/messages`.
    history: Vec<Value>,
    /// Gateway sessions that are READY now.
    live: usize,
    /// Query strings of history fetches.
    history_queries: Vec<String>,
    /// CDN path → bytes, for attachment downloads.
    cdn: std::collections::HashMap<String, Vec<u8>>,
    /// Nonce → the message it created, for `enforce_nonce`.
    nonces: std::collections::HashMap<String, Value>,
    /// Creates that `enforce_nonce` turned into the earlier message.
    nonce_repeats: usize,
    /// Creates to take and then not answer (the client dies waiting).
    stall_creates: usize,
    /// Interactions answered through their callback.
    interaction_answers: Vec<String>,
    /// Each created message's content now (after edits), by id.
    texts: std::collections::HashMap<String, String>,
    /// PATCHes of a message, as received, with `id` and `at_ms`.
    edits: Vec<Value>,
    started: Option<std::time::Instant>,
}

#[derive(Clone)]
pub struct FakeDiscord {
    pub api_base: String,
    inner: Arc<Mutex<Inner>>,
    events: broadcast::Sender<Value>,
}

fn user(id: u64, name: &str, bot: bool) -> Value {
    json!({"id": id.to_string(), "username": name, "discriminator": "0000", "global_name": null,
           "avatar": null, "bot": bot})
}

type St = Arc<Mutex<Inner>>;

impl FakeDiscord {
    pub fn start(token: &str) -> FakeDiscord {
        let inner = Arc::new(Mutex::new(Inner {
            token: token.into(),
            next_id: 1_000,
            ..Default::default()
        }));
        let (events, _) = broadcast::channel::<Value>(64);
        let (state, ev) = (inner.clone(), events.clone());
        let addr = crate::serve::in_background(move |addr_tx| async move {
            let http = crate::serve::local_listener().await;
            let ws = crate::serve::local_listener().await;
            state.lock().unwrap().gateway = format!("ws://{}", ws.local_addr().unwrap());
            addr_tx.send(http.local_addr().unwrap()).unwrap();
            let gw_state = state.clone();
            tokio::spawn(crate::serve::accept_each(ws, move |tcp| {
                gateway(tcp, gw_state.clone(), ev.subscribe())
            }));
            let app = axum::Router::new()
                .route("/api/v10/{*path}", axum::routing::any(rest))
                .route("/attachments/{*path}", axum::routing::get(cdn))
                .with_state(state);
            crate::serve::http(http, app).await;
        });
        FakeDiscord {
            api_base: format!("http://{addr}"),
            inner,
            events,
        }
    }

    /// A DM from `author` with one attached file, served by the fake's CDN.
    pub fn post_file(&self, channel: u64, author: u64, content: &str, name: &str, mime: &str, data: &[u8]) -> u64 {
        let id = {
            let mut s = self.inner.lock().unwrap();
            s.next_id += 1;
            s.next_id
        };
        let path = format!("{channel}/{id}/{name}");
        self.inner.lock().unwrap().cdn.insert(path.clone(), data.to_vec());
        let attachment = json!({"id": (id + 1).to_string(), "filename": name, "size": data.len(),
                                "url": format!("{}/attachments/{path}", self.api_base),
                                "proxy_url": format!("{}/attachments/{path}", self.api_base),
                                "content_type": mime});
        self.dispatch_message(id, channel, None, author, content, false, vec![attachment]);
        id
    }

    /// A message from `author` in `channel` (a guild channel when `guild` is set).
    pub fn post(&self, channel: u64, guild: Option<u64>, author: u64, content: &str, mention_bot: bool) -> u64 {
        let id = {
            let mut s = self.inner.lock().unwrap();
            s.next_id += 1;
            s.next_id
        };
        self.dispatch_message(id, channel, guild, author, content, mention_bot, Vec::new());
        id
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch_message(
        &self,
        id: u64,
        channel: u64,
        guild: Option<u64>,
        author: u64,
        content: &str,
        mention_bot: bool,
        attachments: Vec<Value>,
    ) {
        let mut msg = json!({
            "id": id.to_string(), "channel_id": channel.to_string(), "author": user(author, "someone", false),
            "content": content, "timestamp": "2026-11-25T12:00:00.000000+00:00", "edited_timestamp": null,
            "tts": false, "mention_everyone": false,
            "mentions": if mention_bot { json!([user(BOT_ID, "oxibot", true)]) } else { json!([]) },
            "mention_roles": [], "attachments": attachments, "embeds": [], "pinned": false, "type": 0
        });
        if let Some(g) = guild {
            msg["guild_id"] = json!(g.to_string());
        }
        let live = {
            let mut s = self.inner.lock().unwrap();
            s.history.push(msg.clone());
            s.live
        };
        // Like Discord: with no session listening, the event goes nowhere
        // (the message stays in the channel's history).
        if live > 0 {
            let _ = self.events.send(json!({"t": "MESSAGE_CREATE", "d": msg}));
        }
    }

    /// `user` presses the button `custom_id` under the bot's message
    /// `message` in `channel` (an INTERACTION_CREATE of a component).
    /// Returns the interaction's id.
    pub fn press_button(&self, channel: u64, guild: Option<u64>, presser: u64, message: u64, custom_id: &str) -> u64 {
        let id = {
            let mut s = self.inner.lock().unwrap();
            s.next_id += 1;
            s.next_id
        };
        let msg = json!({
            "id": message.to_string(), "channel_id": channel.to_string(), "author": user(BOT_ID, "oxibot", true),
            "content": "a message with buttons", "timestamp": "2026-11-25T12:00:01.000000+00:00",
            "edited_timestamp": null, "tts": false, "mention_everyone": false, "mentions": [],
            "mention_roles": [], "attachments": [], "embeds": [], "pinned": false, "type": 0
        });
        let mut d = json!({
            "id": id.to_string(), "application_id": BOT_ID.to_string(), "type": 3,
            "data": {"custom_id": custom_id, "component_type": 2},
            "channel_id": channel.to_string(), "token": format!("tok-{id}"), "version": 1,
            "message": msg, "locale": "en-US", "entitlements": [], "attachment_size_limit": 8388608,
            "authorizing_integration_owners": {}
        });
        match guild {
            Some(g) => {
                d["guild_id"] = json!(g.to_string());
                d["member"] = json!({"user": user(presser, "someone", false), "roles": [], "joined_at":
                    "2026-01-01T00:00:00.000000+00:00", "deaf": false, "mute": false, "flags": 0});
            }
            None => d["user"] = user(presser, "someone", false),
        }
        let _ = self.events.send(json!({"t": "INTERACTION_CREATE", "d": d}));
        id
    }

    /// The interactions the bot answered (their ids).
    pub fn answered_interactions(&self) -> Vec<String> {
        self.inner.lock().unwrap().interaction_answers.clone()
    }

    /// Gateway sessions that are READY now.
    pub fn live_sessions(&self) -> usize {
        self.inner.lock().unwrap().live
    }

    /// Query strings of the history fetches (`GET /channels/{id}/messages`).
    pub fn history_queries(&self) -> Vec<String> {
        self.inner.lock().unwrap().history_queries.clone()
    }

    /// A raw gateway dispatch (`{"t": ..., "d": ...}`) to every client.
    pub fn push_raw(&self, event: Value) {
        let _ = self.events.send(event);
    }

    /// Waits until message `id` went out to a client over the gateway.
    pub fn wait_dispatched(&self, id: u64, timeout: Duration) {
        crate::poll::wait_for(&format!("message {id} on the gateway"), timeout, || {
            self.inner.lock().unwrap().dispatched.contains(&id).then_some(())
        })
    }

    /// Edits of messages (PATCH), with the message `id` and `at_ms`.
    pub fn edits(&self) -> Vec<Value> {
        self.inner.lock().unwrap().edits.clone()
    }

    /// A bot message's content now, after every edit.
    pub fn text_now(&self, id: &str) -> Option<String> {
        self.inner.lock().unwrap().texts.get(id).cloned()
    }

    pub fn sent(&self) -> Vec<(String, Value)> {
        self.inner.lock().unwrap().sent.clone()
    }

    pub fn typing(&self) -> Vec<String> {
        self.inner.lock().unwrap().typing.clone()
    }

    /// The next message create is taken (it counts as sent) but never
    /// answered: the client is killed while it waits.
    pub fn stall_next_create(&self) {
        self.inner.lock().unwrap().stall_creates += 1;
    }

    /// Message creates that `enforce_nonce` answered with an earlier message.
    pub fn nonce_repeats(&self) -> usize {
        self.inner.lock().unwrap().nonce_repeats
    }

    pub fn identified(&self) -> usize {
        self.inner.lock().unwrap().identified
    }

    pub fn wait_sent(&self, n: usize, timeout: Duration) -> Vec<(String, Value)> {
        crate::poll::wait_for(&format!("{n} Discord messages"), timeout, || {
            Some(self.sent()).filter(|s| s.len() >= n)
        })
    }

    pub fn wait_identified(&self, timeout: Duration) {
        crate::poll::wait_for("the bot to identify on the gateway", timeout, || {
            (self.identified() > 0).then_some(())
        })
    }
}

async fn cdn(State(state): State<St>, Path(path): Path<String>) -> Response {
    match state.lock().unwrap().cdn.get(&path) {
        Some(bytes) => bytes.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn rest(
    State(state): State<St>,
    Path(path): Path<String>,
    method: axum::http::Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let (token, gateway) = {
        let s = state.lock().unwrap();
        (s.token.clone(), s.gateway.clone())
    };
    if auth != format!("Bot {token}") {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "401: Unauthorized", "code": 0})),
        )
            .into_response();
    }
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["users", "@me"] => axum::Json(user(BOT_ID, "oxibot", true)).into_response(),
        ["gateway"] => axum::Json(json!({"url": gateway})).into_response(),
        ["gateway", "bot"] => axum::Json(json!({"url": gateway, "shards": 1,
            "session_start_limit": {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}}))
        .into_response(),
        ["interactions", id, _token, "callback"] => {
            state.lock().unwrap().interaction_answers.push(id.to_string());
            StatusCode::NO_CONTENT.into_response()
        }
        ["channels", channel, "typing"] => {
            state.lock().unwrap().typing.push(channel.to_string());
            StatusCode::NO_CONTENT.into_response()
        }
        ["channels", channel, "messages"] if method == axum::http::Method::GET => {
            let query = query.unwrap_or_default();
            let after: u64 = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("after="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut s = state.lock().unwrap();
            s.history_queries.push(query.clone());
            let mut found: Vec<Value> = s
                .history
                .iter()
                .filter(|m| m["channel_id"] == *channel)
                .filter(|m| m["id"].as_str().and_then(|i| i.parse::<u64>().ok()).unwrap_or(0) > after)
                .cloned()
                .collect();
            found.reverse(); // newest first, as Discord answers
            axum::Json(Value::Array(found)).into_response()
        }
        ["channels", channel, "messages", id] if method == axum::http::Method::PATCH => {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let mut s = state.lock().unwrap();
            if !s.texts.contains_key(*id) {
                return (
                    StatusCode::NOT_FOUND,
                    axum::Json(json!({"message": "Unknown Message", "code": 10008})),
                )
                    .into_response();
            }
            if let Some(content) = v["content"].as_str() {
                s.texts.insert(id.to_string(), content.to_string());
            }
            let at = s
                .started
                .get_or_insert_with(std::time::Instant::now)
                .elapsed()
                .as_millis() as u64;
            let mut recorded = v.clone();
            recorded["id"] = json!(id);
            recorded["at_ms"] = json!(at);
            s.edits.push(recorded);
            let content = s.texts.get(*id).cloned().unwrap_or_default();
            axum::Json(json!({
                "id": id, "channel_id": channel, "author": user(BOT_ID, "oxibot", true),
                "content": content, "timestamp": "2026-11-25T12:00:01.000000+00:00",
                "edited_timestamp": "2026-11-25T12:00:02.000000+00:00",
                "tts": false, "mention_everyone": false, "mentions": [], "mention_roles": [], "attachments": [],
                "embeds": [], "pinned": false, "type": 0
            }))
            .into_response()
        }
        ["channels", channel, "messages"] => {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let (created, stall) = {
                let mut s = state.lock().unwrap();
                match create_message(&mut s, channel, &v) {
                    Ok(created) => {
                        let stall = s.stall_creates > 0;
                        s.stall_creates = s.stall_creates.saturating_sub(1);
                        (created, stall)
                    }
                    Err(earlier) => (earlier, false),
                }
            };
            if stall {
                tokio::time::sleep(Duration::from_secs(300)).await;
            }
            axum::Json(created).into_response()
        }
        _ => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"message": "404: Not Found", "code": 0})),
        )
            .into_response(),
    }
}

/// Creates a message, or (Err) answers with the one its nonce made.
fn create_message(s: &mut Inner, channel: &str, v: &Value) -> Result<Value, Value> {
    // Like Discord: with `enforce_nonce`, a nonce this author used
    // recently answers with the message it created, and creates none.
    let nonce = v["nonce"].as_str().filter(|_| v["enforce_nonce"] == true);
    if let Some(earlier) = nonce.and_then(|n| s.nonces.get(n)).cloned() {
        s.nonce_repeats += 1;
        return Err(earlier);
    }
    s.next_id += 1;
    s.sent.push((channel.to_string(), v.clone()));
    let (id, content) = (
        s.next_id.to_string(),
        v["content"].as_str().unwrap_or_default().to_string(),
    );
    s.texts.insert(id, content);
    let created = json!({
        "id": s.next_id.to_string(), "channel_id": channel, "author": user(BOT_ID, "oxibot", true),
        "content": v["content"], "timestamp": "2026-11-25T12:00:01.000000+00:00", "edited_timestamp": null,
        "tts": false, "mention_everyone": false, "mentions": [], "mention_roles": [], "attachments": [],
        "embeds": [], "pinned": false, "type": 0, "nonce": v["nonce"]
    });
    if let Some(n) = nonce {
        s.nonces.insert(n.to_string(), created.clone());
    }
    Ok(created)
}

struct Live(St, bool);

impl Drop for Live {
    fn drop(&mut self) {
        if self.1 {
            self.0.lock().unwrap().live -= 1;
        }
    }
}

async fn gateway(tcp: tokio::net::TcpStream, state: St, mut events: broadcast::Receiver<Value>) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let send = |v: Value| Ws::Text(v.to_string().into());
    if ws
        .send(send(json!({"op": 10, "d": {"heartbeat_interval": 41250}})))
        .await
        .is_err()
    {
        return;
    }
    let mut seq = 0u64;
    let mut ready = false;
    // Counts this session as live from READY until the connection ends.
    let mut live = Live(state.clone(), false);
    loop {
        tokio::select! {
            frame = ws.next() => {
                let Some(Ok(frame)) = frame else { return };
                let Ws::Text(t) = frame else { continue };
                let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                match v["op"].as_u64() {
                    Some(1) => { let _ = ws.send(send(json!({"op": 11}))).await; }
                    Some(2) => {
                        let gw = {
                            let mut s = state.lock().unwrap();
                            s.identified += 1;
                            s.gateway.clone()
                        };
                        seq += 1;
                        let d = json!({"v": 10, "user": user(BOT_ID, "oxibot", true), "guilds": [],
                                       "session_id": "fake-session", "resume_gateway_url": gw, "shard": [0, 1],
                                       "application": {"id": "900000000000000002", "flags": 0}});
                        let _ = ws.send(send(json!({"op": 0, "t": "READY", "s": seq, "d": d}))).await;
                        if !live.1 {
                            state.lock().unwrap().live += 1;
                            live.1 = true;
                        }
                        ready = true;
                    }
                    _ => {}
                }
            }
            event = events.recv(), if ready => {
                let Ok(event) = event else { continue };
                seq += 1;
                let frame = json!({"op": 0, "t": event["t"], "s": seq, "d": event["d"]});
                if ws.send(send(frame)).await.is_err() { return; }
                if let Some(id) = event["d"]["id"].as_str().and_then(|i| i.parse().ok()) {
                    state.lock().unwrap().dispatched.push(id);
                }
            }
        }
    }
}
