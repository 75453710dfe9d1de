//! One message enum per role and direction. This is the privsep dispatch
//! table: each connection is typed with exactly one inbound enum, so a peer
//! can only ask for what its role may ask for. Variants are only ever
//! appended (postcard encodes the variant index).

use serde::{de::DeserializeOwned, Serialize};

/// Upper bounds checked after decoding. The 1 MiB frame cap bounds the total;
/// these keep individual fields sane so that no handler has to.
pub const MAX_ID: usize = 256;
/// Buttons under one message.
pub const MAX_BUTTONS: usize = 4;
pub const MAX_PATH: usize = 4096;
pub const MAX_TEXT: usize = 900 * 1024;
/// The most file data one chat message may carry, all files together
/// (Telegram's own bot download limit).
pub const MAX_FILE_BYTES: usize = 20 << 20;
/// File data travels in pieces of at most this size (`FilePart`,
/// `SaveUpload`), so that every frame stays far below the frame cap.
pub const MAX_PART: usize = 512 * 1024;
/// How many chats a daemon is asked to catch up on after a restart.
pub const MAX_RESUME_CHATS: usize = 100;
/// How many files one message may carry (their sizes together still fit a frame).
pub const MAX_ATTACHMENTS: usize = 4;
/// How many path patterns one `ReadTexts` may name, and how many files it
/// may return.
pub const MAX_TEXT_FILES: usize = 64;
/// The most text one `ReadTexts` answer holds, all files together (well
/// below the frame cap). An answer that reaches this, or `MAX_TEXT_FILES`,
/// may have left files out.
pub const MAX_TEXTS_TOTAL: usize = 768 * 1024;

pub trait Message: Serialize + DeserializeOwned + Send + 'static {
    /// What a field's own bound cannot say (a bound across fields),
    /// checked after decoding and before encoding; a refusal closes the
    /// connection. Single fields are bounded where they are declared
    /// (see [`limit`]).
    fn validate(&self) -> Result<(), Refused> {
        Ok(())
    }
}

mod channel;
mod ctl;
mod egress;
mod health;
pub(crate) mod limit;
mod tool;

pub use channel::*;
pub use ctl::*;
pub use egress::*;
pub use health::*;
pub use limit::{Refused, Unit};
pub use tool::*;

impl Message for crate::hello::Hello {}
