//! Telegram end to end: the fake Bot API ↔ oxibot-channeld (teloxide) ↔
//! broker ↔ fake LLM, with real processes and sockets.

use std::time::Duration;

use oxibot_tests::assistant::ALICE;
use oxibot_tests::consts::SLOW;
use oxibot_tests::fake_llm::Step;
use oxibot_tests::fake_telegram::BOT_USERNAME;
use oxibot_tests::platform::Telegram;
use oxibot_tests::poll::{self, POLL_COSTLY};
use oxibot_tests::run::Run;
use serde_json::{json, Value};

const DISCORD_TOKEN: &str = "discord-token-NOT-FOR-TELEGRAM-42";

fn start(script: Vec<Step>) -> Run<Telegram> {
    start_with(script, |_| json!({}), json!({}))
}

/// Telegram on its fake with `ALICE` allowed; `config` (given the fake
/// LLM's URL) and `secrets` are merged into the broker's config and secrets.
fn start_with(script: Vec<Step>, config: impl FnOnce(&str) -> Value + 'static, secrets: Value) -> Run<Telegram> {
    Run::<Telegram>::builder(script)
        .allow([ALICE.to_string()])
        // The fake's address as it is, not by name as the shared tests have it.
        .settings(|tg| json!({"apiBase": tg.fake.base_url}))
        // Another channel's credential sits in the same secrets file.
        .secrets(json!({"channels": {"discord": {"token": DISCORD_TOKEN}}}))
        .secrets(secrets)
        .config(config)
        .start()
        .expect("the fake Telegram always starts")
}

fn text_of(m: &Value) -> String {
    m["text"].as_str().unwrap_or_default().to_string()
}

#[test]
fn an_allowed_user_is_answered_in_the_right_chat_as_a_threaded_reply() {
    // A model that takes a moment, long enough for the typing indicator.
    let slow = Step::Delay(
        Duration::from_millis(500),
        Box::new(Step::Text("**Hello** there".into())),
    );
    let r = start(vec![slow]);
    r.wait_connected();
    let update = r.p.fake.send_text(ALICE, "hi bot");
    let sent = r.p.fake.wait_sent(1, Duration::from_secs(20));
    assert_eq!(sent[0]["chat_id"], json!(ALICE));
    assert_eq!(text_of(&sent[0]), "<b>Hello</b> there");
    assert_eq!(sent[0]["parse_mode"], "HTML");
    assert_eq!(sent[0]["reply_parameters"]["message_id"], json!(1), "{}", sent[0]);
    // The model saw the message; a typing indicator went to the chat.
    assert!(r.llm.requests()[0].body.to_string().contains("hi bot"));
    assert!(r
        .p
        .fake
        .actions()
        .iter()
        .any(|a| a["chat_id"] == json!(ALICE) && a["action"] == "typing"));
    // The cursor moved past the update once the broker had it.
    r.p.fake.wait_committed(update, Duration::from_secs(10));
    // Delivered: nothing left in the outbox.
    r.wait_outbox_drained();
}

#[test]
fn an_unknown_user_is_refused_and_audited() {
    let r = start(vec![]);
    r.wait_connected();
    let update = r.p.fake.send_text(222, "let me in");
    let entry = r.broker.wait_audit("access_denied", "user 222");
    assert!(entry.contains("telegram"), "{entry}");
    // Refused, but acknowledged: the platform does not redeliver it forever.
    r.p.fake.wait_committed(update, Duration::from_secs(10));
    assert!(r.llm.requests().is_empty(), "a refused message reached the model");
    assert!(r.p.fake.sent().is_empty());
    let st = r.broker.status();
    assert_eq!(st["channels"][0]["counters"]["refused"], 1, "{st}");
    assert_eq!(st["channels"][0]["counters"]["received"], 0, "{st}");
}

/// `oxibotctl users allow|deny` beats the allow-list both ways, at once,
/// and is audited under the channel and the user.
#[test]
fn the_admin_allows_and_denies_users_without_editing_the_config() {
    let r = start(vec![Step::Text("hello bob".into()), Step::Text("again".into())]);
    r.wait_connected();
    const BOB: i64 = 333;
    let ok = |args: &[&str]| {
        let out = r.broker.ctl(args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    ok(&["users", "allow", "telegram", &BOB.to_string()]);
    r.p.fake.send_text(BOB, "hi, I am new");
    let sent = r.p.fake.wait_sent(1, Duration::from_secs(20));
    assert_eq!(sent[0]["chat_id"], json!(BOB));

    ok(&["users", "deny", "telegram", &ALICE.to_string()]);
    let update = r.p.fake.send_text(ALICE, "am I still in?");
    let entry = r.broker.wait_audit("access_denied", "oxibotctl users deny");
    assert!(entry.contains(&ALICE.to_string()), "{entry}");
    r.p.fake.wait_committed(update, Duration::from_secs(10));
    assert_eq!(r.p.fake.sent().len(), 1, "a denied user was answered");
    assert_eq!(r.llm.requests().len(), 1);

    let audit = r.broker.ctl(&[
        "--json",
        "audit",
        "tail",
        "--channel",
        "telegram",
        "--user",
        &ALICE.to_string(),
    ]);
    let entries: Value = serde_json::from_slice(&audit.stdout).unwrap();
    let kinds: Vec<&str> = entries["entries"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["kind"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(kinds, ["user_decided", "access_denied"], "{entries}");
}

/// `oxibotctl channels restart` stops the daemon; its supervisor starts
/// it again, it gets its credential anew, and messages flow.
#[test]
fn a_channel_restarts_on_the_admins_word() {
    let r = start(vec![Step::Text("back".into())]);
    r.wait_connected();
    let before = r.broker.audit("credential_handout").len();
    let out = r.broker.ctl(&["channels", "restart", "telegram"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    poll::until(SLOW, POLL_COSTLY, || {
        (r.broker.audit("credential_handout").len() > before).then_some(())
    })
    .expect("the daemon did not come back");
    r.wait_connected();
    r.p.fake.send_text(ALICE, "still there?");
    assert_eq!(text_of(&r.p.fake.wait_sent(1, Duration::from_secs(20))[0]), "back");
    let restarts = r.broker.audit("channel_restart");
    assert_eq!(restarts.len(), 1, "{restarts:?}");
    let unknown = r.broker.ctl(&["channels", "restart", "discord"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not enabled"));
}

#[test]
fn group_messages_need_a_mention() {
    let r = start(vec![Step::Text("at your service".into())]);
    r.wait_connected();
    let ignored = r.p.fake.send_group_text(-500, ALICE, "talking among ourselves");
    r.p.fake.wait_served(ignored, Duration::from_secs(10));
    r.p.fake
        .send_group_text(-500, ALICE, &format!("@{BOT_USERNAME} help me"));
    let sent = r.p.fake.wait_sent(1, Duration::from_secs(20));
    assert_eq!(sent[0]["chat_id"], json!(-500));
    assert_eq!(r.llm.requests().len(), 1, "the unaddressed message reached the model");
    assert!(r.broker.audit("access_denied").is_empty(), "ignoring is not refusing");
}

#[test]
fn chat_commands_work() {
    let r = start(vec![Step::Text("first".into())]);
    r.wait_connected();
    r.p.fake.send_text(ALICE, "remember this");
    r.p.fake.wait_sent(1, Duration::from_secs(20));
    r.p.fake.send_text(ALICE, "/help");
    let sent = r.p.fake.wait_sent(2, Duration::from_secs(20));
    assert!(text_of(&sent[1]).contains("/new"), "{}", sent[1]);
    r.p.fake.send_text(ALICE, "/new");
    let sent = r.p.fake.wait_sent(3, Duration::from_secs(20));
    assert!(text_of(&sent[2]).contains("new conversation"));
    assert!(
        r.broker.messages(&format!("telegram:{ALICE}")).is_empty(),
        "/new kept the history"
    );
    assert_eq!(r.llm.requests().len(), 1, "commands must not reach the model");
}

/// The text of the last user message of a chat request, and its image URLs.
fn last_user_message(request: &Value) -> (String, Vec<String>) {
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let Some(user) = messages.iter().rev().find(|m| m["role"] == "user") else {
        return (String::new(), Vec::new());
    };
    match &user["content"] {
        Value::String(t) => (t.clone(), Vec::new()),
        Value::Array(parts) => {
            let text = parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n");
            let images = parts
                .iter()
                .filter_map(|p| p["image_url"]["url"].as_str().map(str::to_string))
                .collect();
            (text, images)
        }
        _ => (String::new(), Vec::new()),
    }
}

/// The saved file is the user's, byte for byte, and toold wrote it: it is
/// owned by the tool user when the jail runs as one (CI).
fn assert_saved_by_toold(r: &Run<Telegram>, relative: &str, data: &[u8]) {
    use std::os::unix::fs::MetadataExt;
    let path = r.broker.workspace.join(relative);
    assert!(std::fs::read(&path).unwrap_or_default() == data, "{relative} differs");
    if let (true, Ok(Some(tool))) = (
        nix::unistd::geteuid().is_root(),
        nix::unistd::User::from_name("oxibot-tool"),
    ) {
        assert_eq!(
            std::fs::metadata(&path).unwrap().uid(),
            tool.uid.as_raw(),
            "{relative} not written by toold"
        );
    }
}

const PHOTO: &[u8] = b"\xff\xd8\xff\xe0 a tiny jpeg \x00\x01 not really";

#[test]
fn a_photo_reaches_a_vision_model_as_an_image_and_is_saved() {
    let r = start_with(
        vec![Step::Text("a cat".into())],
        |_| json!({"agents": {"defaults": {"vision": true}}}),
        json!({}),
    );
    r.wait_connected();
    r.p.fake
        .send_file(ALICE, "photo", "what is this?", "p.jpg", "image/jpeg", PHOTO);
    let sent = r.p.fake.wait_sent(1, Duration::from_secs(20));
    assert_eq!(text_of(&sent[0]), "a cat");
    let (text, images) = last_user_message(&r.llm.requests()[0].body);
    assert!(text.contains("what is this?"), "{text}");
    use base64::Engine;
    let expected = format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(PHOTO)
    );
    assert_eq!(images, vec![expected]);
    // The largest size was fetched, not the thumbnail.
    let downloads = r.p.fake.downloads();
    assert!(downloads.iter().all(|d| d.contains("/photo")), "{downloads:?}");
    let saved = text.split("saved to ").nth(1).unwrap_or_default().trim_end_matches(']');
    assert!(saved.starts_with("inbox/photo-"), "{text}");
    assert_saved_by_toold(&r, saved, PHOTO);
    // The history keeps the note, not the picture.
    let stored = r.broker.messages(&format!("telegram:{ALICE}"));
    assert!(stored[0].1.contains("inbox/photo-") && !stored[0].1.contains("base64"));
}

#[test]
fn without_vision_a_photo_is_saved_and_the_model_told_so() {
    let r = start(vec![Step::Text("noted".into())]);
    r.wait_connected();
    r.p.fake.send_file(ALICE, "photo", "", "p.jpg", "image/jpeg", PHOTO);
    r.p.fake.wait_sent(1, Duration::from_secs(20));
    let (text, images) = last_user_message(&r.llm.requests()[0].body);
    assert!(images.is_empty());
    assert!(text.contains("not set up to see images"), "{text}");
}

#[test]
fn a_voice_message_is_transcribed_through_the_configured_provider() {
    // Groq is served by the fake LLM under /groq/v1, with its own key.
    let r = start_with(
        vec![Step::Text("I will remind you".into())],
        |llm| {
            json!({"transcription": {"provider": "groq", "model": "whisper-test"},
                   "providers": {"groq": {"apiBase": format!("{llm}/groq/v1")}}})
        },
        json!({"providers": {"groq": {"apiKey": "gsk-groq-KEY-0123456789"}}}),
    );
    r.wait_connected();
    let audio = b"OggS\x00\x02 fake opus voice note";
    r.p.fake.send_file(ALICE, "voice", "", "voice.ogg", "audio/ogg", audio);
    r.p.fake.wait_sent(1, Duration::from_secs(20));
    let heard = r.llm.transcriptions();
    assert_eq!(heard.len(), 1);
    assert_eq!(
        heard[0].authorization, "Bearer gsk-groq-KEY-0123456789",
        "the groq key, and only it"
    );
    assert!(heard[0].content_type.starts_with("multipart/form-data"));
    let form = String::from_utf8_lossy(&heard[0].body);
    assert!(
        form.contains("whisper-test") && form.contains("fake opus voice note"),
        "{form}"
    );
    let (text, _) = last_user_message(&r.llm.requests()[0].body);
    assert!(text.contains(oxibot_tests::fake_llm::TRANSCRIPT), "{text}");
    assert!(!r.llm.requests()[0]
        .header("authorization")
        .unwrap_or_default()
        .contains("gsk-groq"));

    // A provider that quotes the key in its error: the error reaches the
    // model and `oxibotctl status`, the key does not.
    r.llm.push(Step::Text("sorry".into()));
    r.llm
        .fail_transcriptions("invalid api key gsk-groq-KEY-0123456789 for this project");
    r.p.fake.send_file(ALICE, "voice", "", "voice.ogg", "audio/ogg", audio);
    r.p.fake.wait_sent(2, Duration::from_secs(20));
    let (text, _) = last_user_message(&r.llm.requests()[1].body);
    assert!(text.contains("transcription failed") && text.contains("401"), "{text}");
    let status = r.broker.status().to_string();
    assert!(status.contains("transcription failed"), "{status}");
    for seen in [text, status, r.broker.log_text()] {
        assert!(!seen.contains("gsk-groq-KEY-0123456789"), "the key leaked: {seen}");
    }
}

#[test]
fn documents_are_saved_into_the_workspace_through_toold() {
    let r = start(vec![Step::Text("got it".into()), Step::Text("too big".into())]);
    r.wait_connected();
    // 3 MiB of bytes that differ everywhere: many frames each way, in order.
    let pdf: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    r.p.fake.send_file(
        ALICE,
        "document",
        "the report",
        "Q3 report.pdf",
        "application/pdf",
        &pdf,
    );
    r.p.fake.wait_sent(1, SLOW);
    let (text, _) = last_user_message(&r.llm.requests()[0].body);
    assert!(
        text.contains("the report") && text.contains("inbox/Q3_report.pdf") && text.contains("3072.0 KiB"),
        "{text}"
    );
    assert_saved_by_toold(&r, "inbox/Q3_report.pdf", &pdf);

    // More than one message may carry: not downloaded, and the model is told.
    let huge = vec![7u8; oxibot_proto::messages::MAX_FILE_BYTES + 1];
    r.p.fake
        .send_file(ALICE, "document", "", "huge.bin", "application/octet-stream", &huge);
    r.p.fake.wait_sent(2, Duration::from_secs(20));
    let (text, _) = last_user_message(&r.llm.requests()[1].body);
    assert!(
        text.contains("huge.bin") && text.contains("cannot come through chat"),
        "{text}"
    );
    assert!(!r.p.fake.downloads().iter().any(|d| d.contains("huge.bin")));
    assert!(!r.broker.workspace.join("inbox/huge.bin").exists());
}

#[test]
fn a_file_name_over_its_bound_is_cut_and_the_channel_goes_on() {
    let r = start(vec![Step::Text("got the file".into()), Step::Text("still here".into())]);
    r.wait_connected();
    // 130 two-byte letters: 260 bytes, over the 256 an attachment name may
    // carry. Before, the daemon's writer could not encode the message and
    // ended the link; restarted, it met the same update again, for ever.
    let long = "я".repeat(130);
    r.p.fake
        .send_file(ALICE, "document", "", &format!("{long}.txt"), "text/plain", b"hello");
    r.p.fake.wait_sent(1, SLOW);
    let (text, _) = last_user_message(&r.llm.requests()[0].body);
    assert!(text.contains(&"я".repeat(128)) && !text.contains(&long), "{text}");
    r.p.fake.send_text(ALICE, "are you there?");
    assert_eq!(text_of(&r.p.fake.wait_sent(2, SLOW)[1]), "still here");
    let st = r.broker.status();
    let restarts: Vec<&Value> = st["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| &p["restarts"])
        .collect();
    assert!(restarts.iter().all(|n| **n == json!(0)), "{st}");
}

#[test]
fn a_failing_platform_is_retried_with_backoff_and_reported() {
    let r = start(vec![Step::Text("back again".into())]);
    r.wait_connected();
    // teloxide itself waits 10 s after a 5xx before it reports it.
    r.p.fake.fail_polls(1);
    let st = r.broker.wait_until("the failure to be reported", SLOW, |st| {
        st["channels"][0]["connected"] == false
    });
    let error = st["channels"][0]["lastError"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("getUpdates failed"), "{st}");
    // It comes back by itself after its backoff, without a restart.
    r.p.fake.send_text(ALICE, "still there?");
    let sent = r.p.fake.wait_sent(1, SLOW);
    assert_eq!(text_of(&sent[0]), "back again");
    r.wait_connected();
    let st = r.broker.status();
    assert_eq!(st["channels"][0]["counters"]["disconnects"], 1, "{st}");
    assert_eq!(st["channels"][0]["lastError"], Value::Null, "{st}");
    assert_eq!(st["processes"][2]["restarts"], 0, "{st}");
}

#[test]
fn a_strangers_files_are_not_even_downloaded() {
    let r = start(vec![Step::Text("only for alice".into())]);
    r.wait_connected();
    r.p.fake.send_file(
        222,
        "document",
        "",
        "payload.bin",
        "application/octet-stream",
        &[1; 4096],
    );
    r.broker.wait_audit("access_denied", "user 222");
    r.p.fake
        .send_file(ALICE, "document", "", "mine.txt", "text/plain", b"hello");
    r.p.fake.wait_sent(1, Duration::from_secs(20));
    let downloads = r.p.fake.downloads();
    assert!(
        downloads.iter().all(|d| !d.contains("payload.bin")) && downloads.iter().any(|d| d.contains("mine.txt")),
        "{downloads:?}"
    );
    assert!(!r.broker.workspace.join("inbox/payload.bin").exists());
}

#[test]
fn a_file_that_arrives_while_toold_restarts_is_still_saved() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let r = start(vec![Step::Text("stored".into())]);
    r.wait_connected();
    let toold = r.broker.process_pid("toold").expect("toold pid");
    kill(Pid::from_raw(toold), Signal::SIGKILL).unwrap();
    r.p.fake
        .send_file(ALICE, "document", "", "notes.txt", "text/plain", b"keep me");
    r.p.fake.wait_sent(1, SLOW);
    let (text, _) = last_user_message(&r.llm.requests()[0].body);
    assert!(text.contains("saved to inbox/notes.txt"), "{text}");
    assert_saved_by_toold(&r, "inbox/notes.txt", b"keep me");
}

/// Telegram with `streaming` and `progress` on.
fn start_streaming(script: Vec<Step>) -> Run<Telegram> {
    Run::<Telegram>::builder(script)
        .allow([ALICE.to_string()])
        .settings(|tg| json!({"apiBase": tg.fake.base_url, "streaming": true, "progress": true}))
        .start()
        .expect("the fake Telegram always starts")
}

const STREAMED: [&str; 6] = ["The ", "answer ", "comes ", "in ", "six ", "**parts**."];
/// The whole answer as the final edit shows it (as HTML; the drafts are
/// plain text).
const SHOWN: &str = "The answer comes in six <b>parts</b>.";

fn streamed_script(gap_ms: u64) -> Vec<Step> {
    vec![
        Step::Tool {
            name: "exec".into(),
            args: json!({"command": "echo checking"}),
        },
        Step::Parts {
            parts: STREAMED.iter().map(|p| p.to_string()).collect(),
            gap: Duration::from_millis(gap_ms),
        },
    ]
}

/// The bot's messages to ALICE that the answer's text appeared in.
fn answer_messages(r: &Run<Telegram>) -> Vec<Value> {
    r.p.fake
        .sent()
        .into_iter()
        .filter(|m| m["chat_id"] == json!(ALICE) && text_of(m).starts_with("The"))
        .collect()
}

#[test]
fn a_streamed_answer_is_one_message_edited_as_it_is_written() {
    let r = start_streaming(streamed_script(600));
    r.wait_connected();
    r.p.fake.send_text(ALICE, "what is it?");
    let whole = STREAMED.concat();
    let message = poll::wait_for("the draft", SLOW, || answer_messages(&r).first().cloned());
    let mid = message["message_id"].as_i64().unwrap();
    poll::wait_for("the whole answer in the draft", SLOW, || {
        (r.p.fake.text_now(ALICE, mid).as_deref() == Some(SHOWN)).then_some(())
    });
    r.wait_outbox_drained();
    // One message for the answer: posted as a draft, edited into the answer.
    assert_eq!(answer_messages(&r).len(), 1, "{:?}", r.p.fake.sent());
    let edits: Vec<Value> =
        r.p.fake
            .edits()
            .into_iter()
            .filter(|e| e["message_id"] == json!(mid))
            .collect();
    assert!(edits.len() >= 2, "the answer was not shown as it came: {edits:?}");
    // Drafts (plain text) at most once a second; the final edit is HTML.
    let drafts: Vec<u64> = edits
        .iter()
        .filter(|e| e.get("parse_mode").is_none())
        .map(|e| e["at_ms"].as_u64().unwrap())
        .collect();
    for pair in drafts.windows(2) {
        assert!(
            pair[1] - pair[0] >= 900,
            "two draft edits {} ms apart",
            pair[1] - pair[0]
        );
    }
    assert_eq!(edits.last().unwrap()["parse_mode"], "HTML");
    // The status message lists the tool.
    let status =
        r.p.fake
            .sent()
            .into_iter()
            .find(|m| text_of(m).starts_with("Working:"))
            .expect("no status message");
    let now =
        r.p.fake
            .text_now(ALICE, status["message_id"].as_i64().unwrap())
            .unwrap();
    assert!(now.contains("exec echo checking"), "{now}");
    // The history keeps the answer once, as without streaming.
    let stored = r.broker.messages(&format!("telegram:{ALICE}"));
    assert_eq!(stored.last().unwrap().1, whole);
}

#[test]
fn a_daemon_killed_while_an_answer_streams_still_shows_it_whole_and_once() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let r = start_streaming(streamed_script(900));
    r.wait_connected();
    r.p.fake.send_text(ALICE, "what is it?");
    let message = poll::wait_for("the draft", SLOW, || answer_messages(&r).first().cloned());
    let mid = message["message_id"].as_i64().unwrap();
    let killed = r.channeld_pid();
    kill(Pid::from_raw(killed), Signal::SIGKILL).unwrap();
    poll::wait_for("the whole answer in the draft", Duration::from_secs(60), || {
        (r.p.fake.text_now(ALICE, mid).as_deref() == Some(SHOWN)).then_some(())
    });
    r.wait_outbox_drained();
    std::thread::sleep(Duration::from_millis(500));
    assert_ne!(r.channeld_pid(), killed, "the answer was not finished by a new daemon");
    let answers = answer_messages(&r);
    assert_eq!(answers.len(), 1, "the answer was posted again: {answers:?}");
}

/// The second attack review: each way a streamed answer could be lost,
/// shown twice, or take the channel down.
#[test]
fn a_refused_final_edit_posts_the_answer_and_a_slow_draft_is_still_replaced() {
    let r = start_streaming(vec![
        Step::Parts {
            parts: vec!["First ".into(), "answer.".into()],
            gap: Duration::from_millis(1500),
        },
        Step::Parts {
            parts: vec!["Second ".into(), "answer.".into()],
            gap: Duration::from_millis(300),
        },
    ]);
    r.wait_connected();
    // Telegram refuses the edit (too old, say): the answer is posted.
    r.p.fake.refuse_edits();
    r.p.fake.send_text(ALICE, "one");
    poll::wait_for("the answer posted", SLOW, || {
        r.p.fake.sent().iter().find(|m| text_of(m) == "First answer.").cloned()
    });
    r.wait_outbox_drained();
    // The draft's post takes longer than the turn: the answer still
    // replaces it (the daemon posted it, and knows it).
    let r2 = start_streaming(vec![Step::Parts {
        parts: vec!["Slow ".into(), "draft.".into()],
        gap: Duration::from_millis(300),
    }]);
    r2.wait_connected();
    r2.p.fake.slow_plain_sends(Duration::from_secs(4));
    r2.p.fake.send_text(ALICE, "two");
    let draft = poll::wait_for("the draft", SLOW, || {
        r2.p.fake
            .sent()
            .iter()
            .find(|m| text_of(m).starts_with("Slow"))
            .cloned()
    });
    let mid = draft["message_id"].as_i64().unwrap();
    poll::wait_for("the answer in the draft", SLOW, || {
        (r2.p.fake.text_now(ALICE, mid).as_deref() == Some("Slow draft.")).then_some(())
    });
    r2.wait_outbox_drained();
    let answers: Vec<Value> =
        r2.p.fake
            .sent()
            .into_iter()
            .filter(|m| text_of(m).starts_with("Slow"))
            .collect();
    assert_eq!(answers.len(), 1, "the answer was shown twice: {answers:?}");
}

/// An answer longer than a channel message (a hostile provider's) is cut
/// and says so; the channel stays up for everyone else.
#[test]
fn an_answer_too_long_for_a_chat_message_is_cut_and_the_channel_stays() {
    let long = "word ".repeat(250_000);
    let r = start_streaming(vec![Step::Parts {
        parts: vec![long.clone(), "end".into()],
        gap: Duration::from_millis(1200),
    }]);
    r.llm.always("and now?", Step::Text("still here".into()));
    r.wait_connected();
    let pid = r.channeld_pid();
    r.p.fake.send_text(ALICE, "say a lot");
    poll::wait_for("the cut answer", Duration::from_secs(60), || {
        r.p.fake
            .sent()
            .iter()
            .any(|m| text_of(m).contains("longer than a chat message can carry"))
            .then_some(())
    });
    // The next message is answered (whatever the model makes of a history
    // that long), by the same daemon.
    let before = r.p.fake.sent().len();
    r.p.fake.send_text(ALICE, "and now?");
    r.p.fake.wait_sent(before + 1, SLOW);
    assert_eq!(r.channeld_pid(), pid, "the channel daemon was restarted");
}
