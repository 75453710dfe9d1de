//! Slack end to end: fake Web API + Socket Mode ↔ oxibot-channeld
//! (slack-morphism) ↔ broker ↔ fake LLM.

use std::time::Duration;

use oxibot_tests::consts::CONNECT;
use oxibot_tests::fake_llm::Step;
use oxibot_tests::fake_slack::BOT_USER;
use oxibot_tests::platform::Slack;
use oxibot_tests::run::Run;
use serde_json::json;

const ALICE: &str = "UALICE01";

/// Slack on its fake with `ALICE` allowed, connected both ways.
fn start(script: Vec<Step>) -> Run<Slack> {
    let r = Run::<Slack>::builder(script)
        .allow([ALICE.to_string()])
        // The fake's address as it is, not by name as the shared tests have it.
        .settings(|slack| json!({"apiBase": slack.fake.api_base}))
        .start()
        .expect("the fake Slack always starts");
    r.wait_connected();
    r.p.fake.wait_connected(CONNECT);
    r
}

#[test]
fn a_dm_is_answered_in_its_thread_in_mrkdwn_and_acked() {
    let r = start(vec![Step::Text("**done**, see [docs](https://d.x)".into())]);
    let envelope = r.p.fake.message("D0001", "im", ALICE, "hi");
    let posted = r.p.fake.wait_posted(1, Duration::from_secs(20));
    assert_eq!(posted[0]["channel"], "D0001");
    assert_eq!(posted[0]["text"], "*done*, see <https://d.x|docs>");
    assert_eq!(posted[0]["thread_ts"], "1700000000.000001", "{}", posted[0]);
    assert!(r.p.fake.acked().contains(&envelope));
    assert!(r.llm.requests()[0].body.to_string().contains("hi"));
}

#[test]
fn channel_messages_need_a_mention_and_strangers_are_refused() {
    let r = start(vec![Step::Text("here".into())]);
    r.p.fake.message("C0001", "channel", ALICE, "just chatting");
    r.p.fake.message("D0002", "im", "USTRANGER", "let me in");
    r.broker.wait_audit("access_denied", "USTRANGER");
    r.p.fake
        .message("C0001", "channel", ALICE, &format!("<@{BOT_USER}> help"));
    let posted = r.p.fake.wait_posted(1, Duration::from_secs(20));
    assert_eq!(posted[0]["channel"], "C0001");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(r.llm.requests().len(), 1);
}
