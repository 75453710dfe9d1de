//! A platform message as an adapter reads it, before its files are
//! fetched: one shape for every platform. Each adapter has a pure `read`
//! from the platform's decoded payload to an [`Incoming`] (no network, so
//! the fuzz targets run them), and the two questions to the broker — may I
//! fetch this message's files, and here is the message — are built here
//! once.

use oxibot_proto::messages::{Attachment, ChannelToBroker};

#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// Unique per message on this platform: the broker's de-duplication key.
    pub platform_id: String,
    pub chat_id: String,
    pub sender: String,
    pub text: String,
    pub is_group: bool,
    /// Addressed to the bot (a mention, or a reply to it).
    pub mentioned: bool,
}

impl Incoming {
    /// Whether the broker would admit the sender, asked before any file is
    /// downloaded (a stranger's files are never fetched).
    pub fn may_fetch(&self) -> ChannelToBroker {
        ChannelToBroker::MayFetch {
            platform_id: self.platform_id.clone(),
            chat_id: self.chat_id.clone(),
            sender: self.sender.clone(),
            is_group: self.is_group,
            mentioned: self.mentioned,
        }
    }

    /// The message for the broker, with its files and the notes about files
    /// that could not come through.
    pub fn into_inbound(self, attachments: Vec<Attachment>, notes: &[String]) -> ChannelToBroker {
        ChannelToBroker::Inbound {
            platform_id: self.platform_id,
            chat_id: self.chat_id,
            sender: self.sender,
            text: crate::attach::with_notes(&self.text, notes),
            is_group: self.is_group,
            mentioned: self.mentioned,
            attachments,
        }
    }
}
