//! The console's chats (`console:NAME`): what is sent to them later (a
//! background task's result, a scheduled job's, an approval request)
//! waits in the outbox like any chat's message, and goes to the chat
//! client attached to that chat, if one is. The client acknowledges what
//! it showed; what it did not waits for the next one.

use std::collections::HashMap;
use std::sync::Mutex;

use oxibot_proto::messages::{BrokerToChannel, ChatEvent, CtlReply};
use tokio::sync::mpsc;

/// Where an attached client's messages go: its connection's writer.
pub type ClientTx = mpsc::Sender<CtlReply>;

#[derive(Default)]
pub struct Consoles {
    /// The attached client of each console chat (by chat name); a newer
    /// client of the same chat takes over.
    clients: Mutex<HashMap<String, ClientTx>>,
}

impl Consoles {
    pub fn attach(&self, chat_id: &str, tx: ClientTx) {
        self.lock().insert(chat_id.to_string(), tx);
    }

    /// Detaches `tx` if it is still the chat's client.
    pub fn detach(&self, chat_id: &str, tx: &ClientTx) {
        let mut clients = self.lock();
        if clients.get(chat_id).is_some_and(|c| c.same_channel(tx)) {
            clients.remove(chat_id);
        }
    }

    /// Shows an outbox message to the chat's client, if one is attached;
    /// otherwise (or if it went away) it waits in the outbox.
    pub fn deliver(&self, msg: BrokerToChannel) {
        let BrokerToChannel::Send {
            outbox_id,
            chat_id,
            text,
            buttons,
            ..
        } = msg
        else {
            // Typing, edits, shutdown: nothing a terminal needs.
            return;
        };
        let mut clients = self.lock();
        let Some(client) = clients.get(&chat_id) else {
            return;
        };
        let event = CtlReply::Chat(ChatEvent::Delivered {
            outbox_id,
            text,
            buttons,
        });
        match client.try_send(event) {
            Ok(()) => {}
            // A client that reads nothing now sees it at its next attach:
            // it stays in the outbox until acknowledged.
            Err(mpsc::error::TrySendError::Full(_)) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => {
                clients.remove(&chat_id);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ClientTx>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }
}
