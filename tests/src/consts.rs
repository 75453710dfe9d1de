//! Values many test files share, defined once. The platforms' credentials
//! are in [`crate::platform`] (`TELEGRAM_TOKEN`, `DISCORD_TOKEN`, …), the
//! Telegram user the assistant tests talk as in [`crate::assistant`].

use std::time::Duration;

/// How long the broker and its daemons may take to start and connect:
/// toold to the broker (also after a restart), a channel to its platform.
pub const CONNECT: Duration = Duration::from_secs(20);

/// Patience for a wait that may take long on a loaded machine: a slow
/// connect or a reconnect, a daemon's restart, a reply retried or re-run
/// after a failure, a large upload.
pub const SLOW: Duration = Duration::from_secs(30);

/// The OpenAI API key a test broker presents to the fake LLM.
pub const LLM_KEY: &str = "sk-openai-LLMKEY-0123456789";
