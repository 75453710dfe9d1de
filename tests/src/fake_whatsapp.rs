//! A fake WhatsApp bridge on ws://127.0.0.1 speaking the bridge protocol:
//! the client's first frame must be `{"type":"auth","token":…}`; then it
//! gets `message` frames and answers `send` frames with `sent`. Messages
//! the client has not `ack`ed are sent again on its next connection.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

#[derive(Default)]
struct Inner {
    token: String,
    messages: Vec<Value>,
    acked: Vec<String>,
    sent: Vec<Value>,
    connections: usize,
    auth_failures: usize,
    next: u64,
    /// Media by id (the bytes the bridge holds), and the ids asked for.
    media: std::collections::HashMap<String, Vec<u8>>,
    downloads: Vec<String>,
}

#[derive(Clone)]
pub struct FakeBridge {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    push: broadcast::Sender<Value>,
}

impl FakeBridge {
    pub fn start(token: &str) -> FakeBridge {
        let inner = Arc::new(Mutex::new(Inner {
            token: token.into(),
            next: 1,
            ..Default::default()
        }));
        let (push, _) = broadcast::channel::<Value>(64);
        let (state, pusher) = (inner.clone(), push.clone());
        let addr = crate::serve::in_background(move |addr_tx| async move {
            let listener = crate::serve::local_listener().await;
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            crate::serve::accept_each(listener, move |tcp| serve(tcp, state.clone(), pusher.subscribe())).await;
        });
        FakeBridge {
            url: format!("ws://{addr}"),
            inner,
            push,
        }
    }

    /// A message from `sender`; returns its id.
    pub fn receive(&self, sender: &str, content: &str) -> String {
        let mut s = self.inner.lock().unwrap();
        let id = format!("wamid.{}", s.next);
        s.next += 1;
        let frame = json!({"type": "message", "id": id, "sender": sender, "pn": "", "content": content,
                           "timestamp": 1_700_000_000, "isGroup": false});
        s.messages.push(frame.clone());
        drop(s);
        let _ = self.push.send(frame);
        id
    }

    /// A message with a medium (`caption` its text); returns its id.
    pub fn receive_media(&self, sender: &str, caption: &str, name: &str, mime: &str, data: &[u8]) -> String {
        self.media_message(sender, caption, name, mime, data.len() as u64, Some(data.to_vec()))
    }

    /// A message announcing a medium of `size` bytes the bridge would
    /// stream if asked.
    pub fn receive_huge_media(&self, sender: &str, name: &str, size: u64) -> String {
        self.media_message(sender, "", name, "video/mp4", size, None)
    }

    fn media_message(
        &self,
        sender: &str,
        caption: &str,
        name: &str,
        mime: &str,
        size: u64,
        data: Option<Vec<u8>>,
    ) -> String {
        let mut s = self.inner.lock().unwrap();
        let id = format!("wamid.{}", s.next);
        let media_id = format!("media-{}", s.next);
        s.next += 1;
        if let Some(data) = data {
            s.media.insert(media_id.clone(), data);
        }
        let frame = json!({"type": "message", "id": id, "sender": sender, "pn": "", "content": caption,
                           "timestamp": 1_700_000_000, "isGroup": false,
                           "media": {"id": media_id, "mimetype": mime, "fileName": name, "fileLength": size}});
        s.messages.push(frame.clone());
        drop(s);
        let _ = self.push.send(frame);
        id
    }

    /// The media ids a client asked for.
    pub fn downloads(&self) -> Vec<String> {
        self.inner.lock().unwrap().downloads.clone()
    }

    /// A raw frame to every connected client.
    pub fn push_raw(&self, frame: Value) {
        let _ = self.push.send(frame);
    }

    pub fn sent(&self) -> Vec<Value> {
        self.inner.lock().unwrap().sent.clone()
    }

    pub fn acked(&self) -> Vec<String> {
        self.inner.lock().unwrap().acked.clone()
    }

    pub fn auth_failures(&self) -> usize {
        self.inner.lock().unwrap().auth_failures
    }

    pub fn connections(&self) -> usize {
        self.inner.lock().unwrap().connections
    }

    pub fn wait_sent(&self, n: usize, timeout: Duration) -> Vec<Value> {
        crate::poll::wait_for(&format!("{n} bridge sends"), timeout, || {
            Some(self.sent()).filter(|s| s.len() >= n)
        })
    }
}

async fn serve(tcp: tokio::net::TcpStream, state: Arc<Mutex<Inner>>, mut pushes: broadcast::Receiver<Value>) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    // The first frame must authenticate.
    let authed = match ws.next().await {
        Some(Ok(Message::Text(t))) => {
            let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
            v["type"] == "auth" && v["token"].as_str() == Some(state.lock().unwrap().token.as_str())
        }
        _ => false,
    };
    if !authed {
        state.lock().unwrap().auth_failures += 1;
        let _ = ws
            .send(Message::Text(
                json!({"type": "error", "error": "unauthorized"}).to_string().into(),
            ))
            .await;
        let _ = ws.close(None).await;
        return;
    }
    let pending: Vec<Value> = {
        let mut s = state.lock().unwrap();
        s.connections += 1;
        s.messages
            .iter()
            .filter(|m| !s.acked.iter().any(|a| m["id"] == a.as_str()))
            .cloned()
            .collect()
    };
    for m in pending {
        if ws.send(Message::Text(m.to_string().into())).await.is_err() {
            return;
        }
    }
    let _ = ws
        .send(Message::Text(
            json!({"type": "status", "status": "connected"}).to_string().into(),
        ))
        .await;
    loop {
        tokio::select! {
            frame = ws.next() => {
                let Some(Ok(Message::Text(t))) = frame else { return };
                let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                match v["type"].as_str() {
                    Some("send") => {
                        state.lock().unwrap().sent.push(v.clone());
                        let reply = json!({"type": "sent", "to": v["to"]});
                        if ws.send(Message::Text(reply.to_string().into())).await.is_err() {
                            return;
                        }
                    }
                    Some("download") => {
                        let id = v["id"].as_str().unwrap_or_default().to_string();
                        let data = {
                            let mut s = state.lock().unwrap();
                            s.downloads.push(id.clone());
                            s.media.get(&id).cloned()
                        };
                        use base64::Engine;
                        let reply = match data {
                            Some(d) => json!({"type": "media", "id": id,
                                              "data": base64::engine::general_purpose::STANDARD.encode(d)}),
                            None => json!({"type": "media", "id": id, "error": "no such media"}),
                        };
                        if ws.send(Message::Text(reply.to_string().into())).await.is_err() {
                            return;
                        }
                    }
                    Some("ack") => {
                        if let Some(id) = v["id"].as_str() {
                            state.lock().unwrap().acked.push(id.to_string());
                        }
                    }
                    _ => {
                        let reply = json!({"type": "error", "error": format!("unknown command type: {}", v["type"])});
                        let _ = ws.send(Message::Text(reply.to_string().into())).await;
                    }
                }
            }
            pushed = pushes.recv() => {
                let Ok(frame) = pushed else { continue };
                if ws.send(Message::Text(frame.to_string().into())).await.is_err() {
                    return;
                }
            }
        }
    }
}
