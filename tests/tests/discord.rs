//! Discord end to end: fake REST API + gateway ↔ oxibot-channeld (serenity)
//! ↔ broker ↔ fake LLM.

use std::time::Duration;

use oxibot_tests::consts::SLOW;
use oxibot_tests::fake_llm::Step;
use oxibot_tests::platform::Discord;
use oxibot_tests::run::Run;
use serde_json::{json, Value};

const ALICE: u64 = 4242;
const DM: u64 = 7001;
const GUILD: u64 = 8001;
const GUILD_CHANNEL: u64 = 8002;

/// Discord on its fake with `ALICE` allowed.
fn start(script: Vec<Step>) -> Run<Discord> {
    Run::<Discord>::builder(script)
        .allow([ALICE.to_string()])
        .start()
        .expect("the fake Discord always starts")
}

fn content(m: &(String, Value)) -> String {
    m.1["content"].as_str().unwrap_or_default().to_string()
}

#[test]
fn a_dm_is_answered_as_a_reply_in_the_same_channel() {
    // A model that takes a moment: long enough for the typing indicator
    // (an instant answer may rightly go out before any).
    let slow = Step::Delay(
        Duration::from_millis(500),
        Box::new(Step::Text("hello from the bot".into())),
    );
    let r = start(vec![slow]);
    r.wait_connected();
    let id = r.p.fake.post(DM, None, ALICE, "hi", false);
    let sent = r.p.fake.wait_sent(1, Duration::from_secs(20));
    assert_eq!(sent[0].0, DM.to_string());
    assert_eq!(content(&sent[0]), "hello from the bot");
    assert_eq!(
        sent[0].1["message_reference"]["message_id"],
        json!(id.to_string()),
        "{}",
        sent[0].1
    );
    assert!(r.llm.requests()[0].body.to_string().contains("hi"));
    assert!(r.p.fake.typing().contains(&DM.to_string()));
}

#[test]
fn guild_messages_need_a_mention_and_strangers_are_refused() {
    let r = start(vec![Step::Text("at your service".into())]);
    r.wait_connected();
    r.p.fake.post(GUILD_CHANNEL, Some(GUILD), ALICE, "chatting", false);
    r.p.fake.post(DM, None, 999, "let me in", false);
    r.broker.wait_audit("access_denied", "user 999");
    r.p.fake
        .post(GUILD_CHANNEL, Some(GUILD), ALICE, "<@900000000000000001> help", true);
    let sent = r.p.fake.wait_sent(1, Duration::from_secs(20));
    assert_eq!(sent[0].0, GUILD_CHANNEL.to_string());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(r.llm.requests().len(), 1);
}

#[test]
fn attachments_are_downloaded_and_saved_into_the_workspace() {
    let r = start(vec![Step::Text("thanks".into())]);
    r.wait_connected();
    let csv = b"name,qty\nbolts,40\n";
    r.p.fake
        .post_file(DM, ALICE, "inventory attached", "stock.csv", "text/csv", csv);
    r.p.fake.wait_sent(1, Duration::from_secs(20));
    let request = r.llm.requests()[0].body.to_string();
    assert!(
        request.contains("inventory attached") && request.contains("inbox/stock.csv"),
        "{request}"
    );
    assert_eq!(std::fs::read(r.broker.workspace.join("inbox/stock.csv")).unwrap(), csv);
}

#[test]
fn messages_sent_while_the_daemon_is_down_are_fetched_after_the_restart() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let r = start(vec![Step::Text("first".into()), Step::Text("caught up".into())]);
    r.wait_connected();
    r.p.fake.post(DM, None, ALICE, "hello", false);
    r.p.fake.wait_sent(1, Duration::from_secs(20));
    let old = r.broker.process_pid("channel:discord").unwrap();
    kill(Pid::from_raw(old), Signal::SIGKILL).unwrap();
    oxibot_tests::poll::wait_for("the gateway session to end", Duration::from_secs(10), || {
        (r.p.fake.live_sessions() == 0).then_some(())
    });
    // Nobody is listening on the gateway: only the history has it.
    let missed = r.p.fake.post(DM, None, ALICE, "are you there?", false);
    let sent = r.p.fake.wait_sent(2, SLOW);
    assert_eq!(content(&sent[1]), "caught up");
    assert_eq!(sent[1].1["message_reference"]["message_id"], json!(missed.to_string()));
    assert!(r.llm.requests()[1].body.to_string().contains("are you there?"));
    let queries = r.p.fake.history_queries();
    assert!(queries.iter().any(|q| q.contains("after=")), "{queries:?}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(r.p.fake.sent().len(), 2, "answered twice: {:?}", r.p.fake.sent());
}

/// The window that the chaos test can only hit by luck, hit on purpose:
/// Discord takes the reply, and the daemon is killed before it can tell
/// the broker. The restarted daemon sends the part again with the same
/// nonce, and Discord (`enforce_nonce`) answers with the first message
/// instead of posting a second.
#[test]
fn a_reply_resent_after_a_kill_is_posted_once() {
    let r = start(vec![Step::Text("only once, please".into())]);
    r.wait_connected();
    r.p.fake.stall_next_create();
    r.p.fake.post(DM, None, ALICE, "hi", false);
    r.p.fake.wait_sent(1, Duration::from_secs(20));
    let daemon = r.broker.process_pid("channel:discord").expect("the daemon's pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon), nix::sys::signal::Signal::SIGKILL).unwrap();
    oxibot_tests::poll::wait_for("the resend", SLOW, || (r.p.fake.nonce_repeats() == 1).then_some(()));
    r.broker
        .wait_until("the reply counted as delivered", Duration::from_secs(20), |s| {
            s["queues"]["outboxPending"] == 0
        });
    let sent = r.p.fake.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(content(&sent[0]), "only once, please");
    assert!(
        sent[0].1["nonce"].as_str().is_some_and(|n| n.len() <= 25),
        "{}",
        sent[0].1
    );
}

/// An approval request carries Approve/Deny buttons; a press is said in
/// its channel by the one who pressed it, acknowledged at once, and only
/// the chat's owner's press counts.
#[test]
fn an_approval_is_answered_with_a_button_and_only_by_the_owner() {
    const BOB: u64 = 5151;
    let script = vec![
        Step::Tool {
            name: "exec".into(),
            args: json!({"command": "echo discord-pressed"}),
        },
        Step::Text("Ran it.".into()),
    ];
    let r = Run::<Discord>::builder(script)
        .allow([ALICE.to_string(), "*".to_string()])
        .config(|_| {
            json!({"tools": {"approval": {"mode": "always", "timeoutSecs": 60}},
                           "channels": {"discord": {"groupPolicy": "open"}}})
        })
        .start()
        .expect("the fake Discord always starts");
    r.wait_connected();
    r.p.fake.post(GUILD_CHANNEL, Some(GUILD), ALICE, "run it", false);
    let sent = r.p.fake.wait_sent(1, SLOW);
    assert!(content(&sent[0]).contains("Approval needed"), "{}", sent[0].1);
    let buttons = &sent[0].1["components"][0]["components"];
    assert_eq!(buttons[0]["label"], json!("Approve"));
    let approve = buttons[0]["custom_id"].as_str().unwrap().to_string();
    assert!(approve.starts_with("/approve "), "{approve}");
    assert!(buttons
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["custom_id"].as_str().unwrap().starts_with("/deny ")));

    let bob = r.p.fake.press_button(GUILD_CHANNEL, Some(GUILD), BOB, 1, &approve);
    r.p.fake.wait_sent(2, SLOW);
    assert!(
        content(&r.p.fake.sent()[1]).contains("Only the owner"),
        "{:?}",
        r.p.fake.sent()[1]
    );
    assert_eq!(r.llm.requests().len(), 1);
    let alice = r.p.fake.press_button(GUILD_CHANNEL, Some(GUILD), ALICE, 1, &approve);
    oxibot_tests::poll::wait_for("the command's output at the model", SLOW, || {
        let reqs = r.llm.requests();
        Some(()).filter(|_| reqs.len() >= 2 && reqs[1].body.to_string().contains("discord-pressed"))
    });
    oxibot_tests::poll::wait_for("both presses acknowledged", SLOW, || {
        let answered = r.p.fake.answered_interactions();
        Some(()).filter(|_| answered.contains(&bob.to_string()) && answered.contains(&alice.to_string()))
    });
}

/// With `streaming`, the answer is one message: posted as a draft (a reply
/// to the message it answers, pinging nobody), edited as it is written at
/// most once a second, and edited into the final answer.
#[test]
fn a_streamed_answer_is_one_message_edited_as_it_is_written() {
    let parts = ["Streamed ", "over ", "the ", "gateway ", "**done**."];
    let r = Run::<Discord>::builder(vec![Step::Parts {
        parts: parts.iter().map(|p| p.to_string()).collect(),
        gap: Duration::from_millis(600),
    }])
    .allow([ALICE.to_string()])
    .settings(|_| json!({"streaming": true}))
    .start()
    .expect("the fake Discord always starts");
    r.wait_connected();
    let asked = r.p.fake.post(DM, None, ALICE, "stream it", false);
    let draft = r.p.fake.wait_sent(1, SLOW)[0].clone();
    assert_eq!(draft.1["message_reference"]["message_id"], json!(asked.to_string()));
    assert_eq!(draft.1["allowed_mentions"]["parse"], json!([]), "a draft pings nobody");
    // The draft's id, as its first edit names it.
    let id = oxibot_tests::poll::wait_for("an edit of the draft", SLOW, || {
        r.p.fake.edits().first().map(|e| e["id"].as_str().unwrap().to_string())
    });
    let whole = parts.concat();
    oxibot_tests::poll::until(SLOW, std::time::Duration::from_millis(100), || {
        (r.p.fake.text_now(&id).as_deref() == Some(whole.as_str())).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the answer never filled the draft: {:?}\n{}",
            r.p.fake.edits(),
            r.broker.log_text()
        )
    });
    r.wait_outbox_drained();
    assert_eq!(
        r.p.fake.sent().len(),
        1,
        "the answer was posted again: {:?}",
        r.p.fake.sent()
    );
    let times: Vec<u64> =
        r.p.fake
            .edits()
            .iter()
            .filter(|e| e["id"] == json!(id))
            .map(|e| e["at_ms"].as_u64().unwrap())
            .collect();
    assert!(times.len() >= 2, "not shown as it came: {:?}", r.p.fake.edits());
    // The drafts' pace (the final edit, the last, may follow sooner).
    for pair in times[..times.len() - 1].windows(2) {
        assert!(
            pair[1] - pair[0] >= 900,
            "two draft edits {} ms apart",
            pair[1] - pair[0]
        );
    }
}
