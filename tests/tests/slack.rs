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

const PHOTO: &[u8] = b"\x89PNG\r\n\x1a\n a tiny png \x00\x01 not really";

/// The image URLs and text of the last user message of a request.
fn last_user(request: &serde_json::Value) -> (String, Vec<String>) {
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .cloned()
        .unwrap_or_default();
    match &user["content"] {
        serde_json::Value::String(t) => (t.clone(), Vec::new()),
        serde_json::Value::Array(parts) => (
            parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            parts
                .iter()
                .filter_map(|p| p["image_url"]["url"].as_str().map(str::to_string))
                .collect(),
        ),
        _ => (String::new(), Vec::new()),
    }
}

/// A shared image is downloaded with the bot token, after the broker said
/// the sender is admitted; it reaches a vision model and the workspace.
#[test]
fn a_shared_image_reaches_a_vision_model_and_is_saved() {
    let r = Run::<Slack>::builder(vec![Step::Text("a lighthouse".into())])
        .allow([ALICE.to_string()])
        .settings(|slack| json!({"apiBase": slack.fake.api_base}))
        .config(|_| json!({"agents": {"defaults": {"vision": true}}}))
        .start()
        .expect("the fake Slack always starts");
    r.wait_connected();
    r.p.fake.wait_connected(CONNECT);
    r.p.fake
        .share_file("D0001", ALICE, "what is this?", "shot.png", "image/png", PHOTO);
    let posted = r.p.fake.wait_posted(1, Duration::from_secs(20));
    assert_eq!(posted[0]["text"], "a lighthouse");
    let (text, images) = last_user(&r.llm.requests()[0].body);
    assert!(text.contains("what is this?"), "{text}");
    use base64::Engine;
    let expected = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(PHOTO)
    );
    assert_eq!(images, vec![expected]);
    let saved = text.split("saved to ").nth(1).unwrap_or_default().trim_end_matches(']');
    assert!(saved.starts_with("inbox/shot"), "{text}");
    assert_eq!(std::fs::read(r.broker.workspace.join(saved)).unwrap(), PHOTO);
    let downloads = r.p.fake.downloads();
    assert_eq!(downloads.len(), 1);
    assert!(downloads[0].1.starts_with("Bearer xoxb-"), "{downloads:?}");
}

/// A stranger's file is not fetched at all; a file over 20 MiB is refused
/// by its announced size before its body is read, and the model is told.
#[test]
fn strangers_files_and_oversized_files_are_not_downloaded() {
    let r = start(vec![Step::EchoUser]);
    r.p.fake.share_file(
        "D0002",
        "USTRANGER",
        "",
        "payload.bin",
        "application/octet-stream",
        &[1; 4096],
    );
    r.broker.wait_audit("access_denied", "USTRANGER");
    r.p.fake.share_huge_file("D0001", ALICE, "backup.zip", 30 << 20);
    let posted = r.p.fake.wait_posted(1, Duration::from_secs(20));
    let told = posted[0]["text"].as_str().unwrap_or_default();
    assert!(
        told.contains("backup.zip") && told.contains("cannot come through"),
        "{told}"
    );
    let downloads = r.p.fake.downloads();
    assert!(
        downloads.iter().all(|d| d.0 != "F0001"),
        "a stranger's file was fetched: {downloads:?}"
    );
    let huge = downloads
        .iter()
        .find(|d| d.0 == "F0002")
        .expect("the big file was not even asked for");
    assert!(huge.2 < 4 << 20, "{} bytes of the oversized file were pulled", huge.2);
    assert!(!r.broker.workspace.join("inbox/backup.zip").exists());
}

/// A draft is escaped as every reply is: the model's `<!channel>` pings
/// nobody.
#[test]
fn a_streamed_draft_pings_nobody() {
    let r = Run::<Slack>::builder(vec![Step::Parts {
        parts: vec!["<!channel> <!here> look ".into(), "at this.".into()],
        gap: Duration::from_millis(1200),
    }])
    .allow([ALICE.to_string()])
    .settings(|slack| json!({"apiBase": slack.fake.api_base, "streaming": true}))
    .start()
    .expect("the fake Slack always starts");
    r.wait_connected();
    r.p.fake.wait_connected(CONNECT);
    r.p.fake.message("D0001", "im", ALICE, "ping them");
    let draft = r.p.fake.wait_posted(1, Duration::from_secs(20))[0].clone();
    let text = draft["text"].as_str().unwrap_or_default();
    assert!(!text.contains("<!"), "the draft pings: {text}");
    assert!(text.contains("&lt;!channel&gt;"), "{text}");
}
