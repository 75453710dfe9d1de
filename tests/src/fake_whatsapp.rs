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
