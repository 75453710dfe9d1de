//! A fake Slack: the Web API (`auth.test`, `apps.connections.open`,
//! `chat.postMessage`) and a Socket Mode WebSocket that says `hello`, sends
//! `events_api` envelopes and records their acks. As Slack does, each
//! envelope goes to *one* of the app's open connections (slack-morphism
//! keeps two), and an envelope not acked is sent again when its connection
//! closes, to another open one or to the next that opens.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as Ws;

pub const BOT_USER: &str = "UBOT0001";

#[derive(Default)]
struct Inner {
    bot_token: String,
    app_token: String,
    socket_url: String,
    envelopes: Vec<Value>,
    acked: Vec<String>,
    posted: Vec<Value>,
    connections: usize,
    next: u64,
    /// The open Socket Mode connections, by number.
    open: Vec<(usize, mpsc::UnboundedSender<Value>)>,
    /// Which connection each envelope went to.
    assigned: Vec<(String, usize)>,
    /// Round-robin over the open connections.
    turn: usize,
    /// Each posted message's text now (after updates), by ts.
    texts: std::collections::HashMap<String, String>,
    /// chat.update calls, as received, with `at_ms`.
    updates: Vec<Value>,
    /// This server's address, for file links.
    address: String,
    /// Shared files by id: (bytes, or a size to stream of zeros).
    files: std::collections::HashMap<String, SharedFile>,
    /// (file id, Authorization header, bytes served) per download.
    downloads: Vec<(String, String, usize)>,
    started: Option<std::time::Instant>,
}

impl Inner {
    /// Hands a frame to one open connection; false when none is open.
    fn dispatch(&mut self, frame: Value) -> bool {
        if self.open.is_empty() {
            return false;
        }
        self.turn = (self.turn + 1) % self.open.len();
        let (conn, tx) = &self.open[self.turn];
        if let Some(id) = frame["envelope_id"].as_str() {
            self.assigned.retain(|(e, _)| e != id);
            self.assigned.push((id.to_string(), *conn));
        }
        tx.send(frame).is_ok()
    }

    /// Envelopes not acked and not held by an open connection.
    fn unheld(&self) -> Vec<Value> {
        self.envelopes
            .iter()
            .filter(|e| {
                let id = e["envelope_id"].as_str().unwrap_or_default();
                !self.acked.iter().any(|a| a == id)
                    && !self
                        .assigned
                        .iter()
                        .any(|(env, conn)| env == id && self.open.iter().any(|(c, _)| c == conn))
            })
            .cloned()
            .collect()
    }
}

#[derive(Clone)]
pub struct FakeSlack {
    pub api_base: String,
    inner: Arc<Mutex<Inner>>,
}

type St = Arc<Mutex<Inner>>;

/// A file a message shares.
#[derive(Clone)]
enum SharedFile {
    Bytes(Vec<u8>),
    /// Announced with this length, then streamed in 64 KiB pieces.
    Huge(usize),
}

impl FakeSlack {
    pub fn start(bot_token: &str, app_token: &str) -> FakeSlack {
        let inner = Arc::new(Mutex::new(Inner {
            bot_token: bot_token.into(),
            app_token: app_token.into(),
            next: 1,
            ..Default::default()
        }));
        let state = inner.clone();
        let addr = crate::serve::in_background(move |addr_tx| async move {
            let http = crate::serve::local_listener().await;
            let ws = crate::serve::local_listener().await;
            state.lock().unwrap().socket_url = format!("ws://{}/", ws.local_addr().unwrap());
            addr_tx.send(http.local_addr().unwrap()).unwrap();
            let ws_state = state.clone();
            tokio::spawn(crate::serve::accept_each(ws, move |tcp| socket(tcp, ws_state.clone())));
            state.lock().unwrap().address = format!("{}", http.local_addr().unwrap());
            let app = axum::Router::new()
                .route("/api/{method}", axum::routing::any(api))
                .route("/files/{id}/{name}", axum::routing::get(file))
                .with_state(state);
            crate::serve::http(http, app).await;
        });
        FakeSlack {
            api_base: format!("http://{addr}/api/"),
            inner,
        }
    }

    /// A message event; returns the envelope id.
    pub fn message(&self, channel: &str, channel_type: &str, user: &str, text: &str) -> String {
        self.message_sharing(channel, channel_type, user, text, None)
    }

    /// A message that shares a file (subtype `file_share`), served by this
    /// fake to the bot token; returns the envelope id.
    pub fn share_file(&self, channel: &str, user: &str, text: &str, name: &str, mime: &str, data: &[u8]) -> String {
        self.share(
            channel,
            user,
            text,
            name,
            mime,
            SharedFile::Bytes(data.to_vec()),
            data.len(),
        )
    }

    /// A message that shares a file of `size` bytes, streamed when asked.
    pub fn share_huge_file(&self, channel: &str, user: &str, name: &str, size: usize) -> String {
        self.share(channel, user, "", name, "application/zip", SharedFile::Huge(size), size)
    }

    #[allow(clippy::too_many_arguments)]
    fn share(
        &self,
        channel: &str,
        user: &str,
        text: &str,
        name: &str,
        mime: &str,
        file: SharedFile,
        size: usize,
    ) -> String {
        let (id, url) = {
            let mut s = self.inner.lock().unwrap();
            let id = format!("F{:04}", s.files.len() + 1);
            s.files.insert(id.clone(), file);
            (id.clone(), format!("http://{}/files/{id}/{name}", s.address))
        };
        let shared = json!({"id": id, "name": name, "title": name, "mimetype": mime, "size": size,
                            "url_private": url, "url_private_download": url});
        self.message_sharing(channel, "im", user, text, Some(shared))
    }

    /// (file id, Authorization header, bytes served) of each download.
    pub fn downloads(&self) -> Vec<(String, String, usize)> {
        self.inner.lock().unwrap().downloads.clone()
    }

    fn message_sharing(
        &self,
        channel: &str,
        channel_type: &str,
        user: &str,
        text: &str,
        file: Option<Value>,
    ) -> String {
        let mut s = self.inner.lock().unwrap();
        let n = s.next;
        s.next += 1;
        let ts = format!("1700000000.{n:06}");
        let envelope_id = format!("env-{n}");
        let envelope = json!({
            "envelope_id": envelope_id, "type": "events_api", "accepts_response_payload": false,
            "retry_attempt": 0, "retry_reason": "",
            "payload": {
                "token": "verification", "team_id": "T0001", "api_app_id": "A0001", "type": "event_callback",
                "event_id": format!("Ev{n}"), "event_time": 1_700_000_000,
                "event": {"type": "message", "channel": channel, "channel_type": channel_type, "user": user,
                          "text": text, "ts": ts, "event_ts": ts}
            }
        });
        let mut envelope = envelope;
        if let Some(file) = file {
            envelope["payload"]["event"]["subtype"] = json!("file_share");
            envelope["payload"]["event"]["files"] = json!([file]);
        }
        s.envelopes.push(envelope.clone());
        s.dispatch(envelope);
        envelope_id
    }

    /// `user` presses the button with `value` under a message in
    /// `channel` (an `interactive` envelope of `block_actions`); returns
    /// the envelope id.
    pub fn press_button(&self, channel: &str, user: &str, value: &str) -> String {
        let mut s = self.inner.lock().unwrap();
        let n = s.next;
        s.next += 1;
        let envelope_id = format!("env-{n}");
        let envelope = json!({
            "envelope_id": envelope_id, "type": "interactive", "accepts_response_payload": true,
            "payload": {
                "type": "block_actions", "team": {"id": "T0001", "domain": "oxibot-test"},
                "user": {"id": user, "username": "someone", "team_id": "T0001"},
                "api_app_id": "A0001", "token": "verification", "trigger_id": format!("trig-{n}"),
                "container": {"type": "message", "message_ts": "1700000001.000001", "channel_id": channel,
                              "is_ephemeral": false},
                "channel": {"id": channel, "name": "a-channel"},
                "actions": [{"type": "button", "action_id": "oxibot-0", "block_id": "b1",
                             "text": {"type": "plain_text", "text": "Approve"}, "value": value,
                             "action_ts": format!("1700000002.{n:06}")}]
            }
        });
        s.envelopes.push(envelope.clone());
        s.dispatch(envelope);
        envelope_id
    }

    /// A raw Socket Mode frame to one open connection.
    pub fn push_raw(&self, frame: Value) {
        self.inner.lock().unwrap().dispatch(frame);
    }

    /// chat.update calls, with `at_ms`.
    pub fn updates(&self) -> Vec<Value> {
        self.inner.lock().unwrap().updates.clone()
    }

    /// A bot message's text now, after every update.
    pub fn text_now(&self, ts: &str) -> Option<String> {
        self.inner.lock().unwrap().texts.get(ts).cloned()
    }

    pub fn posted(&self) -> Vec<Value> {
        self.inner.lock().unwrap().posted.clone()
    }

    pub fn acked(&self) -> Vec<String> {
        self.inner.lock().unwrap().acked.clone()
    }

    pub fn connections(&self) -> usize {
        self.inner.lock().unwrap().connections
    }

    pub fn wait_posted(&self, n: usize, timeout: Duration) -> Vec<Value> {
        crate::poll::wait_for(&format!("{n} Slack messages"), timeout, || {
            Some(self.posted()).filter(|p| p.len() >= n)
        })
    }

    pub fn wait_connected(&self, timeout: Duration) {
        crate::poll::wait_for("a Socket Mode connection", timeout, || {
            (self.connections() > 0).then_some(())
        })
    }
}

fn form_or_json(body: &Bytes) -> Value {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return v;
    }
    let mut map = serde_json::Map::new();
    for pair in String::from_utf8_lossy(body).split('&') {
        if let Some((k, v)) = pair.split_once('=') {
            map.insert(k.into(), Value::String(v.into()));
        }
    }
    Value::Object(map)
}

async fn api(State(state): State<St>, Path(method): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let (bot, app, url) = {
        let s = state.lock().unwrap();
        (
            format!("Bearer {}", s.bot_token),
            format!("Bearer {}", s.app_token),
            s.socket_url.clone(),
        )
    };
    let invalid = || axum::Json(json!({"ok": false, "error": "invalid_auth"})).into_response();
    match method.as_str() {
        "auth.test" if auth == bot => axum::Json(json!({
            "ok": true, "url": "https://oxibot-test.slack.com/", "team": "OxiBot Test", "user": "oxibot",
            "team_id": "T0001", "user_id": BOT_USER, "bot_id": "B0001"
        }))
        .into_response(),
        "apps.connections.open" if auth == app => axum::Json(json!({"ok": true, "url": url})).into_response(),
        "chat.postMessage" if auth == bot => {
            let v = form_or_json(&body);
            let ts = {
                let mut s = state.lock().unwrap();
                s.next += 1;
                let ts = format!("1700000001.{:06}", s.next);
                let mut recorded = v.clone();
                recorded["ts"] = json!(ts);
                s.posted.push(recorded);
                s.texts
                    .insert(ts.clone(), v["text"].as_str().unwrap_or_default().to_string());
                ts
            };
            axum::Json(json!({"ok": true, "channel": v["channel"], "ts": ts,
                              "message": {"type": "message", "text": v["text"], "user": BOT_USER, "ts": ts}}))
            .into_response()
        }
        "chat.update" if auth == bot => {
            let v = form_or_json(&body);
            let ts = v["ts"].as_str().unwrap_or_default().to_string();
            let mut s = state.lock().unwrap();
            if !s.texts.contains_key(&ts) {
                return axum::Json(json!({"ok": false, "error": "message_not_found"})).into_response();
            }
            s.texts
                .insert(ts.clone(), v["text"].as_str().unwrap_or_default().to_string());
            let at = s
                .started
                .get_or_insert_with(std::time::Instant::now)
                .elapsed()
                .as_millis() as u64;
            let mut recorded = v.clone();
            recorded["at_ms"] = json!(at);
            s.updates.push(recorded);
            axum::Json(json!({"ok": true, "channel": v["channel"], "ts": ts, "text": v["text"],
                              "message": {"type": "message", "text": v["text"], "user": BOT_USER, "ts": ts}}))
            .into_response()
        }
        _ => invalid(),
    }
}

/// A shared file, to the bot token only (as Slack's private links).
async fn file(
    State(state): State<St>,
    Path((id, _name)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let (file, allowed) = {
        let s = state.lock().unwrap();
        (s.files.get(&id).cloned(), auth == format!("Bearer {}", s.bot_token))
    };
    let index = {
        let mut s = state.lock().unwrap();
        s.downloads.push((id.clone(), auth, 0));
        s.downloads.len() - 1
    };
    match (file, allowed) {
        (_, false) => axum::http::StatusCode::FORBIDDEN.into_response(),
        (None, _) => axum::http::StatusCode::NOT_FOUND.into_response(),
        (Some(SharedFile::Bytes(data)), true) => {
            state.lock().unwrap().downloads[index].2 = data.len();
            data.into_response()
        }
        (Some(SharedFile::Huge(size)), true) => {
            // Counted as pulled: a client that stops reading pulls little.
            let pieces = size.div_ceil(64 * 1024);
            let body = futures_util::stream::unfold(0usize, move |n| {
                let state = state.clone();
                async move {
                    if n >= pieces {
                        return None;
                    }
                    state.lock().unwrap().downloads[index].2 += 64 * 1024;
                    Some((Ok::<_, std::convert::Infallible>(vec![0u8; 64 * 1024]), n + 1))
                }
            });
            let mut resp = axum::body::Body::from_stream(body).into_response();
            resp.headers_mut()
                .insert("content-length", (pieces * 64 * 1024).to_string().parse().unwrap());
            resp
        }
    }
}

async fn socket(tcp: tokio::net::TcpStream, state: St) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let text = |v: &Value| Ws::Text(v.to_string().into());
    let hello = json!({"type": "hello", "num_connections": 1,
                       "debug_info": {"host": "fake-slack", "build_number": 1, "approximate_connection_time": 3600},
                       "connection_info": {"app_id": "A0001"}});
    if ws.send(text(&hello)).await.is_err() {
        return;
    }
    let (tx, mut frames) = mpsc::unbounded_channel::<Value>();
    let me = {
        let mut s = state.lock().unwrap();
        s.connections += 1;
        let me = s.connections;
        // What no open connection holds comes here first.
        for e in s.unheld() {
            s.assigned.retain(|(env, _)| e["envelope_id"] != env.as_str());
            s.assigned
                .push((e["envelope_id"].as_str().unwrap_or_default().to_string(), me));
            let _ = tx.send(e);
        }
        s.open.push((me, tx));
        me
    };
    loop {
        tokio::select! {
            frame = ws.next() => {
                let Some(Ok(frame)) = frame else { break };
                match frame {
                    Ws::Text(t) => {
                        let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                        if let Some(id) = v["envelope_id"].as_str() {
                            state.lock().unwrap().acked.push(id.to_string());
                        }
                    }
                    Ws::Ping(p) => { let _ = ws.send(Ws::Pong(p)).await; }
                    Ws::Close(_) => break,
                    _ => {}
                }
            }
            pushed = frames.recv() => {
                let Some(e) = pushed else { break };
                if ws.send(text(&e)).await.is_err() { break; }
            }
        }
    }
    // Gone: what it held and did not ack goes to another open connection.
    let mut s = state.lock().unwrap();
    s.open.retain(|(c, _)| *c != me);
    for e in s.unheld() {
        s.dispatch(e);
    }
}
