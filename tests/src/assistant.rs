//! A broker with the Telegram channel on the fake Bot API and the fake LLM:
//! the set-up of the assistant-ability tests (cron, heartbeat, subagents,
//! messages, web, skills, memory).

use std::time::Duration;

use serde_json::{json, Value};

use crate::consts::{CONNECT, LLM_KEY};
use crate::fake_llm::{FakeLlm, Step};
use crate::fake_telegram::FakeTelegram;
use crate::harness::{merge, Broker};
use crate::platform::TELEGRAM_TOKEN;

/// The allowed user; their private chat has the same id.
pub const ALICE: i64 = 111;
/// Alice's conversation as `oxibotctl agent --session` names it.
pub const ALICE_SESSION: &str = "telegram:111";

pub struct Setup {
    pub llm: FakeLlm,
    pub tg: FakeTelegram,
    pub broker: Broker,
}

/// Starts everything; `config` (given the fake LLM's URL) is merged into
/// the broker's config, `secrets` into its secrets.
pub fn start(script: Vec<Step>, config: impl FnOnce(&str) -> Value, secrets: Value) -> Setup {
    let llm = FakeLlm::start(script);
    let tg = FakeTelegram::start(TELEGRAM_TOKEN);
    let mut patch = json!({"channels": {"telegram": {
        "enabled": true, "apiBase": tg.base_url, "allowedUsers": [ALICE.to_string()]
    }}});
    merge(&mut patch, config(&llm.base_url));
    let mut all_secrets = json!({
        "providers": {"openai": {"apiKey": LLM_KEY}},
        "channels": {"telegram": {"token": TELEGRAM_TOKEN}}
    });
    merge(&mut all_secrets, secrets);
    let broker = Broker::start(&llm.base_url, patch, all_secrets);
    let s = Setup { llm, tg, broker };
    s.wait_connected();
    s
}

impl Setup {
    pub fn wait_connected(&self) {
        self.broker.wait_until("telegram connected", CONNECT, |s| {
            s["channels"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["name"] == "telegram" && c["connected"] == true))
        });
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
