//! The handshake frame, sent first in each direction.

use serde::{Deserialize, Serialize};

/// "OXIB": rejects a peer that is not speaking this protocol at all.
pub const MAGIC: [u8; 4] = *b"OXIB";
/// Bumped only for incompatible changes; a mismatch closes the connection.
/// 3: `Send.first_part`/`PartDelivered` (split replies resume where they
/// stopped) and `ReadTexts` (the broker reads workspace files only through
/// toold). 4: the messages of each connection in a file of their own, cron
/// as one nested control request, and the health daemon's connection.
/// 5: `Exec.egress` (the exec's key to the egress door) and the egress
/// daemon's connection. 9: streamed chat turns and console chats on the
/// control socket (`Chat`, `ChatEvent`), drafts and `Send.edit` on a
/// channel's.
pub const PROTOCOL_MAJOR: u16 = 9;
/// Bumped when variants are appended; older peers keep working.
pub const PROTOCOL_MINOR: u16 = 0;

/// Which process is on the other end. Variants are only ever appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Broker,
    Channel,
    Tool,
    Ctl,
    /// The health endpoint's daemon (`oxibot-healthd`).
    Health,
    /// The egress door's daemon (`oxibot-egressd`).
    Egress,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Broker => "broker",
            Role::Channel => "channel",
            Role::Tool => "tool",
            Role::Ctl => "ctl",
            Role::Health => "health",
            Role::Egress => "egress",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub magic: [u8; 4],
    pub protocol_major: u16,
    pub protocol_minor: u16,
    pub role: Role,
}

impl Hello {
    pub fn new(role: Role) -> Self {
        Hello {
            magic: MAGIC,
            protocol_major: PROTOCOL_MAJOR,
            protocol_minor: PROTOCOL_MINOR,
            role,
        }
    }
}
