//! Telegram end to end: the fake Bot API ↔ oxibot-channeld (teloxide) ↔
//! broker ↔ fake LLM, with real processes and sockets.

use std::time::Duration;

use oxibot_tests::fake_llm::{FakeLlm, Step};
use oxibot_tests::fake_telegram::{FakeTelegram, BOT_USERNAME};
use oxibot_tests::harness::Broker;
use serde_json::{json, Value};

const TOKEN: &str = "123456:TEST-telegram-token-abcdef";
const LLM_KEY: &str = "sk-openai-LLMKEY-0123456789";
const DISCORD_TOKEN: &str = "discord-token-NOT-FOR-TELEGRAM-42";
const ALICE: i64 = 111;

struct Setup {
    llm: FakeLlm,
    tg: FakeTelegram,
    broker: Broker,
}

fn start(script: Vec<Step>, telegram: Value) -> Setup {
    start_with_token(script, telegram, TOKEN)
}

fn start_with_token(script: Vec<Step>, telegram: Value, server_token: &str) -> Setup {
    let llm = FakeLlm::start(script);
    let tg = FakeTelegram::start(server_token);
    let mut channel = json!({"enabled": true, "apiBase": tg.base_url, "allowedUsers": [ALICE.to_string()]});
    oxibot_tests::harness::merge(&mut channel, telegram);
    let secrets = json!({
        "providers": {"openai": {"apiKey": LLM_KEY}},
        "channels": {"telegram": {"token": TOKEN}, "discord": {"token": DISCORD_TOKEN}}
    });
    let broker = Broker::start(&llm.base_url, json!({"channels": {"telegram": channel}}), secrets);
    Setup { llm, tg, broker }
}

impl Setup {
    fn wait_connected(&self) {
        self.broker
            .wait_until("telegram connected", Duration::from_secs(20), |s| {
                s["channels"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["name"] == "telegram" && c["connected"] == true))
            });
    }
}

fn text_of(m: &Value) -> String {
    m["text"].as_str().unwrap_or_default().to_string()
}

#[test]
fn an_allowed_user_is_answered_in_the_right_chat_as_a_threaded_reply() {
    let s = start(vec![Step::Text("**Hello** there".into())], json!({}));
    s.wait_connected();
    let update = s.tg.send_text(ALICE, "hi bot");
    let sent = s.tg.wait_sent(1, Duration::from_secs(20));
    assert_eq!(sent[0]["chat_id"], json!(ALICE));
    assert_eq!(text_of(&sent[0]), "<b>Hello</b> there");
    assert_eq!(sent[0]["parse_mode"], "HTML");
    assert_eq!(sent[0]["reply_parameters"]["message_id"], json!(1), "{}", sent[0]);
    // The model saw the message; a typing indicator went to the chat.
    assert!(s.llm.requests()[0].body.to_string().contains("hi bot"));
    assert!(s
        .tg
        .actions()
        .iter()
        .any(|a| a["chat_id"] == json!(ALICE) && a["action"] == "typing"));
    // The cursor moved past the update once the broker had it.
    s.tg.wait_committed(update, Duration::from_secs(10));
    // Delivered: nothing left in the outbox.
    s.broker.wait_until("outbox drained", Duration::from_secs(10), |st| {
        st["queues"]["outboxPending"] == 0
    });
}

#[test]
fn an_unknown_user_is_refused_and_audited() {
    let s = start(vec![], json!({}));
    s.wait_connected();
    let update = s.tg.send_text(222, "let me in");
    let entry = s.broker.wait_audit("access_denied", "user 222");
    assert!(entry.contains("telegram"), "{entry}");
    // Refused, but acknowledged: the platform does not redeliver it forever.
    s.tg.wait_committed(update, Duration::from_secs(10));
    assert!(s.llm.requests().is_empty(), "a refused message reached the model");
    assert!(s.tg.sent().is_empty());
}

#[test]
fn group_messages_need_a_mention() {
    let s = start(vec![Step::Text("at your service".into())], json!({}));
    s.wait_connected();
    let ignored = s.tg.send_group_text(-500, ALICE, "talking among ourselves");
    s.tg.wait_served(ignored, Duration::from_secs(10));
    s.tg.send_group_text(-500, ALICE, &format!("@{BOT_USERNAME} help me"));
    let sent = s.tg.wait_sent(1, Duration::from_secs(20));
    assert_eq!(sent[0]["chat_id"], json!(-500));
    assert_eq!(s.llm.requests().len(), 1, "the unaddressed message reached the model");
    assert!(s.broker.audit("access_denied").is_empty(), "ignoring is not refusing");
}

#[test]
fn chat_commands_work() {
    let s = start(vec![Step::Text("first".into())], json!({}));
    s.wait_connected();
    s.tg.send_text(ALICE, "remember this");
    s.tg.wait_sent(1, Duration::from_secs(20));
    s.tg.send_text(ALICE, "/help");
    let sent = s.tg.wait_sent(2, Duration::from_secs(20));
    assert!(text_of(&sent[1]).contains("/new"), "{}", sent[1]);
    s.tg.send_text(ALICE, "/new");
    let sent = s.tg.wait_sent(3, Duration::from_secs(20));
    assert!(text_of(&sent[2]).contains("new conversation"));
    assert!(
        s.broker.messages(&format!("telegram:{ALICE}")).is_empty(),
        "/new kept the history"
    );
    assert_eq!(s.llm.requests().len(), 1, "commands must not reach the model");
}
