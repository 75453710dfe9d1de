//! The channel socket: each channel daemon registers for one channel, gets
//! that channel's settings and its own credential, and nothing else.
//!
//! Inbound messages are committed to SQLite before they are acknowledged,
//! so the daemon advances the platform cursor only for messages that can no
//! longer be lost. Replies go through the outbox and are retried until the
//! daemon confirms delivery.
//!
//! This file is the link itself: the handshake, `Register` and `Setup`, the
//! one-link-per-channel claim, the read loop that dispatches each message
//! from the daemon, status, and the disconnect. What a message sets off
//! lives in submodules, so that the protocol reads in one place and each
//! consequence on its own: `inbound` decides who is admitted, `reply` runs
//! the turn that answers a message, `outbound` hands outbox messages to the
//! daemon and follows their delivery.

pub mod drafts;
mod inbound;
mod outbound;
mod reply;

use std::sync::Arc;

use oxibot_proto::messages::{BrokerToChannel, ChannelToBroker, MAX_RESUME_CHATS};
use oxibot_proto::{accept_handshake, FrameError, Role};
use serde_json::{Map, Value};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use crate::access::{Decision, Origin, Policy};
use crate::config::credential_at;
use crate::services::Services;

pub use inbound::new_code;
pub use reply::resume_pending;

/// Who a connection is, as the broker decided it before reading a byte:
/// the channel whose child it handed this socketpair to (supervise mode),
/// or the channel whose user the peer's uid is (systemd). The daemon's own
/// `Register` must agree; it never decides.
pub struct Identity {
    pub channel: String,
    /// For the audit log: "supervised child pid 123", "uid 995 pid 456".
    pub peer: String,
}

pub async fn serve(svc: Arc<Services>, stream: UnixStream, identity: Identity) {
    let Identity { channel, peer } = identity;
    let conn = match accept_handshake::<ChannelToBroker, BrokerToChannel>(stream, Role::Broker, Role::Channel).await {
        Ok(c) => c,
        Err(e) => {
            svc.audit.about(
                "protocol_violation",
                Some(&*channel),
                None,
                &format!("channel {channel} ({peer}) handshake: {e}"),
            );
            return;
        }
    };
    let (mut reader, mut writer) = conn.split();

    // State 1: the only message allowed now is Register, naming the
    // channel this connection already is.
    match reader.recv().await {
        Ok(ChannelToBroker::Register { channel: claimed }) if claimed == channel => {}
        Ok(ChannelToBroker::Register { channel: claimed }) => {
            svc.audit.about(
                "channel_refused",
                Some(&*channel),
                None,
                &format!("the {channel} daemon ({peer}) asked for channel \"{claimed}\"; refused"),
            );
            return;
        }
        Ok(other) => {
            svc.audit.about(
                "protocol_violation",
                Some(&*channel),
                None,
                &format!(
                    "channel {channel} ({peer}): expected Register first, got {}",
                    variant_name(&other)
                ),
            );
            return;
        }
        Err(e) => {
            svc.audit.about(
                "protocol_violation",
                Some(&*channel),
                None,
                &format!("channel {channel} ({peer}) before Register: {e}"),
            );
            return;
        }
    }
    let config = svc.config();
    let Some(settings) = config
        .channels
        .get(&channel)
        .filter(|_| config.enabled_channels().contains(&channel))
    else {
        svc.audit.about(
            "channel_refused",
            Some(&*channel),
            None,
            &format!("channel daemon ({peer}) asked for \"{channel}\", which is not enabled in config"),
        );
        return;
    };
    let policy = match Policy::from_settings(&channel, settings) {
        Ok(p) => p,
        Err(e) => {
            let e = e.to_string();
            svc.audit.about("channel_refused", Some(&*channel), None, &e);
            svc.audit.record_error(&e);
            return;
        }
    };

    // State 2: one live link per channel. Claimed before the credential
    // goes out, so a second daemon for a live channel learns nothing.
    let (tx, mut rx) = mpsc::channel::<BrokerToChannel>(256);
    let generation = match svc.hub.claim(&channel, tx.clone(), &svc.audit).await {
        Ok(g) => g,
        Err(why) => {
            svc.audit.about(
                "link_refused",
                Some(&*channel),
                None,
                &format!("channel {channel}: second registration from {peer} refused: {why}"),
            );
            return;
        }
    };
    let (settings_json, credential_json) = split_credential(&channel, settings);
    let resume_after = match svc.store.resume_points(&channel, MAX_RESUME_CHATS) {
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
        svc.hub.release(&channel, generation);
        return;
    }
    svc.audit.about(
        "credential_handout",
        Some(&*channel),
        None,
        &format!("channel {channel}: settings and credential handed to {peer} (link {generation})"),
    );
    crate::metrics::link_established(&format!("channel:{channel}"));

    // State 3: established. Outbound goes through one writer task.
    let writer_task = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            // A message over the protocol's bounds is not sent (the
            // daemon would have to refuse it); the link lives on.
            let checked = match oxibot_proto::Checked::new(&msg) {
                Ok(checked) => checked,
                Err(e) => {
                    tracing::error!("a message for the channel daemon was not sent: {e}");
                    continue;
                }
            };
            if writer.send_checked(&checked).await.is_err() {
                break;
            }
        }
    });
    outbound::resend_outbox(&svc, &channel, &tx).await;

    let mut pieces = crate::uploads::Pieces::default();
    // What the daemon may not send cuts the link, and is audited.
    let violation = |e: &str| {
        svc.audit.about(
            "protocol_violation",
            Some(&*channel),
            None,
            &format!("channel {channel} ({peer}): {e}"),
        )
    };
    loop {
        match reader.recv().await {
            Ok(msg) => match handle(&svc, &channel, &policy, &tx, &mut pieces, msg).await {
                Ok(()) => {}
                Err(Fault::Peer(e)) => {
                    violation(&e);
                    break;
                }
                Err(Fault::Local(e)) => {
                    // Our own failure (the state database): the daemon did
                    // nothing wrong, but the message could not be handled;
                    // dropping the link makes the daemon resend it.
                    tracing::error!(%channel, "cannot handle a message from the daemon: {e}");
                    svc.audit.record_error(&e);
                    break;
                }
            },
            Err(FrameError::Closed) => break,
            Err(e) => {
                violation(&e.to_string());
                break;
            }
        }
    }
    writer_task.abort();
    svc.hub.release(&channel, generation);
    tracing::warn!(%channel, "channel daemon disconnected");
}

/// Why a message could not be handled.
enum Fault {
    /// The daemon sent something it may not: the link is cut and audited.
    Peer(String),
    /// Our own failure (the state database).
    Local(String),
}

impl From<crate::uploads::PieceError> for Fault {
    fn from(e: crate::uploads::PieceError) -> Self {
        Fault::Peer(e.to_string())
    }
}

impl From<crate::store::StoreError> for Fault {
    fn from(e: crate::store::StoreError) -> Self {
        Fault::Local(e.to_string())
    }
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
        ChannelToBroker::PartDelivered { .. } => "PartDelivered",
        ChannelToBroker::DraftShown { .. } => "DraftShown",
    }
}

async fn handle(
    svc: &Arc<Services>,
    channel: &str,
    policy: &Policy,
    tx: &mpsc::Sender<BrokerToChannel>,
    pieces: &mut crate::uploads::Pieces,
    msg: ChannelToBroker,
) -> Result<(), Fault> {
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
            let allowed = inbound::decide(svc, channel, policy, &origin)? == Decision::Admit;
            let _ = tx.send(BrokerToChannel::FetchAnswer { platform_id, allowed }).await;
        }
        ChannelToBroker::Register { .. } => return Err(Fault::Peer("Register sent twice".into())),
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
            // One spelling of the sender for everything below: the
            // decision, the session, pairing and the audit.
            let sender = crate::access::user_id(channel, &sender);
            let origin = Origin {
                sender: &sender,
                chat_id: &chat_id,
                is_group,
                mentioned,
            };
            match inbound::decide(svc, channel, policy, &origin)? {
                Decision::Admit => {
                    let committed =
                        svc.store
                            .commit_inbound(channel, &platform_id, &chat_id, &sender, &text, attachments)?;
                    // Ack after commit, for new and duplicate messages alike:
                    // either way the message is safe and the cursor may move.
                    let _ = tx.send(BrokerToChannel::Ack { platform_id }).await;
                    if let Some(inbound) = committed {
                        svc.hub.count(channel, |c| c.received += 1);
                        tokio::spawn(reply::answer(svc.clone(), inbound));
                    }
                }
                Decision::Ignore => {
                    let _ = tx.send(BrokerToChannel::Ack { platform_id }).await;
                }
                Decision::Reject(reason) => {
                    svc.hub.count(channel, |c| c.refused += 1);
                    svc.audit.about(
                        "access_denied",
                        Some(channel),
                        Some(&sender),
                        &format!("channel {channel}: {reason}"),
                    );
                    let _ = tx.send(BrokerToChannel::Ack { platform_id }).await;
                }
                Decision::Pair => {
                    let notice = inbound::pairing_notice(svc, channel, &sender, chat_id)?;
                    let _ = tx.send(BrokerToChannel::Ack { platform_id }).await;
                    let _ = tx.send(notice).await;
                }
            }
        }
        ChannelToBroker::Delivered { outbox_id } => outbound::delivered(svc, channel, outbox_id)?,
        ChannelToBroker::PartDelivered { outbox_id, parts } => {
            outbound::part_delivered(svc, channel, outbox_id, parts)?
        }
        ChannelToBroker::SendFailed {
            outbox_id,
            error,
            retryable,
        } => outbound::send_failed(svc, channel, outbox_id, error, retryable)?,
        ChannelToBroker::DraftShown { draft_id, message_id } => {
            // A draft of a turn that ended meanwhile is simply forgotten.
            if !svc.hub.drafts.shown(channel, draft_id, message_id) {
                tracing::debug!(draft_id, "a draft no longer shown was posted");
            }
        }
        ChannelToBroker::Status { connected, last_error } => {
            // Kept short: it travels in every status answer, which must
            // stay well inside a frame however many channels report.
            let last_error = last_error.map(|e| {
                let clean = svc.audit.scrub(&e, &format!("the {channel} daemon's status"));
                crate::providers::shorten(&clean, 1024)
            });
            svc.hub.update_status(channel, |status| {
                if status.connected && !connected {
                    status.counters.disconnects += 1;
                }
                status.connected = connected;
                status.last_error = last_error;
            })
        }
    }
    Ok(())
}

/// Splits a channel's merged settings into (settings without credentials,
/// the credentials alone), both as JSON text: the credential is what its
/// platform's credential type names (see `config::credential_at`).
pub fn split_credential(channel: &str, settings: &Value) -> (String, String) {
    let mut public = Map::new();
    let mut secret = Map::new();
    if let Value::Object(map) = settings {
        for (k, v) in map {
            if credential_at(&["channels", channel, k]).is_some() {
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
        let (public, secret) = split_credential("telegram", &v);
        assert!(!public.contains("123:abc"));
        assert!(public.contains("allowedUsers"));
        assert_eq!(secret, r#"{"token":"123:abc"}"#);
        // Each platform's own credential keys: Slack's two tokens go, a
        // "token" key that is not Slack's stays public (and unused).
        let v = serde_json::json!({"botToken": "xoxb-1", "appToken": "xapp-2", "token": "t"});
        let (public, secret) = split_credential("slack", &v);
        assert_eq!(secret, r#"{"appToken":"xapp-2","botToken":"xoxb-1"}"#);
        assert_eq!(public, r#"{"token":"t"}"#);
    }
}
