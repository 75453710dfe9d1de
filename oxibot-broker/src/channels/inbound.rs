//! Who may talk to the bot: the access decision for an inbound message (or
//! a `MayFetch` ahead of one), and the pairing code a stranger is answered
//! with.
//!
//! Separate from the link in `mod.rs` because it is the security decision,
//! kept apart from the protocol handling around it: the link commits and
//! acks, this decides who is admitted. It sends nothing itself; the link
//! sends the `Ack` and the pairing notice, in that order.

use oxibot_proto::messages::BrokerToChannel;

use super::Fault;
use crate::access::{Decision, Origin, Policy};
use crate::hub::fresh_send;
use crate::services::Services;

/// The access decision for a message, with the sender's pairing looked up.
/// An unverified sender is refused outright; then the admin's own decision
/// about this user (`oxibotctl users allow|deny`) comes first; then an
/// approved pairing; then the channel's policy. Ids are compared in one
/// form ([`crate::access::user_id`]).
pub(super) fn decide(svc: &Services, channel: &str, policy: &Policy, origin: &Origin<'_>) -> Result<Decision, Fault> {
    if crate::access::is_unverified(origin.sender) {
        return Ok(Decision::Reject(format!(
            "sender {} is not verified by the mail server (see channels.{channel}.authservId)",
            origin.sender
        )));
    }
    let sender = crate::access::user_id(channel, origin.sender);
    let admitted = match svc.store.user_decision(channel, &sender)? {
        Some(false) => {
            return Ok(Decision::Reject(format!(
                "user {sender} was refused with oxibotctl users deny"
            )))
        }
        Some(true) => true,
        None => svc.store.is_paired(channel, &sender)?,
    };
    let origin = Origin {
        sender: &sender,
        ..*origin
    };
    Ok(policy.decide(&origin, admitted))
}

/// Answers a sender the policy wants paired: their pending code (a new
/// one, audited, on first contact) is queued in the outbox. Returns the
/// `Send` of it, which the link sends after the message's `Ack`.
pub(super) fn pairing_notice(
    svc: &Services,
    channel: &str,
    sender: &str,
    chat_id: String,
) -> Result<BrokerToChannel, Fault> {
    let (code, fresh) = svc.store.pairing_code(channel, sender, &chat_id, &new_code())?;
    if fresh {
        svc.audit.about(
            "pairing_requested",
            Some(channel),
            Some(sender),
            &format!("channel {channel}: user {sender} asked to pair (code {code})"),
        );
    }
    let text = format!(
        "I don't know you yet. Your pairing code is {code}. \
         Ask my owner to run: oxibotctl pairing approve {code}"
    );
    let id = svc.store.queue_outbox(channel, &chat_id, &text)?;
    Ok(fresh_send(id, chat_id, text, None))
}

/// Six characters without look-alikes (no 0/O, 1/I): pairing and approval
/// codes.
pub fn new_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 6];
    if let Err(e) = oxibot_runtime::random::fill(&mut bytes) {
        // Not all zeros (one code for everybody): the clock, at worst.
        tracing::error!("no random bytes from the kernel ({e}); the pairing code is weaker");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes.copy_from_slice(&nanos.to_le_bytes()[..6]);
    }
    bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}
