//! A channel daemon's connection: what the broker hands it, what it reports.

use serde::{Deserialize, Serialize};

use super::*;

/// Broker → channel daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BrokerToChannel {
    /// The first message after Hello: this channel's settings (JSON, no
    /// secrets) and its one credential (JSON object of that channel's secrets).
    Setup {
        channel: String,
        settings_json: String,
        credential_json: String,
        /// (chat id, platform id) of the newest committed message of each
        /// recent chat, for platforms without a server-side cursor (Discord)
        /// to fetch what arrived while the daemon was down.
        resume_after: Vec<(String, String)>,
    },
    /// The inbound message with this platform id is committed; the daemon may
    /// now advance the platform cursor.
    Ack { platform_id: String },
    /// Deliver this text; answer with `PartDelivered` after each part the
    /// platform took, then `Delivered` or `SendFailed`.
    Send {
        outbox_id: u64,
        chat_id: String,
        text: String,
        reply_to: Option<String>,
        /// How many parts of the split text the platform already took on an
        /// earlier attempt: those are not sent again.
        first_part: u32,
    },
    /// Close down cleanly.
    Shutdown,
    /// The assistant started working on a message in this chat: show a
    /// typing indicator until the next `Send` to the chat.
    Typing { chat_id: String },
    /// The answer to `MayFetch`: whether the sender would be admitted.
    FetchAnswer { platform_id: String, allowed: bool },
}

/// Channel daemon → broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ChannelToBroker {
    /// The first message after Hello: which channel this daemon serves. The
    /// broker answers with `Setup` or closes the connection.
    Register {
        channel: String,
    },
    Inbound {
        platform_id: String,
        chat_id: String,
        sender: String,
        text: String,
        /// A group or channel chat rather than a direct message.
        is_group: bool,
        /// The message mentions or replies to the bot.
        mentioned: bool,
        /// Photos, voice notes and files that came with it.
        attachments: Vec<Attachment>,
    },
    Delivered {
        outbox_id: u64,
    },
    SendFailed {
        outbox_id: u64,
        error: String,
        retryable: bool,
    },
    Status {
        connected: bool,
        last_error: Option<String>,
    },
    /// A piece of attachment `index` of the message `platform_id`; pieces
    /// come in order, right before that message's `Inbound`, and are
    /// prepended to the attachment's own data.
    FilePart {
        platform_id: String,
        index: u8,
        data: Vec<u8>,
    },
    /// Before downloading a message's files: would this sender be admitted?
    /// (Access is the broker's to decide; strangers' files are not fetched.)
    MayFetch {
        platform_id: String,
        chat_id: String,
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
}

/// A file that came with a chat message, already downloaded by the channel
/// daemon (the broker never talks to the platforms).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub kind: AttachmentKind,
    /// The file name the user gave it, or one the daemon made up.
    pub name: String,
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

impl Message for BrokerToChannel {
    fn validate(&self) -> Result<(), String> {
        match self {
            BrokerToChannel::Setup {
                channel,
                settings_json,
                credential_json,
                resume_after,
            } => {
                bounded("channel", channel, MAX_ID)?;
                bounded("settings_json", settings_json, MAX_TEXT)?;
                bounded("credential_json", credential_json, MAX_TEXT)?;
                if resume_after.len() > MAX_RESUME_CHATS {
                    return Err(format!("resume_after has {} chats", resume_after.len()));
                }
                resume_after.iter().try_for_each(|(chat, id)| {
                    bounded("resume chat", chat, MAX_ID)?;
                    bounded("resume id", id, MAX_ID)
                })
            }
            BrokerToChannel::Ack { platform_id } => bounded("platform_id", platform_id, MAX_ID),
            BrokerToChannel::Send {
                chat_id,
                text,
                reply_to,
                ..
            } => {
                bounded("chat_id", chat_id, MAX_ID)?;
                bounded("text", text, MAX_TEXT)?;
                bounded("reply_to", reply_to.as_deref().unwrap_or(""), MAX_ID)
            }
            BrokerToChannel::Shutdown => Ok(()),
            BrokerToChannel::Typing { chat_id } => bounded("chat_id", chat_id, MAX_ID),
            BrokerToChannel::FetchAnswer { platform_id, .. } => bounded("platform_id", platform_id, MAX_ID),
        }
    }
}

impl Message for ChannelToBroker {
    fn validate(&self) -> Result<(), String> {
        match self {
            ChannelToBroker::Register { channel } => bounded("channel", channel, MAX_ID),
            ChannelToBroker::Inbound {
                platform_id,
                chat_id,
                sender,
                text,
                attachments,
                ..
            } => {
                bounded("platform_id", platform_id, MAX_ID)?;
                bounded("chat_id", chat_id, MAX_ID)?;
                bounded("sender", sender, MAX_ID)?;
                bounded("text", text, MAX_TEXT)?;
                if attachments.len() > MAX_ATTACHMENTS {
                    return Err(format!(
                        "{} attachments, the limit is {MAX_ATTACHMENTS}",
                        attachments.len()
                    ));
                }
                attachments.iter().try_for_each(|a| {
                    bounded("attachment name", &a.name, MAX_ID)?;
                    bounded("attachment mime", &a.mime, MAX_ID)
                })?;
                // More than a piece's worth travels as FileParts.
                let inline: usize = attachments.iter().map(|a| a.data.len()).sum();
                if inline > MAX_PART {
                    return Err(format!(
                        "{inline} bytes of attachment data inline; the limit is {MAX_PART}"
                    ));
                }
                Ok(())
            }
            ChannelToBroker::Delivered { .. } | ChannelToBroker::PartDelivered { .. } => Ok(()),
            ChannelToBroker::SendFailed { error, .. } => bounded("error", error, MAX_TEXT),
            ChannelToBroker::Status { last_error, .. } => {
                bounded("last_error", last_error.as_deref().unwrap_or(""), MAX_TEXT)
            }
            ChannelToBroker::FilePart {
                platform_id,
                index,
                data,
            } => {
                bounded("platform_id", platform_id, MAX_ID)?;
                if usize::from(*index) >= MAX_ATTACHMENTS {
                    return Err(format!(
                        "file part for attachment {index}; the limit is {MAX_ATTACHMENTS}"
                    ));
                }
                bytes_bounded("file part", data, MAX_PART)
            }
            ChannelToBroker::MayFetch {
                platform_id,
                chat_id,
                sender,
                ..
            } => {
                bounded("platform_id", platform_id, MAX_ID)?;
                bounded("chat_id", chat_id, MAX_ID)?;
                bounded("sender", sender, MAX_ID)
            }
        }
    }
}
