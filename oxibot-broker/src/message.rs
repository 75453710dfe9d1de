//! Messages the assistant sends on its own: the `message` tool's, and the
//! results of scheduled jobs, the heartbeat and background tasks. All go
//! through the outbox, so they survive a crash and are retried until the
//! platform takes them.

use crate::services::Services;
use crate::store::StoreError;
use crate::turn::ChatRef;

/// Queues `text` with buttons under it (an approval request's) for `chat`,
/// and hands it to the channel's daemon if it is connected.
pub async fn queue_with_buttons(
    svc: &Services,
    chat: &ChatRef,
    text: &str,
    buttons: Vec<oxibot_proto::messages::Button>,
) -> Result<i64, StoreError> {
    let id = svc
        .store
        .queue_outbox_with(&chat.channel, &chat.chat_id, text, &buttons)?;
    let msg = oxibot_proto::messages::BrokerToChannel::Send {
        outbox_id: id as u64,
        chat_id: chat.chat_id.clone(),
        text: text.to_string(),
        reply_to: None,
        first_part: 0,
        buttons,
        edit: None,
        draft: None,
    };
    svc.hub.deliver(&chat.channel, msg).await;
    Ok(id)
}

/// Queues `text` for `chat` and hands it to the channel's daemon if it is
/// connected. With an `origin`, one message per origin ever (a job's run, a
/// heartbeat tick): calling again queues nothing.
pub async fn queue_and_deliver(
    svc: &Services,
    chat: &ChatRef,
    text: &str,
    origin: Option<&str>,
) -> Result<i64, StoreError> {
    let (id, fresh) = match origin {
        Some(origin) => svc
            .store
            .queue_outbox_once(&chat.channel, &chat.chat_id, text, origin)?,
        None => (svc.store.queue_outbox(&chat.channel, &chat.chat_id, text)?, true),
    };
    if fresh {
        let msg = crate::hub::fresh_send(id, chat.chat_id.clone(), text.to_string(), None);
        svc.hub.deliver(&chat.channel, msg).await;
    }
    Ok(id)
}
