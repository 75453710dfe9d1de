//! What a turn is: its session, the chat it speaks for, and who asked for
//! it. Shared by everything that starts turns (channels, cron, heartbeat,
//! background tasks, `oxibotctl agent`) and everything a turn uses.

use crate::config::Config;

/// A chat on a channel: where a turn's answers, messages and scheduled
/// jobs go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRef {
    pub channel: String,
    pub chat_id: String,
}

impl ChatRef {
    /// The session of this chat's conversation.
    pub fn session(&self) -> String {
        format!("{}:{}", self.channel, self.chat_id)
    }
}

/// Who asked for a turn; it decides which of the broker's tools it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnKind {
    /// A person wrote (on a channel, or through `oxibotctl agent`).
    Chat,
    /// A scheduled job ran.
    Scheduled,
    /// The heartbeat looked at HEARTBEAT.md.
    Heartbeat,
    /// A background task started by `spawn`.
    Subagent,
}

/// One turn's identity: its session, the chat it speaks for (none for an
/// `oxibotctl` session that names no chat), and its kind.
#[derive(Debug, Clone)]
pub struct Turn {
    pub session: String,
    pub origin: Option<ChatRef>,
    pub kind: TurnKind,
    /// Overrides agents.defaults.maxToolIterations (subagents).
    pub max_iterations: Option<u32>,
    /// The admin's own tool call (`oxibotctl tool`), not the model's: the
    /// approval gate does not ask the admin about their own command.
    pub by_admin: bool,
    /// Someone watches the turn as it runs (the chat client): the model's
    /// text as it streams, and a line per tool call.
    pub watcher: Option<Watcher>,
}

/// Where a watched turn's events go. Unbounded: a streamed answer is
/// bounded by the provider reader, and the turn must never wait for a
/// slow terminal.
pub type Watcher = tokio::sync::mpsc::UnboundedSender<oxibot_proto::messages::ChatEvent>;

/// The console's chats (`console:NAME`) are where `oxibotctl chat` and
/// `agent` talk; what is sent to them later waits for the next client.
pub const CONSOLE: &str = "console";

impl ChatRef {
    /// A chat of the admin's console, not of a chat platform.
    pub fn is_console(&self) -> bool {
        self.channel == CONSOLE
    }
}

impl Turn {
    /// A person's turn in their chat.
    pub fn chat(origin: ChatRef) -> Turn {
        Turn {
            session: origin.session(),
            origin: Some(origin),
            kind: TurnKind::Chat,
            max_iterations: None,
            by_admin: false,
            watcher: None,
        }
    }

    /// An `oxibotctl agent` or `chat` turn: a session named
    /// "<channel>:<chat>" for a configured channel speaks for that chat
    /// (the admin may), "console:<name>" for a console chat (its later
    /// messages wait for the chat client); any other name is a session
    /// without a chat.
    pub fn console(config: &Config, session: &str) -> Turn {
        let origin = session
            .split_once(':')
            .filter(|(channel, chat)| {
                !chat.is_empty() && (config.channels.contains_key(*channel) || *channel == CONSOLE)
            })
            .map(|(channel, chat)| ChatRef {
                channel: channel.to_string(),
                chat_id: chat.to_string(),
            });
        Turn {
            session: session.to_string(),
            origin,
            kind: TurnKind::Chat,
            max_iterations: None,
            by_admin: false,
            watcher: None,
        }
    }
}
