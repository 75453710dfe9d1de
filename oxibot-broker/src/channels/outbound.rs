//! The far end of the reply pipeline: outbox messages handed to a channel's
//! daemon as `Send`, and what the daemon reports about them
//! (`PartDelivered`, `Delivered`, `SendFailed`), with the retries a failure
//! calls for.
//!
//! Separate from the link in `mod.rs` because it is about outbox rows, not
//! about a connection: it reaches the daemon only through whatever link is
//! up at the time, and a message it cannot hand over waits in the outbox
//! for the next one.

use std::sync::Arc;

use oxibot_proto::messages::BrokerToChannel;
use tokio::sync::mpsc;

use super::Fault;
use crate::services::Services;

/// A `Send` of a pending outbox message, resuming after the parts the
/// platform already took.
fn resend(o: crate::store::Outgoing) -> BrokerToChannel {
    BrokerToChannel::Send {
        outbox_id: o.id as u64,
        chat_id: o.chat_id,
        text: o.text,
        reply_to: o.reply_to,
        first_part: o.parts_sent,
        buttons: o.buttons,
        edit: o.edit,
        draft: None,
    }
}

pub(super) async fn resend_outbox(svc: &Services, channel: &str, tx: &mpsc::Sender<BrokerToChannel>) {
    match svc.store.pending_outbox(channel) {
        Ok(items) => {
            for o in items {
                if tx.send(resend(o)).await.is_err() {
                    return;
                }
            }
        }
        Err(e) => tracing::error!("cannot read the outbox: {e}"),
    }
}

async fn resend_one(svc: &Services, channel: &str, id: i64) {
    if let Ok(items) = svc.store.pending_outbox(channel) {
        if let Some(o) = items.into_iter().find(|o| o.id == id) {
            svc.hub.deliver(channel, resend(o)).await;
        }
    }
}

/// The daemon's `Delivered`: the platform took the whole message.
pub(super) fn delivered(svc: &Services, channel: &str, outbox_id: u64) -> Result<(), Fault> {
    if !svc.store.outbox_delivered(channel, outbox_id as i64)? {
        return Err(not_yours(outbox_id, "confirmed"));
    }
    svc.hub.count(channel, |c| c.sent += 1);
    Ok(())
}

/// The daemon's `PartDelivered`: a resend starts after these parts.
pub(super) fn part_delivered(svc: &Services, channel: &str, outbox_id: u64, parts: u32) -> Result<(), Fault> {
    if !svc.store.outbox_progress(channel, outbox_id as i64, parts)? {
        return Err(not_yours(outbox_id, "reported progress on"));
    }
    Ok(())
}

/// The daemon's `SendFailed`: recorded, and retried later if the platform
/// may take it then.
pub(super) fn send_failed(
    svc: &Arc<Services>,
    channel: &str,
    outbox_id: u64,
    error: String,
    retryable: bool,
) -> Result<(), Fault> {
    // A platform error may quote the daemon's own credential (a
    // Telegram API URL holds the bot token).
    let error = svc.audit.scrub(&error, &format!("a {channel} send error"));
    let Some(attempts) = svc.store.outbox_failed(channel, outbox_id as i64, &error, retryable)? else {
        return Err(not_yours(outbox_id, "reported a failure of"));
    };
    tracing::warn!(channel, outbox_id, retryable, %error, "delivery failed");
    svc.hub.count(channel, |c| c.send_failures += 1);
    if retryable {
        // Retried until the platform takes it, with backoff.
        let delay = std::time::Duration::from_secs(1u64 << attempts.min(6));
        let (svc, channel) = (svc.clone(), channel.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            resend_one(&svc, &channel, outbox_id as i64).await;
        });
    }
    Ok(())
}

/// A daemon named an outbox message that is not its channel's.
fn not_yours(outbox_id: u64, what: &str) -> Fault {
    Fault::Peer(format!(
        "{what} outbox message {outbox_id}, which is not this channel's"
    ))
}
