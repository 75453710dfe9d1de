//! A broker with the Telegram channel on the fake Bot API and the fake LLM:
//! the set-up of the assistant-ability tests (cron, heartbeat, subagents,
//! messages, web, skills, memory), started by the one builder (`Run`) and
//! named for what those tests look at.

use std::time::Duration;

use serde_json::Value;

use crate::consts::CONNECT;
use crate::fake_llm::{FakeLlm, Step};
use crate::fake_telegram::FakeTelegram;
use crate::harness::Broker;
use crate::platform::{Platform, Telegram};
use crate::run::Run;

/// The allowed user; their private chat has the same id.
pub const ALICE: i64 = 111;
/// Alice's conversation as `oxibotctl agent --session` names it.
pub const ALICE_SESSION: &str = "telegram:111";

pub struct Setup {
    pub llm: FakeLlm,
    pub tg: FakeTelegram,
    pub broker: Broker,
}

/// Starts everything through the one builder (`Run`): Telegram's fake,
/// the fake LLM, and a broker whose Telegram channel allows Alice; `config`
/// (given the fake LLM's URL) is merged into the broker's config,
/// `secrets` into its secrets.
pub fn start(script: Vec<Step>, config: impl FnOnce(&str) -> Value, secrets: Value) -> Setup {
    let telegram = Telegram::start(true).unwrap_or_else(|| unreachable!("the fake Bot API always starts"));
    let run = Run::<Telegram>::builder(script)
        .allow([ALICE.to_string()])
        .config(config)
        .secrets(secrets)
        .start_on(telegram);
    run.wait_connected();
    Setup {
        llm: run.llm,
        tg: run.p.fake,
        broker: run.broker,
    }
}

impl Setup {
    pub fn wait_connected(&self) {
        self.broker.wait_channel_connected("telegram", CONNECT);
    }

    /// The texts Telegram took, in order.
    pub fn sent_texts(&self) -> Vec<String> {
        self.tg
            .sent()
            .iter()
            .map(|m| m["text"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Waits until Telegram took a message containing `needle`; returns
    /// every such message.
    pub fn wait_sent_containing(&self, needle: &str, timeout: Duration) -> Vec<String> {
        crate::poll::wait_for(&format!("a Telegram message containing {needle:?}"), timeout, || {
            let hits: Vec<String> = self.sent_texts().into_iter().filter(|t| t.contains(needle)).collect();
            Some(hits).filter(|h| !h.is_empty())
        })
    }

    /// How many messages Telegram took containing `needle`.
    pub fn count_sent(&self, needle: &str) -> usize {
        self.sent_texts().iter().filter(|t| t.contains(needle)).count()
    }
}

pub fn tool(name: &str, args: Value) -> Step {
    Step::Tool {
        name: name.into(),
        args,
    }
}

pub fn text(t: &str) -> Step {
    Step::Text(t.into())
}
