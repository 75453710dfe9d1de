//! A channel daemon's connection: what the broker hands it, what it reports.

use serde::{Deserialize, Serialize};

use super::*;

/// Broker → channel daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BrokerToChannel {
    /// The first message after Hello: this channel's settings (JSON, no
    /// secrets) and its one credential (JSON object of that channel's secrets).
    Setup {
        #[serde(with = "limit::id")]
        channel: String,
        #[serde(with = "limit::text")]
        settings_json: String,
        #[serde(with = "limit::text")]
        credential_json: String,
        /// (chat id, platform id) of the newest committed message of each
        /// recent chat, for platforms without a server-side cursor (Discord)
        /// to fetch what arrived while the daemon was down.
        #[serde(with = "limit::resume_chats")]
        resume_after: Vec<(String, String)>,
    },
    /// The inbound message with this platform id is committed; the daemon may
    /// now advance the platform cursor.
    Ack {
        #[serde(with = "limit::id")]
        platform_id: String,
    },
    /// Deliver this text; answer with `PartDelivered` after each part the
    /// platform took, then `Delivered` or `SendFailed`.
    Send {
        outbox_id: u64,
        #[serde(with = "limit::id")]
        chat_id: String,
        #[serde(with = "limit::text")]
        text: String,
        #[serde(with = "limit::id")]
        reply_to: Option<String>,
        /// How many parts of the split text the platform already took on an
        /// earlier attempt: those are not sent again.
        first_part: u32,
        /// Buttons under the message's last part, where the platform has
        /// them (Telegram, Discord, Slack); elsewhere the text says the same.
        #[serde(with = "limit::buttons")]
        buttons: Vec<Button>,
        /// The platform id of a message this one replaces (the draft a
        /// streamed answer was shown in): the first part is edited into it,
        /// not posted. Editing again to the same text is harmless, so a
        /// retry after a crash never shows the answer twice.
        #[serde(with = "limit::id")]
        edit: Option<String>,
        /// The draft this reply replaces when the broker does not know
        /// its message yet (its post was in flight): a daemon that posted
        /// it edits that message.
        draft: Option<u64>,
    },
    /// Show `text` as the current state of draft `draft_id` (a streamed
    /// answer, or the list of tools running): edit `message_id` when it is
    /// given, post a new message otherwise and answer `DraftShown`. Best
    /// effort: a draft the platform refuses is dropped, nothing is retried.
    Draft {
        #[serde(with = "limit::id")]
        chat_id: String,
        draft_id: u64,
        #[serde(with = "limit::id")]
        message_id: Option<String>,
        /// The message the turn answers: a draft is posted where its
        /// answer will be (as a reply, in the thread).
        #[serde(with = "limit::id")]
        reply_to: Option<String>,
        #[serde(with = "limit::text")]
        text: String,
    },
    /// Close down cleanly.
    Shutdown,
    /// The assistant started working on a message in this chat: show a
    /// typing indicator until the next `Send` to the chat.
    Typing {
        #[serde(with = "limit::id")]
        chat_id: String,
    },
    /// The answer to `MayFetch`: whether the sender would be admitted.
    FetchAnswer {
        #[serde(with = "limit::id")]
        platform_id: String,
        allowed: bool,
    },
}

/// Channel daemon → broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ChannelToBroker {
    /// The first message after Hello: which channel this daemon serves. The
    /// broker answers with `Setup` or closes the connection.
    Register {
        #[serde(with = "limit::id")]
        channel: String,
    },
    Inbound {
        #[serde(with = "limit::id")]
        platform_id: String,
        #[serde(with = "limit::id")]
        chat_id: String,
        #[serde(with = "limit::id")]
        sender: String,
        #[serde(with = "limit::text")]
        text: String,
        /// A group or channel chat rather than a direct message.
        is_group: bool,
        /// The message mentions or replies to the bot.
        mentioned: bool,
        /// Photos, voice notes and files that came with it.
        #[serde(with = "limit::attachments")]
        attachments: Vec<Attachment>,
    },
    Delivered {
        outbox_id: u64,
    },
    SendFailed {
        outbox_id: u64,
        #[serde(with = "limit::text")]
        error: String,
        retryable: bool,
    },
    Status {
        connected: bool,
        #[serde(with = "limit::text")]
        last_error: Option<String>,
    },
    /// A piece of attachment `index` of the message `platform_id`; pieces
    /// come in order, right before that message's `Inbound`, and are
    /// prepended to the attachment's own data.
    FilePart {
        #[serde(with = "limit::id")]
        platform_id: String,
        #[serde(with = "limit::attachment_index")]
        index: u8,
        #[serde(with = "limit::part")]
        data: Vec<u8>,
    },
    /// Before downloading a message's files: would this sender be admitted?
    /// (Access is the broker's to decide; strangers' files are not fetched.)
    MayFetch {
        #[serde(with = "limit::id")]
        platform_id: String,
        #[serde(with = "limit::id")]
        chat_id: String,
        #[serde(with = "limit::id")]
        sender: String,
        is_group: bool,
        mentioned: bool,
    },
    /// The platform took the first `parts` parts of outbox message
    /// `outbox_id` (a reply split at the platform's length limit).
    PartDelivered {
        outbox_id: u64,
        parts: u32,
    },
    /// Draft `draft_id` was posted as the platform's message `message_id`.
    DraftShown {
        draft_id: u64,
        #[serde(with = "limit::id")]
        message_id: String,
    },
}

/// A file that came with a chat message, already downloaded by the channel
/// daemon (the broker never talks to the platforms).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub kind: AttachmentKind,
    /// The file name the user gave it, or one the daemon made up.
    #[serde(with = "limit::id")]
    pub name: String,
    #[serde(with = "limit::id")]
    pub mime: String,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttachmentKind {
    /// Shown to the model when it can see images.
    Image,
    /// Transcribed to text when transcription is configured.
    Audio,
    /// Saved into the workspace for the tools.
    Document,
}

impl Message for BrokerToChannel {}

impl Message for ChannelToBroker {
    fn validate(&self) -> Result<(), Refused> {
        // More than a piece's worth travels as FileParts.
        if let ChannelToBroker::Inbound { attachments, .. } = self {
            let inline: usize = attachments.iter().map(|a| a.data.len()).sum();
            if inline > MAX_PART {
                return Err(Refused {
                    what: "inline attachment data",
                    size: inline as u64,
                    max: MAX_PART as u64,
                    unit: Unit::Bytes,
                });
            }
        }
        Ok(())
    }
}

/// A button under a message. Pressing it says `says` in the chat, as if
/// the one who pressed it had written it: the broker believes a press no
/// more than a message (an approval still needs the chat's owner).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Button {
    #[serde(with = "limit::id")]
    pub label: String,
    #[serde(with = "limit::id")]
    pub says: String,
}
