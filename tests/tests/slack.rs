//! Slack end to end: fake Web API + Socket Mode ↔ oxibot-channeld
//! (slack-morphism) ↔ broker ↔ fake LLM.

use std::time::Duration;

use oxibot_tests::consts::{CONNECT, LLM_KEY};
use oxibot_tests::fake_llm::{FakeLlm, Step};
use oxibot_tests::fake_slack::{FakeSlack, BOT_USER};
use oxibot_tests::harness::Broker;
use oxibot_tests::platform::{SLACK_APP_TOKEN, SLACK_BOT_TOKEN};
use serde_json::json;

const ALICE: &str = "UALICE01";

fn start(script: Vec<Step>, extra: serde_json::Value) -> (FakeLlm, FakeSlack, Broker) {
    let llm = FakeLlm::start(script);
    let slack = FakeSlack::start(SLACK_BOT_TOKEN, SLACK_APP_TOKEN);
    let mut settings = json!({"enabled": true, "apiBase": slack.api_base, "allowedUsers": [ALICE]});
    oxibot_tests::harness::merge(&mut settings, extra);
    let secrets = json!({"providers": {"openai": {"apiKey": LLM_KEY}},
                         "channels": {"slack": {"botToken": SLACK_BOT_TOKEN, "appToken": SLACK_APP_TOKEN}}});
    let broker = Broker::start(&llm.base_url, json!({"channels": {"slack": settings}}), secrets);
    broker.wait_until("slack connected", CONNECT, |s| {
        s["channels"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["name"] == "slack" && c["connected"] == true))
    });
    slack.wait_connected(CONNECT);
    (llm, slack, broker)
}

#[test]
fn a_dm_is_answered_in_its_thread_in_mrkdwn_and_acked() {
    let (llm, slack, _broker) = start(vec![Step::Text("**done**, see [docs](https://d.x)".into())], json!({}));
    let envelope = slack.message("D0001", "im", ALICE, "hi");
    let posted = slack.wait_posted(1, Duration::from_secs(20));
    assert_eq!(posted[0]["channel"], "D0001");
    assert_eq!(posted[0]["text"], "*done*, see <https://d.x|docs>");
    assert_eq!(posted[0]["thread_ts"], "1700000000.000001", "{}", posted[0]);
    assert!(slack.acked().contains(&envelope));
    assert!(llm.requests()[0].body.to_string().contains("hi"));
}

#[test]
fn channel_messages_need_a_mention_and_strangers_are_refused() {
    let (llm, slack, broker) = start(vec![Step::Text("here".into())], json!({}));
    slack.message("C0001", "channel", ALICE, "just chatting");
    slack.message("D0002", "im", "USTRANGER", "let me in");
    broker.wait_audit("access_denied", "USTRANGER");
    slack.message("C0001", "channel", ALICE, &format!("<@{BOT_USER}> help"));
    let posted = slack.wait_posted(1, Duration::from_secs(20));
    assert_eq!(posted[0]["channel"], "C0001");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(llm.requests().len(), 1);
}
