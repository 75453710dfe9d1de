//! A fake Telegram Bot API on 127.0.0.1: `/bot<TOKEN>/<method>` with the
//! method in any case (teloxide sends PascalCase, e.g. `GetUpdates`), a
//! `getMe` that carries `has_main_web_app`, long-polling `getUpdates` that
//! honours `offset`, and `sendMessage`/`sendChatAction` that are recorded.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::sync::Notify;

pub const BOT_ID: i64 = 7_000_000_001;
pub const BOT_USERNAME: &str = "oxibot_test_bot";

#[derive(Default)]
struct Inner {
    token: String,
    /// Every update ever injected; getUpdates serves those with id >= offset.
    updates: Vec<Value>,
    next_update: i64,
    next_message: i64,
    sent: Vec<Value>,
    /// When each `sent` entry arrived, and when each text message was
    /// injected (by message id): for latency measurements.
    sent_at: Vec<std::time::Instant>,
    injected_at: std::collections::HashMap<i64, std::time::Instant>,
    actions: Vec<Value>,
    answered_callbacks: Vec<String>,
    /// (offset asked, update ids served) per getUpdates call.
    polls: Vec<(i64, Vec<i64>)>,
    /// Offsets asked for, recorded when each getUpdates arrives.
    offsets: Vec<i64>,
    /// file_id → (file_path, bytes), for getFile and downloads.
    files: std::collections::HashMap<String, (String, Vec<u8>)>,
    downloads: Vec<String>,
    /// getUpdates calls still to fail with 502 Bad Gateway.
    failing_polls: u32,
    /// sendMessage calls so far, and which of them (1-based) answer 429.
    send_calls: u32,
    refused_sends: Vec<u32>,
    /// Chats that answer 403 (the user blocked the bot): never retried.
    blocked_chats: Vec<i64>,
    /// editMessageText calls that changed a message, as received, with
    /// `at_ms`: when, in ms since the fake started.
    edits: Vec<Value>,
    started: Option<std::time::Instant>,
    /// Every edit refused as Telegram refuses an old message's.
    refuse_edits: bool,
    /// Plain-text sends (drafts) answered only after this long.
    slow_plain_sends: Option<Duration>,
    /// Each sent message's text now (after edits), by (chat, message id).
    texts: std::collections::HashMap<(i64, i64), String>,
}

#[derive(Clone)]
pub struct FakeTelegram {
    pub base_url: String,
    inner: Arc<Mutex<Inner>>,
    wake: Arc<Notify>,
    _shutdown: Arc<tokio::sync::oneshot::Sender<()>>,
}

type St = (Arc<Mutex<Inner>>, Arc<Notify>);

impl FakeTelegram {
    pub fn start(token: &str) -> FakeTelegram {
        let inner = Arc::new(Mutex::new(Inner {
            token: token.to_string(),
            next_update: 100,
            next_message: 1,
            ..Default::default()
        }));
        let wake = Arc::new(Notify::new());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let state: St = (inner.clone(), wake.clone());
        let addr = crate::serve::in_background(move |addr_tx| async move {
            let listener = crate::serve::local_listener().await;
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let app = axum::Router::new()
                .route("/{bot}/{method}", axum::routing::any(handle))
                .route("/file/{bot}/{*path}", axum::routing::get(download))
                .with_state(state);
            tokio::select! {
                _ = crate::serve::http(listener, app) => {}
                _ = stop_rx => {}
            }
        });
        FakeTelegram {
            base_url: format!("http://{addr}"),
            inner,
            wake,
            _shutdown: Arc::new(stop_tx),
        }
    }

    /// A private text message from `user` (chat id = user id). Returns the update id.
    pub fn send_text(&self, user: i64, text: &str) -> i64 {
        self.inject(user, user, "private", text)
    }

    pub fn send_group_text(&self, group: i64, user: i64, text: &str) -> i64 {
        self.inject(group, user, "group", text)
    }

    /// `user` presses the button whose callback data is `data` under the
    /// bot's message `message_id` in `chat` (a `callback_query` update).
    pub fn press_button(&self, chat: i64, user: i64, message_id: i64, data: &str) -> i64 {
        let mut s = self.inner.lock().unwrap();
        let uid = s.next_update;
        s.next_update += 1;
        let kind = if chat == user { "private" } else { "group" };
        let update = json!({
            "update_id": uid,
            "callback_query": {
                "id": format!("cbq-{uid}"),
                "from": {"id": user, "is_bot": false, "first_name": "User"},
                "chat_instance": "ci-1",
                "data": data,
                "message": {
                    "message_id": message_id, "date": 1_700_000_001,
                    "chat": chat_json(chat, kind),
                    "from": {"id": BOT_ID, "is_bot": true, "first_name": "OxiBot", "username": BOT_USERNAME},
                    "text": "a message with buttons"
                }
            }
        });
        s.updates.push(update);
        drop(s);
        self.wake.notify_waiters();
        uid
    }

    /// The callback queries the bot answered (their ids).
    pub fn answered_callbacks(&self) -> Vec<String> {
        self.inner.lock().unwrap().answered_callbacks.clone()
    }

    fn inject(&self, chat: i64, user: i64, kind: &str, text: &str) -> i64 {
        let mut s = self.inner.lock().unwrap();
        let (uid, mid) = (s.next_update, s.next_message);
        s.next_update += 1;
        s.next_message += 1;
        let update = json!({
            "update_id": uid,
            "message": {
                "message_id": mid, "date": 1_700_000_000,
                "chat": chat_json(chat, kind),
                "from": {"id": user, "is_bot": false, "first_name": "User"},
                "text": text
            }
        });
        s.updates.push(update);
        s.injected_at.insert(mid, std::time::Instant::now());
        drop(s);
        self.wake.notify_waiters();
        uid
    }

    /// For each reply so far: (when the message it answers was injected,
    /// when the reply arrived). Replies to no injected message are left out.
    pub fn reply_times(&self) -> Vec<(std::time::Instant, std::time::Instant)> {
        let s = self.inner.lock().unwrap();
        s.sent
            .iter()
            .zip(&s.sent_at)
            .filter_map(|(m, at)| {
                let to = m["reply_parameters"]["message_id"].as_i64()?;
                Some((*s.injected_at.get(&to)?, *at))
            })
            .collect()
    }

    /// Every later edit is refused ("message can't be edited").
    pub fn refuse_edits(&self) {
        self.inner.lock().unwrap().refuse_edits = true;
    }

    /// Plain-text sendMessage calls (drafts) answer after `delay`.
    pub fn slow_plain_sends(&self, delay: Duration) {
        self.inner.lock().unwrap().slow_plain_sends = Some(delay);
    }

    /// editMessageText calls that changed a message.
    pub fn edits(&self) -> Vec<Value> {
        self.inner.lock().unwrap().edits.clone()
    }

    /// The text of the bot's message `message_id` in `chat` now, after
    /// every edit.
    pub fn text_now(&self, chat: i64, message_id: i64) -> Option<String> {
        self.inner.lock().unwrap().texts.get(&(chat, message_id)).cloned()
    }

    /// How many sendMessage calls the fake took.
    pub fn sent_count(&self) -> usize {
        self.inner.lock().unwrap().sent.len()
    }

    /// A private message carrying a file: `kind` is "photo", "voice" or
    /// "document". Returns the update id.
    pub fn send_file(&self, user: i64, kind: &str, caption: &str, name: &str, mime: &str, data: &[u8]) -> i64 {
        let mut s = self.inner.lock().unwrap();
        let (uid, mid) = (s.next_update, s.next_message);
        s.next_update += 1;
        s.next_message += 1;
        let mut store = |id: String, bytes: &[u8]| {
            let meta = json!({"file_id": id, "file_unique_id": format!("u-{id}"), "file_size": bytes.len()});
            s.files
                .insert(id.clone(), (format!("files/{id}-{name}"), bytes.to_vec()));
            meta
        };
        let mut message = json!({
            "message_id": mid, "date": 1_700_000_000,
            "chat": {"id": user, "type": "private", "first_name": "User"},
            "from": {"id": user, "is_bot": false, "first_name": "User"}
        });
        match kind {
            "photo" => {
                // Telegram sends every size; the thumbnail is not the picture.
                let mut small = store(format!("thumb{mid}"), b"thumbnail");
                small["width"] = json!(90);
                small["height"] = json!(90);
                let mut big = store(format!("photo{mid}"), data);
                big["width"] = json!(1280);
                big["height"] = json!(960);
                message["photo"] = json!([small, big]);
            }
            "voice" => {
                let mut v = store(format!("voice{mid}"), data);
                v["duration"] = json!(3);
                v["mime_type"] = json!(mime);
                message["voice"] = v;
            }
            _ => {
                let mut d = store(format!("doc{mid}"), data);
                d["file_name"] = json!(name);
                d["mime_type"] = json!(mime);
                message["document"] = d;
            }
        }
        if !caption.is_empty() {
            message["caption"] = json!(caption);
        }
        s.updates.push(json!({"update_id": uid, "message": message}));
        drop(s);
        self.wake.notify_waiters();
        uid
    }

    /// The `n`-th sendMessage call (counting from 1, over the fake's life)
    /// answers 429 Too Many Requests (retry after 1 s) instead of sending.
    pub fn refuse_send_number(&self, n: u32) {
        self.inner.lock().unwrap().refused_sends.push(n);
    }

    /// Every sendMessage to `chat` answers 403 Forbidden: bot was blocked
    /// by the user (a failure no retry cures).
    pub fn block_chat(&self, chat: i64) {
        self.inner.lock().unwrap().blocked_chats.push(chat);
    }

    /// The next `n` getUpdates calls fail with 502 Bad Gateway.
    pub fn fail_polls(&self, n: u32) {
        self.inner.lock().unwrap().failing_polls = n;
        self.wake.notify_waiters();
    }

    /// The file paths downloaded so far.
    pub fn downloads(&self) -> Vec<String> {
        self.inner.lock().unwrap().downloads.clone()
    }

    /// A raw update body, for malformed-payload tests.
    pub fn inject_raw(&self, body: Value) {
        self.inner.lock().unwrap().updates.push(body);
        self.wake.notify_waiters();
    }

    pub fn next_update_id(&self) -> i64 {
        let mut s = self.inner.lock().unwrap();
        let id = s.next_update;
        s.next_update += 1;
        id
    }

    pub fn sent(&self) -> Vec<Value> {
        self.inner.lock().unwrap().sent.clone()
    }

    pub fn actions(&self) -> Vec<Value> {
        self.inner.lock().unwrap().actions.clone()
    }

    /// Whether some getUpdates asked for an offset past `update`: the
    /// client has committed it.
    pub fn committed(&self, update: i64) -> bool {
        self.inner.lock().unwrap().offsets.iter().any(|o| *o > update)
    }

    pub fn wait_committed(&self, update: i64, timeout: Duration) {
        crate::poll::wait_for(&format!("update {update} to be committed"), timeout, || {
            self.committed(update).then_some(())
        })
    }

    pub fn polls(&self) -> Vec<(i64, Vec<i64>)> {
        self.inner.lock().unwrap().polls.clone()
    }

    /// Waits for at least `n` sent messages.
    pub fn wait_sent(&self, n: usize, timeout: Duration) -> Vec<Value> {
        crate::poll::wait_for(&format!("{n} Telegram messages"), timeout, || {
            Some(self.sent()).filter(|s| s.len() >= n)
        })
    }

    /// Waits until a getUpdates call served update `id`.
    pub fn wait_served(&self, id: i64, timeout: Duration) {
        crate::poll::wait_for(&format!("update {id} to be fetched"), timeout, || {
            self.polls().iter().any(|(_, ids)| ids.contains(&id)).then_some(())
        })
    }
}

fn ok(result: Value) -> Response {
    axum::Json(json!({"ok": true, "result": result})).into_response()
}

/// Parameters arrive as JSON, a form, or the query string.
/// A chat as the Bot API describes it: private, or a group of `kind`.
fn chat_json(chat: i64, kind: &str) -> Value {
    if kind == "private" {
        json!({"id": chat, "type": "private", "first_name": "User"})
    } else {
        json!({"id": chat, "type": kind, "title": "A group"})
    }
}

fn params(body: &Bytes) -> Value {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return v;
    }
    let mut map = serde_json::Map::new();
    for pair in String::from_utf8_lossy(body).split('&') {
        if let Some((k, v)) = pair.split_once('=') {
            map.insert(k.to_string(), Value::String(v.to_string()));
        }
    }
    Value::Object(map)
}

async fn download(State((inner, _)): State<St>, Path((bot, path)): Path<(String, String)>) -> Response {
    let mut s = inner.lock().unwrap();
    if bot.strip_prefix("bot") != Some(s.token.as_str()) {
        return axum::http::StatusCode::UNAUTHORIZED.into_response();
    }
    let found = s.files.values().find(|(p, _)| *p == path).map(|(_, b)| b.clone());
    s.downloads.push(path);
    match found {
        Some(bytes) => bytes.into_response(),
        None => axum::http::StatusCode::NOT_FOUND.into_response(),
    }
}

async fn handle(State((inner, wake)): State<St>, Path((bot, method)): Path<(String, String)>, body: Bytes) -> Response {
    let token = inner.lock().unwrap().token.clone();
    if bot.strip_prefix("bot") != Some(token.as_str()) {
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            axum::Json(json!({"ok": false, "error_code": 401, "description": "Unauthorized"})),
        )
            .into_response();
    }
    let p = params(&body);
    match method.to_ascii_lowercase().as_str() {
        "getme" => ok(json!({
            "id": BOT_ID, "is_bot": true, "first_name": "OxiBot", "username": BOT_USERNAME,
            "can_join_groups": true, "can_read_all_group_messages": false,
            "supports_inline_queries": false, "can_connect_to_business": false,
            "has_main_web_app": false
        })),
        "getupdates" => {
            let offset = p["offset"]
                .as_i64()
                .or_else(|| p["offset"].as_str()?.parse().ok())
                .unwrap_or(0);
            let timeout = p["timeout"]
                .as_u64()
                .or_else(|| p["timeout"].as_str()?.parse().ok())
                .unwrap_or(0);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout.min(30));
            inner.lock().unwrap().offsets.push(offset);
            loop {
                let notified = wake.notified();
                {
                    // A failing gateway also cuts the poll in flight.
                    let mut s = inner.lock().unwrap();
                    if s.failing_polls > 0 {
                        s.failing_polls -= 1;
                        return (
                            axum::http::StatusCode::BAD_GATEWAY,
                            axum::Json(json!({"ok": false, "error_code": 502, "description": "Bad Gateway"})),
                        )
                            .into_response();
                    }
                }
                let ready: Vec<Value> = {
                    let s = inner.lock().unwrap();
                    s.updates
                        .iter()
                        .filter(|u| u["update_id"].as_i64().unwrap_or(0) >= offset)
                        .cloned()
                        .collect()
                };
                if !ready.is_empty() || tokio::time::Instant::now() >= deadline {
                    let ids = ready.iter().filter_map(|u| u["update_id"].as_i64()).collect();
                    inner.lock().unwrap().polls.push((offset, ids));
                    return ok(Value::Array(ready));
                }
                let _ = tokio::time::timeout_at(deadline, notified).await;
            }
        }
        "sendmessage" => {
            let slow = inner
                .lock()
                .unwrap()
                .slow_plain_sends
                .filter(|_| p.get("parse_mode").is_none());
            if let Some(delay) = slow {
                tokio::time::sleep(delay).await;
            }
            let mut s = inner.lock().unwrap();
            s.send_calls += 1;
            if s.refused_sends.contains(&s.send_calls) {
                return (
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    axum::Json(json!({"ok": false, "error_code": 429,
                                      "description": "Too Many Requests: retry after 1",
                                      "parameters": {"retry_after": 1}})),
                )
                    .into_response();
            }
            let chat = p["chat_id"]
                .as_i64()
                .or_else(|| p["chat_id"].as_str()?.parse().ok())
                .unwrap_or(0);
            if s.blocked_chats.contains(&chat) {
                return (
                    axum::http::StatusCode::FORBIDDEN,
                    axum::Json(json!({"ok": false, "error_code": 403,
                                      "description": "Forbidden: bot was blocked by the user"})),
                )
                    .into_response();
            }
            let mid = s.next_message;
            s.next_message += 1;
            let mut recorded = p.clone();
            recorded["message_id"] = json!(mid);
            s.sent.push(recorded);
            let text = p["text"].as_str().unwrap_or_default().to_string();
            s.texts.insert((chat, mid), text);
            s.sent_at.push(std::time::Instant::now());
            ok(json!({
                "message_id": mid, "date": 1_700_000_001,
                "chat": {"id": chat, "type": "private", "first_name": "User"},
                "from": {"id": BOT_ID, "is_bot": true, "first_name": "OxiBot", "username": BOT_USERNAME},
                "text": p["text"]
            }))
        }
        // As Telegram: an edit to the same text (and buttons) is refused
        // as "not modified", an unknown message as "not found".
        "editmessagetext" => {
            let mut s = inner.lock().unwrap();
            let chat = p["chat_id"]
                .as_i64()
                .or_else(|| p["chat_id"].as_str()?.parse().ok())
                .unwrap_or(0);
            let mid = p["message_id"].as_i64().unwrap_or(0);
            let text = p["text"].as_str().unwrap_or_default().to_string();
            let bad = |description: &str| {
                (
                    axum::http::StatusCode::BAD_REQUEST,
                    axum::Json(json!({"ok": false, "error_code": 400, "description": description})),
                )
                    .into_response()
            };
            if s.refuse_edits {
                return bad("Bad Request: message can't be edited");
            }
            match s.texts.get(&(chat, mid)) {
                None => return bad("Bad Request: message to edit not found"),
                Some(now) if *now == text && p.get("reply_markup").is_none() => {
                    return bad(
                        "Bad Request: message is not modified: specified new message content and reply markup \
                         are exactly the same as a current content and reply markup of the message",
                    )
                }
                Some(_) => {}
            }
            s.texts.insert((chat, mid), text);
            let mut recorded = p.clone();
            recorded["at_ms"] = json!(s
                .started
                .get_or_insert_with(std::time::Instant::now)
                .elapsed()
                .as_millis() as u64);
            s.edits.push(recorded);
            ok(json!({
                "message_id": mid, "date": 1_700_000_001, "edit_date": 1_700_000_002,
                "chat": {"id": chat, "type": "private", "first_name": "User"},
                "from": {"id": BOT_ID, "is_bot": true, "first_name": "OxiBot", "username": BOT_USERNAME},
                "text": p["text"]
            }))
        }
        "getfile" => {
            let id = p["file_id"].as_str().unwrap_or_default().to_string();
            match inner.lock().unwrap().files.get(&id) {
                Some((path, bytes)) => ok(json!({"file_id": id, "file_unique_id": format!("u-{id}"),
                                                 "file_size": bytes.len(), "file_path": path})),
                None => (
                    axum::http::StatusCode::BAD_REQUEST,
                    axum::Json(json!({"ok": false, "error_code": 400, "description": "Bad Request: invalid file_id"})),
                )
                    .into_response(),
            }
        }
        "sendchataction" => {
            inner.lock().unwrap().actions.push(p);
            ok(json!(true))
        }
        "answercallbackquery" => {
            let id = p["callback_query_id"].as_str().unwrap_or_default().to_string();
            inner.lock().unwrap().answered_callbacks.push(id);
            ok(json!(true))
        }
        other => (
            axum::http::StatusCode::NOT_FOUND,
            axum::Json(json!({"ok": false, "error_code": 404, "description": format!("Not Found: method {other}")})),
        )
            .into_response(),
    }
}
