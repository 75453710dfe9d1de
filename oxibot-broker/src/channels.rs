//! The channel socket: each channel daemon registers for one channel, gets
//! that channel's settings and its own credential, and nothing else.
//!
//! Inbound messages are committed to SQLite before they are acknowledged,
//! so the daemon advances the platform cursor only for messages that can no
//! longer be lost. Replies go through the outbox and are retried until the
//! daemon confirms delivery.

use std::sync::Arc;

use oxibot_proto::messages::{BrokerToChannel, ChannelCounters, ChannelStatus, ChannelToBroker, MAX_RESUME_CHATS};
use oxibot_proto::{accept_handshake, FrameError, Role};
use serde_json::{Map, Value};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use crate::access::{Decision, Origin, Policy};
use crate::broker::Broker;
use crate::config::SECRET_KEYS;
use crate::store::Inbound;

pub async fn serve(broker: Arc<Broker>, stream: UnixStream) {
    let conn = match accept_handshake::<ChannelToBroker, BrokerToChannel>(stream, Role::Broker, Role::Channel).await {
        Ok(c) => c,
        Err(e) => {
            broker
                .store
                .audit("protocol_violation", &format!("channel.sock handshake: {e}"));
            return;
        }
    };
    let (mut reader, mut writer) = conn.split();

    // State 1: the only message allowed now is Register.
    let channel = match reader.recv().await {
        Ok(ChannelToBroker::Register { channel }) => channel,
        Ok(other) => {
            broker.store.audit(
                "protocol_violation",
                &format!("channel.sock: expected Register first, got {}", variant_name(&other)),
            );
            return;
        }
        Err(e) => {
            broker
                .store
                .audit("protocol_violation", &format!("channel.sock before Register: {e}"));
            return;
        }
    };
    let Some(settings) = broker
        .config
        .channels
        .get(&channel)
        .filter(|_| broker.config.enabled_channels().contains(&channel))
    else {
        broker.store.audit(
            "channel_refused",
            &format!("channel daemon asked for \"{channel}\", which is not enabled in config"),
        );
        return;
    };
    let policy = match Policy::from_settings(&channel, settings) {
        Ok(p) => p,
        Err(e) => {
            broker.store.audit("channel_refused", &e);
            broker.record_error(&e);
            return;
        }
    };
    let (settings_json, credential_json) = split_credential(settings);
    let resume_after = match broker.store.resume_points(&channel, MAX_RESUME_CHATS) {
        Ok(points) => points,
        Err(e) => {
            tracing::warn!(%channel, "cannot read resume points: {e}");
            Vec::new()
        }
    };
    let setup = BrokerToChannel::Setup {
        channel: channel.clone(),
        settings_json,
        credential_json,
        resume_after,
    };
    if let Err(e) = writer.send(&setup).await {
        tracing::warn!(%channel, "cannot send Setup: {e}");
        return;
    }

    // State 2: established. Outbound goes through one writer task.
    let (tx, mut rx) = mpsc::channel::<BrokerToChannel>(256);
    broker
        .links
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(channel.clone(), tx.clone());
    let writer_task = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if writer.send(&msg).await.is_err() {
                break;
            }
        }
    });
    resend_outbox(&broker, &channel, &tx).await;

    let mut pieces = crate::uploads::Pieces::default();
    loop {
        match reader.recv().await {
            Ok(msg) => {
                if let Err(e) = handle(&broker, &channel, &policy, &tx, &mut pieces, msg).await {
                    broker
                        .store
                        .audit("protocol_violation", &format!("channel {channel}: {e}"));
                    break;
                }
            }
            Err(FrameError::Closed) => break,
            Err(e) => {
                broker
                    .store
                    .audit("protocol_violation", &format!("channel {channel}: {e}"));
                break;
            }
        }
    }
    writer_task.abort();
    broker.links.lock().unwrap_or_else(|p| p.into_inner()).remove(&channel);
    if let Some(s) = broker
        .channels
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_mut(&channel)
    {
        if s.connected {
            s.counters.disconnects += 1;
            s.connected = false;
        }
    }
    tracing::warn!(%channel, "channel daemon disconnected");
}

fn variant_name(m: &ChannelToBroker) -> &'static str {
    match m {
        ChannelToBroker::Register { .. } => "Register",
        ChannelToBroker::Inbound { .. } => "Inbound",
        ChannelToBroker::Delivered { .. } => "Delivered",
        ChannelToBroker::SendFailed { .. } => "SendFailed",
        ChannelToBroker::Status { .. } => "Status",
        ChannelToBroker::FilePart { .. } => "FilePart",
        ChannelToBroker::MayFetch { .. } => "MayFetch",
    }
}

async fn handle(
    broker: &Arc<Broker>,
    channel: &str,
    policy: &Policy,
    tx: &mpsc::Sender<BrokerToChannel>,
    pieces: &mut crate::uploads::Pieces,
    msg: ChannelToBroker,
) -> Result<(), String> {
    match msg {
        ChannelToBroker::FilePart {
            platform_id,
            index,
            data,
        } => pieces.add(platform_id, index, data)?,
        ChannelToBroker::MayFetch {
            platform_id,
            chat_id,
            sender,
            is_group,
            mentioned,
        } => {
            let origin = Origin {
                sender: &sender,
                chat_id: &chat_id,
                is_group,
                mentioned,
            };
            let allowed = decide(broker, channel, policy, &origin)? == Decision::Admit;
            let _ = tx.send(BrokerToChannel::FetchAnswer { platform_id, allowed }).await;
        }
        ChannelToBroker::Register { .. } => return Err("Register sent twice".into()),
        ChannelToBroker::Inbound {
            platform_id,
            chat_id,
            sender,
            text,
            is_group,
            mentioned,
            mut attachments,
        } => {
            pieces.complete(&platform_id, &mut attachments)?;
            let origin = Origin {
                sender: &sender,
                chat_id: &chat_id,
                is_group,
                mentioned,
            };
            match decide(broker, channel, policy, &origin)? {
                Decision::Admit => {
                    let committed = broker
                        .store
                        .commit_inbound(channel, &platform_id, &chat_id, &sender, &text, attachments)
                        .map_err(|e| e.to_string())?;
                    // Ack after commit, for new and duplicate messages alike:
                    // either way the message is safe and the cursor may move.
                    let _ = tx.send(BrokerToChannel::Ack { platform_id }).await;
                    if committed.is_some() {
                        count(broker, channel, |c| c.received += 1);
                    }
                    if let Some(inbound) = committed {
                        tokio::spawn(answer(broker.clone(), inbound));
                    }
                }
                Decision::Ignore => {
                    let _ = tx.send(BrokerToChannel::Ack { platform_id }).await;
                }
                Decision::Reject(reason) => {
                    count(broker, channel, |c| c.refused += 1);
                    broker
                        .store
                        .audit("access_denied", &format!("channel {channel}: {reason}"));
                    let _ = tx.send(BrokerToChannel::Ack { platform_id }).await;
                }
                Decision::Pair => {
                    let (code, fresh) = broker
                        .store
                        .pairing_code(channel, &sender, &chat_id, &new_pairing_code())
                        .map_err(|e| e.to_string())?;
                    if fresh {
                        broker.store.audit(
                            "pairing_requested",
                            &format!("channel {channel}: user {sender} asked to pair (code {code})"),
                        );
                    }
                    let text = format!(
                        "I don't know you yet. Your pairing code is {code}. \
                         Ask my owner to run: oxibotctl pairing approve {code}"
                    );
                    let id = broker
                        .store
                        .queue_outbox(channel, &chat_id, &text)
                        .map_err(|e| e.to_string())?;
                    let _ = tx.send(BrokerToChannel::Ack { platform_id }).await;
                    let _ = tx
                        .send(BrokerToChannel::Send {
                            outbox_id: id as u64,
                            chat_id,
                            text,
                            reply_to: None,
                        })
                        .await;
                }
            }
        }
        ChannelToBroker::Delivered { outbox_id } => {
            count(broker, channel, |c| c.sent += 1);
            broker
                .store
                .outbox_delivered(outbox_id as i64)
                .map_err(|e| e.to_string())?;
        }
        ChannelToBroker::SendFailed {
            outbox_id,
            error,
            retryable,
        } => {
            tracing::warn!(channel, outbox_id, retryable, %error, "delivery failed");
            count(broker, channel, |c| c.send_failures += 1);
            let attempts = broker
                .store
                .outbox_failed(outbox_id as i64, &error, retryable)
                .map_err(|e| e.to_string())?;
            if retryable {
                // Retried until the platform takes it, with backoff.
                let delay = std::time::Duration::from_secs(1u64 << attempts.min(6));
                let (broker, channel) = (broker.clone(), channel.to_string());
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    resend_one(&broker, &channel, outbox_id as i64).await;
                });
            }
        }
        ChannelToBroker::Status { connected, last_error } => update_status(broker, channel, |status| {
            if status.connected && !connected {
                status.counters.disconnects += 1;
            }
            status.connected = connected;
            status.last_error = last_error;
        }),
    }
    Ok(())
}

/// The access decision for a message, with the sender's pairing looked up.
fn decide(broker: &Broker, channel: &str, policy: &Policy, origin: &Origin<'_>) -> Result<Decision, String> {
    let paired = broker
        .store
        .is_paired(channel, origin.sender)
        .map_err(|e| e.to_string())?;
    Ok(policy.decide(origin, paired))
}

/// Updates a channel's status row (made on first use).
fn update_status(broker: &Broker, channel: &str, update: impl FnOnce(&mut ChannelStatus)) {
    let mut channels = broker.channels.lock().unwrap_or_else(|p| p.into_inner());
    let status = channels.entry(channel.to_string()).or_insert_with(|| ChannelStatus {
        name: channel.to_string(),
        connected: false,
        last_error: None,
        counters: ChannelCounters::default(),
    });
    update(status);
}

fn count(broker: &Broker, channel: &str, update: impl FnOnce(&mut ChannelCounters)) {
    update_status(broker, channel, |status| update(&mut status.counters));
}

/// Runs the agent (or a chat command) for one committed inbound message
/// and queues the reply.
async fn answer(broker: Arc<Broker>, inbound: Inbound) {
    let session = format!("{}:{}", inbound.channel, inbound.chat_id);
    let command = match inbound.files.is_empty() {
        true => crate::commands::parse(&inbound.text),
        false => None,
    };
    let reply = match command {
        Some(cmd) => crate::commands::run(&broker, &session, cmd),
        None => {
            deliver(
                &broker,
                &inbound.channel,
                BrokerToChannel::Typing {
                    chat_id: inbound.chat_id.clone(),
                },
            )
            .await;
            let stop = broker.turn_stopper(&session);
            let turn = async {
                let files = crate::uploads::prepare(&broker, &inbound.files).await;
                let text = std::iter::once(inbound.text.as_str())
                    .filter(|t| !t.is_empty())
                    .chain(files.notes.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join("\n");
                broker.agent.run_turn(&session, &text, files.images).await
            };
            tokio::select! {
                result = turn => match result {
                    Ok(text) => text,
                    Err(e) => {
                        let message = e.to_string();
                        broker.record_error(&message);
                        format!("Sorry, I could not answer: {message}")
                    }
                },
                _ = stop.notified() => "Stopped.".to_string(),
            }
        }
    };
    match broker.store.finish_inbound(&inbound, &reply) {
        Ok(id) => {
            deliver(
                &broker,
                &inbound.channel,
                BrokerToChannel::Send {
                    outbox_id: id as u64,
                    chat_id: inbound.chat_id,
                    text: reply,
                    reply_to: Some(inbound.platform_id),
                },
            )
            .await
        }
        Err(e) => tracing::error!("cannot queue the reply: {e}"),
    }
}

/// Hands an outbox message to the channel's daemon if it is connected; if
/// not, it waits in the outbox for the next connection.
pub async fn deliver(broker: &Broker, channel: &str, msg: BrokerToChannel) {
    let link = broker
        .links
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(channel)
        .cloned();
    if let Some(link) = link {
        let _ = link.send(msg).await;
    }
}

/// Six characters without look-alikes (no 0/O, 1/I).
fn new_pairing_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 6];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut bytes);
    }
    bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

async fn resend_outbox(broker: &Broker, channel: &str, tx: &mpsc::Sender<BrokerToChannel>) {
    match broker.store.pending_outbox(channel) {
        Ok(items) => {
            for o in items {
                let msg = BrokerToChannel::Send {
                    outbox_id: o.id as u64,
                    chat_id: o.chat_id,
                    text: o.text,
                    reply_to: o.reply_to,
                };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        }
        Err(e) => tracing::error!("cannot read the outbox: {e}"),
    }
}

async fn resend_one(broker: &Broker, channel: &str, id: i64) {
    if let Ok(items) = broker.store.pending_outbox(channel) {
        if let Some(o) = items.into_iter().find(|o| o.id == id) {
            let msg = BrokerToChannel::Send {
                outbox_id: o.id as u64,
                chat_id: o.chat_id,
                text: o.text,
                reply_to: o.reply_to,
            };
            deliver(broker, channel, msg).await;
        }
    }
}

/// At start-up, answers inbound messages that were committed (and acked)
/// before a crash but never answered.
pub async fn resume_pending(broker: Arc<Broker>) {
    match broker.store.pending_inbound() {
        Ok(items) => {
            for inbound in items {
                tokio::spawn(answer(broker.clone(), inbound));
            }
        }
        Err(e) => tracing::error!("cannot read the inbound queue: {e}"),
    }
}

/// Splits a channel's merged settings into (settings without credentials,
/// the credentials alone), both as JSON text.
pub fn split_credential(settings: &Value) -> (String, String) {
    let mut public = Map::new();
    let mut secret = Map::new();
    if let Value::Object(map) = settings {
        for (k, v) in map {
            if SECRET_KEYS.contains(&k.as_str()) {
                secret.insert(k.clone(), v.clone());
            } else {
                public.insert(k.clone(), v.clone());
            }
        }
    }
    (Value::Object(public).to_string(), Value::Object(secret).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_split_from_settings() {
        let v = serde_json::json!({"enabled": true, "token": "123:abc", "allowedUsers": ["1"]});
        let (public, secret) = split_credential(&v);
        assert!(!public.contains("123:abc"));
        assert!(public.contains("allowedUsers"));
        assert_eq!(secret, r#"{"token":"123:abc"}"#);
    }
}
