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

/// An approval request carries buttons; a press is said in its channel by
/// the one who pressed it, acknowledged once the broker has it, and only
/// the chat's owner's press counts.
#[test]
fn an_approval_is_answered_with_a_button_and_only_by_the_owner() {
    const BOB: &str = "UBOB0002";
    let script = vec![
        Step::Tool {
            name: "exec".into(),
            args: json!({"command": "echo slack-pressed"}),
        },
        Step::Text("Ran it.".into()),
    ];
    let r = Run::<Slack>::builder(script)
        .allow([ALICE.to_string(), "*".to_string()])
        .settings(|slack| json!({"apiBase": slack.fake.api_base, "groupPolicy": "open"}))
        .config(|_| json!({"tools": {"approval": {"mode": "always", "timeoutSecs": 60}}}))
        .start()
        .expect("the fake Slack always starts");
    r.wait_connected();
    r.p.fake.wait_connected(CONNECT);
    r.p.fake.message("C0001", "channel", ALICE, "run it");
    let posted = r.p.fake.wait_posted(1, Duration::from_secs(20));
    assert!(
        posted[0]["text"].as_str().unwrap().contains("Approval needed"),
        "{}",
        posted[0]
    );
    let blocks = &posted[0]["blocks"];
    assert_eq!(blocks[0]["type"], "section", "{blocks}");
    let buttons = &blocks[1]["elements"];
    assert_eq!(buttons[0]["text"]["text"], "Approve");
    let approve = buttons[0]["value"].as_str().unwrap().to_string();
    assert!(approve.starts_with("/approve "), "{approve}");

    let bob = r.p.fake.press_button("C0001", BOB, &approve);
    let posted = r.p.fake.wait_posted(2, Duration::from_secs(20));
    assert!(
        posted[1]["text"].as_str().unwrap().contains("Only the owner"),
        "{}",
        posted[1]
    );
    assert_eq!(r.llm.requests().len(), 1);
    let alice = r.p.fake.press_button("C0001", ALICE, &approve);
    oxibot_tests::poll::wait_for("the command's output at the model", Duration::from_secs(20), || {
        let reqs = r.llm.requests();
        Some(()).filter(|_| reqs.len() >= 2 && reqs[1].body.to_string().contains("slack-pressed"))
    });
    let acked = r.p.fake.acked();
    assert!(acked.contains(&bob) && acked.contains(&alice), "{acked:?}");
}

/// With `streaming`, the answer is one message in the thread: posted as a
/// draft, updated as it is written at most once a second, and updated
/// into the final answer (in mrkdwn).
#[test]
fn a_streamed_answer_is_one_message_updated_in_its_thread() {
    let parts = ["Streamed ", "over ", "socket ", "mode, ", "**done**."];
    let r = Run::<Slack>::builder(vec![Step::Parts {
        parts: parts.iter().map(|p| p.to_string()).collect(),
        gap: Duration::from_millis(600),
    }])
    .allow([ALICE.to_string()])
    .settings(|slack| json!({"apiBase": slack.fake.api_base, "streaming": true}))
    .start()
    .expect("the fake Slack always starts");
    r.wait_connected();
    r.p.fake.wait_connected(CONNECT);
    r.p.fake.message("D0001", "im", ALICE, "stream it");
    let draft = r.p.fake.wait_posted(1, Duration::from_secs(20))[0].clone();
    assert_eq!(draft["thread_ts"], "1700000000.000001", "{draft}");
    let ts = draft["ts"].as_str().unwrap().to_string();
    let shown = "Streamed over socket mode, *done*.";
    oxibot_tests::poll::wait_for("the whole answer in the draft", Duration::from_secs(20), || {
        (r.p.fake.text_now(&ts).as_deref() == Some(shown)).then_some(())
    });
    r.wait_outbox_drained();
    assert_eq!(
        r.p.fake.posted().len(),
        1,
        "the answer was posted again: {:?}",
        r.p.fake.posted()
    );
    let times: Vec<u64> =
        r.p.fake
            .updates()
            .iter()
            .map(|u| u["at_ms"].as_u64().unwrap())
            .collect();
    assert!(times.len() >= 2, "not shown as it came: {:?}", r.p.fake.updates());
    for pair in times[..times.len() - 1].windows(2) {
        assert!(
            pair[1] - pair[0] >= 900,
            "two draft updates {} ms apart",
            pair[1] - pair[0]
        );
    }
}
