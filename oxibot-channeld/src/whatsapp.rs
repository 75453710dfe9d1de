//! WhatsApp through a bridge (OxiBot's Baileys bridge protocol) over a
//! WebSocket, with tokio-tungstenite.
//!
//! The first frame is `{"type":"auth","token":…}`. The bridge sends
//! `message`, `status`, `qr`, `error` and `sent` frames; we send `send`
//! frames, and `ack` frames once the broker has committed a message, so a
//! bridge that keeps unacknowledged messages can redeliver them after a
//! reconnect. Unknown or malformed frames are logged and skipped.
//!
//! Media: a `message` may name one (`media: {id, mimetype, fileName,
//! fileLength}`, the caption in `content`). Its bytes are asked for with
//! `{"type":"download","id":…}` only after the broker said the sender is
//! admitted and only when the announced length fits; the bridge answers
//! `{"type":"media","id":…,"data":BASE64}` (or `"error"`).

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use oxibot_proto::messages::{Attachment, MAX_FILE_BYTES};

use crate::incoming::Incoming;
use crate::link::{Job, Link, Part, PartSender};
use crate::{format, Fatal};

const MAX_MESSAGE: usize = 4096;
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// A medium of 20 MiB over a local socket: well within this.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(60);

use oxibot_proto::settings::WhatsAppSettings as Settings;

use oxibot_proto::settings::WhatsAppCredential as Credential;

/// The bridge token travels in the first frame, in clear over `ws://`: only
/// to a bridge on this machine. (Any local user who binds the bridge's port
/// while the bridge is down could receive it; the README says so.)
fn check_bridge_url(url: &str) -> Result<(), Fatal> {
    let parsed = url::Url::parse(url).map_err(|e| Fatal::config(format!("channels.whatsapp.bridgeUrl {url}: {e}")))?;
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match parsed.scheme() {
        "ws" if loopback => Ok(()),
        "ws" => Err(Fatal::config(format!(
            "channels.whatsapp.bridgeUrl {url}: the bridge token would cross the network in clear; \
             run the bridge on this machine (ws://127.0.0.1:PORT)"
        ))),
        other => Err(Fatal::config(format!(
            "channels.whatsapp.bridgeUrl {url}: scheme {other} is not supported; run the bridge on this \
             machine (ws://127.0.0.1:PORT)"
        ))),
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

enum Ended {
    /// The bridge went away: reconnect.
    Bridge(String),
    /// Fatal for the daemon.
    Fatal(Fatal),
}

pub async fn run(link: Link, mut jobs: mpsc::Receiver<Job>, settings: &str, credential: &str) -> Result<(), Fatal> {
    let settings: Settings =
        serde_json::from_str(settings).map_err(|e| Fatal::config(format!("channels.whatsapp: {e}")))?;
    let credential: Credential = serde_json::from_str(credential)
        .map_err(|_| Fatal::config("channels.whatsapp.bridgeToken is missing from the secrets file".into()))?;
    check_bridge_url(&settings.bridge_url)?;
    let mut backoff = Duration::from_millis(500);
    loop {
        let ws = match tokio_tungstenite::connect_async(settings.bridge_url.as_str()).await {
            Ok((ws, _)) => ws,
            Err(e) => {
                link.status(false, Some(format!("cannot reach the WhatsApp bridge: {e}")))
                    .await;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        backoff = Duration::from_millis(500);
        match session(ws, &link, &mut jobs, &credential.bridge_token).await {
            Ended::Fatal(f) => return Err(f),
            Ended::Bridge(why) => {
                tracing::warn!("WhatsApp bridge connection ended: {why}; reconnecting");
                link.status(false, Some(why)).await;
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

async fn session(mut ws: Ws, link: &Link, jobs: &mut mpsc::Receiver<Job>, token: &str) -> Ended {
    if let Err(e) = ws
        .send(WsMessage::Text(
            json!({"type": "auth", "token": token}).to_string().into(),
        ))
        .await
    {
        return Ended::Bridge(format!("cannot authenticate: {e}"));
    }
    link.status(true, None).await;
    // Frames that arrived while we waited for a `sent`.
    let mut backlog: VecDeque<Value> = VecDeque::new();
    loop {
        let frame = if let Some(f) = backlog.pop_front() {
            Some(f)
        } else {
            tokio::select! {
                incoming = ws.next() => match incoming {
                    Some(Ok(WsMessage::Text(t))) => match serde_json::from_str::<Value>(&t) {
                        Ok(v) => Some(v),
                        Err(e) => {
                            tracing::warn!("malformed frame from the bridge skipped: {e}");
                            None
                        }
                    },
                    Some(Ok(WsMessage::Close(_))) | None => return Ended::Bridge("the bridge closed the connection".into()),
                    Some(Ok(_)) => None,
                    Some(Err(e)) => return Ended::Bridge(e.to_string()),
                },
                job = jobs.recv() => {
                    match job {
                        None => return Ended::Fatal(Fatal::broker("the broker connection closed".into())),
                        // No typing indicator, and no edits: the answer comes whole.
                        Some(Job::Typing { .. } | Job::Draft(_)) => {}
                        Some(Job::Send(reply)) => {
                            let parts = format::split(&reply.text, MAX_MESSAGE);
                            let mut bridge = Bridge { ws: &mut ws, backlog: &mut backlog };
                            if link.deliver_parts(&reply, parts, &mut bridge).await.is_err() {
                                return Ended::Fatal(Fatal::broker("the broker connection closed".into()));
                            }
                        }
                    }
                    None
                }
            }
        };
        let Some(frame) = frame else { continue };
        match frame["type"].as_str() {
            Some("message") => {
                let Some(incoming) = read(&frame) else {
                    tracing::warn!("bridge message without id/sender/content skipped");
                    continue;
                };
                let id = incoming.platform_id.clone();
                // A stranger's media are not even asked for.
                let (attachments, notes) = match frame.get("media").filter(|m| m.is_object()) {
                    Some(media) if link.may_fetch(incoming.may_fetch()).await => {
                        let mut bridge = Bridge {
                            ws: &mut ws,
                            backlog: &mut backlog,
                        };
                        bridge.download(media).await
                    }
                    _ => (Vec::new(), Vec::new()),
                };
                let inbound = incoming.into_inbound(attachments, &notes);
                if let Err(e) = link.deliver_inbound(inbound, &id).await {
                    return Ended::Fatal(Fatal::from(e));
                }
                if let Err(e) = ws
                    .send(WsMessage::Text(json!({"type": "ack", "id": id}).to_string().into()))
                    .await
                {
                    return Ended::Bridge(e.to_string());
                }
            }
            Some("status") => {
                let up = frame["status"].as_str() == Some("connected");
                link.status(up, (!up).then(|| "the bridge lost WhatsApp".to_string()))
                    .await;
            }
            Some("qr") => tracing::warn!("the WhatsApp bridge needs pairing: scan its QR code"),
            Some("error") => {
                let error = frame["error"].as_str().unwrap_or("unknown error").to_string();
                if error.contains("unauthorized") {
                    let msg = "the WhatsApp bridge refused channels.whatsapp.bridgeToken".to_string();
                    link.status(false, Some(msg.clone())).await;
                    return Ended::Fatal(Fatal::config(msg));
                }
                tracing::warn!(%error, "the WhatsApp bridge reported an error");
            }
            _ => tracing::debug!("bridge frame ignored: {frame}"),
        }
    }
}

/// A bridge `message` frame as the broker will see it; None without an
/// id, a sender or content.
pub(crate) fn read(frame: &Value) -> Option<Incoming> {
    // A medium may come without a caption.
    let media = frame.get("media").is_some_and(Value::is_object);
    let (id, sender, content) = (
        frame["id"].as_str()?,
        frame["sender"].as_str()?,
        frame["content"].as_str().or(media.then_some(""))?,
    );
    Some(Incoming {
        platform_id: id.to_string(),
        chat_id: sender.to_string(),
        // The phone-number id when the bridge knows it (allow-lists name numbers).
        sender: frame["pn"]
            .as_str()
            .filter(|p| !p.is_empty())
            .unwrap_or(sender)
            .to_string(),
        text: content.to_string(),
        is_group: frame["isGroup"].as_bool().unwrap_or(false),
        mentioned: frame["mentioned"].as_bool().unwrap_or(false),
    })
}

/// The bridge as a [`PartSender`]: each part waits for the bridge's
/// `sent`; other frames that arrive meanwhile are kept for the main loop.
struct Bridge<'a> {
    ws: &'a mut Ws,
    backlog: &'a mut VecDeque<Value>,
}

impl Bridge<'_> {
    /// A message's medium, if its announced length fits: asked for, and
    /// waited for (other frames meanwhile kept for the main loop).
    async fn download(&mut self, media: &Value) -> (Vec<Attachment>, Vec<String>) {
        let name = media["fileName"]
            .as_str()
            .filter(|n| !n.is_empty())
            .unwrap_or("whatsapp-media")
            .to_string();
        let mime = media["mimetype"]
            .as_str()
            .unwrap_or("application/octet-stream")
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        let Some(id) = media["id"].as_str() else {
            return (
                Vec::new(),
                vec![crate::attach::not_downloaded(&name, "the bridge gave no media id")],
            );
        };
        let announced = media["fileLength"]
            .as_u64()
            .or_else(|| media["fileLength"].as_str()?.parse().ok());
        if let Some(size) = announced.filter(|s| !crate::attach::fits(*s)) {
            return (Vec::new(), vec![crate::attach::too_large(&name, size)]);
        }
        match self.fetch(id).await {
            Ok(data) if crate::attach::fits(data.len() as u64) => {
                let kind = crate::attach::kind_for(&mime);
                (vec![Attachment { kind, name, mime, data }], Vec::new())
            }
            Ok(data) => (Vec::new(), vec![crate::attach::too_large(&name, data.len() as u64)]),
            Err(e) => (Vec::new(), vec![crate::attach::not_downloaded(&name, &e)]),
        }
    }

    async fn fetch(&mut self, id: &str) -> Result<Vec<u8>, String> {
        let ask = json!({"type": "download", "id": id}).to_string();
        self.ws
            .send(WsMessage::Text(ask.into()))
            .await
            .map_err(|e| format!("cannot ask the bridge: {e}"))?;
        let deadline = tokio::time::Instant::now() + DOWNLOAD_TIMEOUT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| "the bridge did not send it in time".to_string())?;
            let frame = match next {
                Some(Ok(WsMessage::Text(t))) => serde_json::from_str::<Value>(&t).unwrap_or(Value::Null),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("the bridge closed the connection".into()),
            };
            if frame["type"] != "media" || frame["id"].as_str() != Some(id) {
                self.backlog.push_back(frame);
                continue;
            }
            if let Some(error) = frame["error"].as_str() {
                return Err(format!("the bridge could not fetch it: {error}"));
            }
            let data = frame["data"].as_str().unwrap_or_default();
            // Decoded only when it can fit (base64 is 4 bytes for 3).
            if data.len() / 4 * 3 > MAX_FILE_BYTES + 3 {
                return Err(format!("the bridge sent more than {} MiB", MAX_FILE_BYTES >> 20));
            }
            use base64::Engine;
            return base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|e| format!("the bridge sent it garbled ({e})"));
        }
    }
}

impl PartSender for Bridge<'_> {
    async fn send_part(&mut self, part: Part) -> Result<(), (String, bool)> {
        let body = format::markdown_to_whatsapp(&part.text);
        self.ws
            .send(WsMessage::Text(
                json!({"type": "send", "to": part.chat_id, "text": body})
                    .to_string()
                    .into(),
            ))
            .await
            .map_err(|e| (e.to_string(), true))?;
        let deadline = tokio::time::Instant::now() + SEND_TIMEOUT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| ("no answer from the bridge".to_string(), true))?;
            let frame = match next {
                Some(Ok(WsMessage::Text(t))) => serde_json::from_str::<Value>(&t).unwrap_or(Value::Null),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err((e.to_string(), true)),
                None => return Err(("the bridge closed the connection".into(), true)),
            };
            match frame["type"].as_str() {
                Some("sent") => return Ok(()),
                Some("error") => return Err((frame["error"].as_str().unwrap_or("error").to_string(), false)),
                _ => self.backlog.push_back(frame),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_goes_only_to_a_bridge_on_this_machine() {
        for ok in ["ws://127.0.0.1:3001", "ws://[::1]:3001", "ws://localhost:3001/x"] {
            assert!(check_bridge_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ws://bridge.example:3001",
            "ws://10.0.0.5:3001",
            "wss://bridge.example",
            "http://127.0.0.1",
        ] {
            assert!(check_bridge_url(bad).is_err(), "{bad}");
        }
    }
}
