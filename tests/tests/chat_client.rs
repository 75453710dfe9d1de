//! `oxibotctl chat` as a person uses it: in a pseudo-terminal, against a
//! real broker and the fake LLM (streaming as the providers stream).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use oxibot_tests::fake_llm::{FakeLlm, Step};
use oxibot_tests::harness::{bin, secrets, Broker};
use oxibot_tests::poll;
use rexpect::session::PtySession;
use serde_json::json;

/// Long enough for a debug build on a busy machine.
const EXPECT_MS: u64 = 30_000;

fn client(broker: &Broker, state: &Path, extra: &[&str]) -> PtySession {
    let mut cmd = Command::new(bin("oxibotctl"));
    cmd.arg("--socket")
        .arg(broker.ctl_socket())
        .env("OXIBOT_CONFIG", broker.config_path())
        .env("XDG_STATE_HOME", state)
        .env("TERM", "xterm-256color")
        .arg("chat")
        .args(extra);
    let mut pty = rexpect::session::spawn_command(cmd, Some(EXPECT_MS)).unwrap();
    expect(&mut pty, "OxiBot chat (");
    pty
}

/// Waits for the prompt: typing before it would meet a terminal not yet
/// in the editor's hands (its Enter would arrive as a newline).
fn prompt(pty: &mut PtySession) {
    expect(pty, "you> ");
}

/// Writes all of `text`: a pseudo-terminal takes a few KiB at a time.
fn send_all(pty: &mut PtySession, text: &str) {
    let mut rest = text.as_bytes();
    while !rest.is_empty() {
        let chunk = &rest[..rest.len().min(1024)];
        let n = pty.send(std::str::from_utf8(chunk).unwrap()).unwrap();
        pty.flush().unwrap();
        rest = &rest[n..];
        if n == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Types a line and presses Enter (a terminal sends CR).
fn type_line(pty: &mut PtySession, line: &str) {
    pty.send(line).unwrap();
    pty.send("\r").unwrap();
    pty.flush().unwrap();
}

/// Waits for `needle`; on failure, says what came instead (its end).
fn expect(pty: &mut PtySession, needle: &str) {
    if let Err(e) = pty.exp_string(needle) {
        let text = e.to_string();
        let tail: String = text
            .chars()
            .rev()
            .take(600)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        panic!("waited for {needle:?}: …{tail}");
    }
}

fn parts(parts: &[&str], gap_ms: u64) -> Step {
    Step::Parts {
        parts: parts.iter().map(|p| p.to_string()).collect(),
        gap: Duration::from_millis(gap_ms),
    }
}

#[test]
fn slash_commands_stay_out_of_the_model_and_answers_stream_with_tool_lines() {
    let llm = FakeLlm::start(vec![]);
    let broker = Broker::start(&llm.base_url, json!({}), secrets(json!({})));
    let state = tempfile::tempdir().unwrap();
    let mut chat = client(&broker, state.path(), &[]);
    prompt(&mut chat);

    type_line(&mut chat, "/help");
    expect(&mut chat, "/model");
    expect(&mut chat, "you> ");
    type_line(&mut chat, "/status");
    expect(&mut chat, "Model:");
    expect(&mut chat, "you> ");
    type_line(&mut chat, "/model");
    expect(&mut chat, "agents.defaults.model");
    expect(&mut chat, "you> ");
    type_line(&mut chat, "/hlep");
    expect(&mut chat, "no such command");
    expect(&mut chat, "you> ");
    assert!(llm.requests().is_empty(), "a command reached the model");

    // A tool line, then the answer in parts as the provider sent them.
    llm.push(Step::Tool {
        name: "exec".into(),
        args: json!({"command": "echo from the jail"}),
    });
    llm.push(parts(&["Hel", "lo ", "wor", "ld"], 400));
    type_line(&mut chat, "say hello");
    // (rexpect reads bytes as Latin-1: the gear before it does not match.)
    expect(&mut chat, " exec echo from the jail");
    expect(&mut chat, "oxibot> Hel");
    let first = Instant::now();
    expect(&mut chat, "ld");
    // Three gaps of 400 ms lie between the first part and the last: they
    // were shown as they came, not at the end.
    assert!(
        first.elapsed() >= Duration::from_millis(800),
        "the parts came together after {:?}",
        first.elapsed()
    );
    expect(&mut chat, "you> ");
    // The stored turn is the whole answer, as without streaming.
    let stored = broker.messages("console:default");
    assert_eq!(stored.last().map(|m| m.1.as_str()), Some("Hello world"), "{stored:?}");
    assert!(llm.requests().iter().all(|r| r.body["stream"] == json!(true)));

    // /new forgets the conversation, without the model.
    let asked = llm.requests().len();
    type_line(&mut chat, "/new");
    expect(&mut chat, "Started a new conversation.");
    expect(&mut chat, "you> ");
    assert!(broker.messages("console:default").is_empty());
    assert_eq!(llm.requests().len(), asked);

    // `agent` speaks in the same console chat by default.
    llm.push(Step::Text("agent answer".into()));
    let out = broker.ctl(&["agent", "-m", "from agent"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stored = broker.messages("console:default");
    assert_eq!(stored.len(), 2, "{stored:?}");

    chat.send_control('d').unwrap();
    chat.exp_eof().unwrap();
}

#[test]
fn a_cut_answer_and_an_empty_one_say_so() {
    let llm = FakeLlm::start(vec![Step::Cut("The first half of".into()), Step::Text(String::new())]);
    let broker = Broker::start(&llm.base_url, json!({}), secrets(json!({})));
    let state = tempfile::tempdir().unwrap();
    let mut chat = client(&broker, state.path(), &[]);
    prompt(&mut chat);
    type_line(&mut chat, "a long story");
    expect(&mut chat, "The first half of");
    expect(&mut chat, "cut off at the token limit");
    expect(&mut chat, "you> ");
    type_line(&mut chat, "and?");
    expect(&mut chat, "empty answer");
    expect(&mut chat, "you> ");
}

#[test]
fn ctrl_c_stops_a_slow_answer_and_the_client_stays() {
    let llm = FakeLlm::start(vec![
        Step::Delay(Duration::from_secs(20), Box::new(Step::Text("too late".into()))),
        Step::Text("quick answer".into()),
    ]);
    let broker = Broker::start(&llm.base_url, json!({}), secrets(json!({})));
    let state = tempfile::tempdir().unwrap();
    let mut chat = client(&broker, state.path(), &[]);
    prompt(&mut chat);
    type_line(&mut chat, "take your time");
    expect(&mut chat, "thinking");
    llm.wait_requests(1, Duration::from_secs(10));
    chat.send_control('c').unwrap();
    expect(&mut chat, "(stopped)");
    expect(&mut chat, "you> ");
    // Ctrl-C at the prompt clears the line; the client is still there.
    chat.send("half a line").unwrap();
    chat.send_control('c').unwrap();
    prompt(&mut chat);
    type_line(&mut chat, "next");
    expect(&mut chat, "quick answer");
    expect(&mut chat, "you> ");
    let asked = llm.requests_with("next");
    assert_eq!(asked.len(), 1);
    assert!(!asked[0].body.to_string().contains("half a line"));
}

#[test]
fn the_client_waits_out_a_broker_restart_and_sends_nothing_twice() {
    let llm = FakeLlm::start(vec![Step::Text("before".into())]);
    let mut broker = Broker::start(&llm.base_url, json!({}), secrets(json!({})));
    let state = tempfile::tempdir().unwrap();
    let mut chat = client(&broker, state.path(), &[]);
    prompt(&mut chat);
    type_line(&mut chat, "one");
    expect(&mut chat, "before");
    expect(&mut chat, "you> ");

    // At the prompt.
    broker.kill9_and_restart();
    expect(&mut chat, "reconnected");
    llm.push(Step::Text("after the restart".into()));
    type_line(&mut chat, "two");
    expect(&mut chat, "after the restart");
    expect(&mut chat, "you> ");

    // In the middle of an answer: the message is not sent again.
    llm.push(Step::Delay(
        Duration::from_secs(30),
        Box::new(Step::Text("never".into())),
    ));
    type_line(&mut chat, "three");
    poll::wait_for("the slow request", Duration::from_secs(10), || {
        (!llm.requests_with("three").is_empty()).then_some(())
    });
    broker.kill9_and_restart();
    expect(&mut chat, "your message is not sent again");
    expect(&mut chat, "you> ");
    llm.push(Step::EchoUser);
    type_line(&mut chat, "four");
    expect(&mut chat, "re: four");
    assert_eq!(llm.requests_with("three").len(), 1, "a message was sent twice");
}

#[test]
fn a_long_paste_arrives_whole_and_history_is_kept() {
    let llm = FakeLlm::start(vec![Step::Text("got it".into()), Step::Text("again".into())]);
    let broker = Broker::start(&llm.base_url, json!({}), secrets(json!({})));
    let state = tempfile::tempdir().unwrap();
    let mut chat = client(&broker, state.path(), &["--raw"]);
    prompt(&mut chat);
    // 20,000 characters on two lines, pasted as a terminal pastes.
    let line: String = (0..10_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let pasted = format!("{line}\n{line}");
    send_all(&mut chat, &format!("\x1b[200~{pasted}\x1b[201~"));
    type_line(&mut chat, "");
    expect(&mut chat, "got it");
    expect(&mut chat, "you> ");
    let asked = llm.requests();
    assert_eq!(asked.len(), 1, "the paste became more than one turn");
    let last_user = asked[0].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(last_user.len(), 20_001);
    assert_eq!(last_user, pasted);
    chat.send_control('d').unwrap();
    chat.exp_eof().unwrap();

    // The next client has the line in its history (private to the user).
    let history = state.path().join("oxibot/chat-history");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&history).unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "the history is readable by others: {mode:o}");
    let mut chat = client(&broker, state.path(), &["--raw"]);
    prompt(&mut chat);
    type_line(&mut chat, "\x1b[A");
    expect(&mut chat, "again");
    assert_eq!(llm.requests().len(), 2);
    assert!(llm.requests()[1].body.to_string().contains(&line));
}

#[test]
fn later_messages_for_the_console_show_in_the_open_client_and_wait_for_the_next() {
    let llm = FakeLlm::start(vec![
        Step::Tool {
            name: "spawn".into(),
            args: json!({"task": "count the sheep", "label": "sheep"}),
        },
        Step::Text("I started it".into()),
    ]);
    // Only the task's own requests say this.
    llm.route(
        "You run as a background task",
        vec![Step::Text("there are 42 sheep".into())],
    );
    llm.always("ring the bell", Step::Text("the bell rang".into()));
    let broker = Broker::start(&llm.base_url, json!({}), secrets(json!({})));
    let state = tempfile::tempdir().unwrap();
    let mut chat = client(&broker, state.path(), &[]);
    prompt(&mut chat);
    type_line(&mut chat, "count them in the background");
    expect(&mut chat, "I started it");
    // The task's result comes while the client waits at its prompt.
    expect(&mut chat, "there are 42 sheep");
    chat.send_control('d').unwrap();
    chat.exp_eof().unwrap();

    // A job for the console while no client is open waits for the next.
    let out = broker.ctl(&[
        "--json",
        "cron",
        "add",
        "--channel",
        "console",
        "--schedule",
        "every 1 hour",
        "-m",
        "ring the bell",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let jobs: serde_json::Value = serde_json::from_slice(&broker.ctl(&["--json", "cron", "list"]).stdout).unwrap();
    let id = jobs["jobs"][0]["id"].to_string();
    let out = broker.ctl(&["cron", "run", &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    poll::wait_for("the job's message in the outbox", Duration::from_secs(20), || {
        let db = broker.db();
        let n: i64 = db
            .query_row(
                "SELECT COUNT(*) FROM outbox WHERE channel = 'console' AND text LIKE '%bell rang%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (n == 1).then_some(())
    });
    let mut chat = client(&broker, state.path(), &[]);
    expect(&mut chat, "the bell rang");
    chat.send_control('d').unwrap();
    chat.exp_eof().unwrap();
    // Shown once: the next client has nothing waiting.
    let pending: i64 = broker
        .db()
        .query_row(
            "SELECT COUNT(*) FROM outbox WHERE channel = 'console' AND status = 'pending'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(pending, 0);
}

/// The same script, asked plainly (`agent`) and streamed (`chat`): the
/// stored turns are the same, with OpenAI's and Anthropic's streams.
fn streamed_and_plain_store_the_same(anthropic: bool) {
    let script = || {
        vec![
            Step::Tool {
                name: "write_file".into(),
                args: json!({"path": "notes/s.txt", "content": "streamed \"quotes\" and ünïcode"}),
            },
            Step::Tool {
                name: "read_file".into(),
                args: json!({"path": "notes/s.txt"}),
            },
            Step::EchoLastTool,
        ]
    };
    let llm = FakeLlm::start(script());
    let (patch, secret) = match anthropic {
        true => (
            json!({"agents": {"defaults": {"model": "claude-test", "provider": "anthropic"}},
                   "providers": {"anthropic": {"apiBase": llm.base_url}}}),
            json!({"providers": {"anthropic": {"apiKey": "sk-ant-TEST-0123456789"}}}),
        ),
        false => (json!({}), json!({})),
    };
    let broker = Broker::start(&llm.base_url, patch, secrets(secret));
    broker.agent("plain:1", "save and read").unwrap();
    for step in script() {
        llm.push(step);
    }
    let state = tempfile::tempdir().unwrap();
    let mut chat = client(&broker, state.path(), &["--raw"]);
    prompt(&mut chat);
    type_line(&mut chat, "save and read");
    expect(&mut chat, " write_file notes/s.txt");
    expect(&mut chat, " read_file notes/s.txt");
    expect(&mut chat, "tool said: streamed");
    prompt(&mut chat);
    assert!(llm.requests()[3..].iter().all(|r| r.body["stream"] == json!(true)));
    // Call ids are the fake's request numbers: the rest must match.
    let shape = |session: &str| -> Vec<(String, String, Option<String>)> {
        broker
            .messages(session)
            .into_iter()
            .map(|(role, content, calls, _)| {
                let calls = calls.map(|c| {
                    let mut v: serde_json::Value = serde_json::from_str(&c).unwrap();
                    for call in v.as_array_mut().into_iter().flatten() {
                        call.as_object_mut().unwrap().remove("id");
                    }
                    v.to_string()
                });
                (role, content, calls)
            })
            .collect()
    };
    let plain = shape("plain:1");
    assert_eq!(plain.len(), 6, "{plain:?}");
    assert_eq!(shape("console:default"), plain);
}

#[test]
fn openai_streamed_turns_store_what_plain_turns_store() {
    streamed_and_plain_store_the_same(false);
}

#[test]
fn anthropic_streamed_turns_store_what_plain_turns_store() {
    streamed_and_plain_store_the_same(true);
}

// A hostile provider, seen through the chat client (the attack review's
// findings, each a test).

/// A tool name that grows piece by piece is bounded like the text: the
/// turn fails, and nothing of it is stored.
#[test]
fn a_stream_cannot_grow_a_tool_name_without_bound() {
    let piece = "A".repeat(64 * 1024);
    let event =
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"name": piece}}]}}]});
    let mut lines = vec![event.to_string(); 300];
    lines.push("[DONE]".into());
    let llm = FakeLlm::start(vec![Step::RawStream(lines)]);
    let broker = Broker::start(
        &llm.base_url,
        json!({"agents": {"defaults": {"maxRetries": 0}}}),
        secrets(json!({})),
    );
    let state = tempfile::tempdir().unwrap();
    let mut chat = client(&broker, state.path(), &["--raw"]);
    prompt(&mut chat);
    type_line(&mut chat, "hello");
    expect(&mut chat, "passed 256 bytes");
    prompt(&mut chat);
    let stored: usize = broker
        .messages("console:default")
        .iter()
        .map(|m| m.1.len() + m.2.as_ref().map_or(0, String::len))
        .sum();
    assert!(stored < 10_000, "{stored} bytes stored");
}

/// A key split across two streamed pieces is held back until it is whole,
/// then shown redacted; a provider's error that echoes it is scrubbed
/// before it is cut short.
#[test]
fn a_secret_never_reaches_the_terminal_whole_or_in_part() {
    let key = oxibot_tests::consts::LLM_KEY;
    let (a, b) = key.split_at(key.len() / 2);
    let echo = format!("{}Bearer {key}", "p".repeat(261));
    let llm = FakeLlm::start(vec![
        parts(&["the key is ", a, b, " and that is all"], 50),
        Step::RawStream(vec![json!({"error": {"message": echo}}).to_string()]),
    ]);
    let broker = Broker::start(
        &llm.base_url,
        json!({"agents": {"defaults": {"maxRetries": 0}}}),
        secrets(json!({})),
    );
    let state = tempfile::tempdir().unwrap();
    let mut chat = client(&broker, state.path(), &["--raw"]);
    prompt(&mut chat);
    type_line(&mut chat, "tell me");
    let seen = chat.exp_string("that is all").unwrap();
    prompt(&mut chat);
    assert!(seen.contains("[REDACTED]"), "{seen}");
    assert!(
        !seen.contains(a) && !seen.contains(b),
        "a half of the key reached the terminal: {seen}"
    );
    type_line(&mut chat, "again");
    let seen = chat.exp_string("you> ").unwrap();
    assert!(seen.contains("could not answer"), "{seen}");
    assert!(
        !seen.contains(&key[..10]),
        "a prefix of the key reached the terminal: {seen}"
    );
}
