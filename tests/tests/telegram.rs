//! Telegram end to end: the fake Bot API ↔ oxibot-channeld (teloxide) ↔
//! broker ↔ fake LLM, with real processes and sockets.

use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
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

    fn channeld_pid(&self) -> i32 {
        self.broker.process_pid("channel:telegram").expect("channeld pid")
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
fn pairing_gives_a_code_that_the_admin_approves() {
    let s = start(
        vec![Step::Text("welcome aboard".into())],
        json!({"dmPolicy": "pairing"}),
    );
    s.wait_connected();
    s.tg.send_text(333, "hello?");
    let sent = s.tg.wait_sent(1, Duration::from_secs(20));
    let text = text_of(&sent[0]);
    let code = text.split("pairing code is ").nth(1).unwrap_or_default()[..6].to_string();
    assert!(text.contains(&format!("oxibotctl pairing approve {code}")), "{text}");
    assert!(s.llm.requests().is_empty());

    let list: Value = serde_json::from_slice(&s.broker.ctl(&["--json", "pairing", "list"]).stdout).unwrap();
    assert_eq!(list["pairings"][0]["code"], code.as_str());
    assert_eq!(list["pairings"][0]["sender"], "333");
    assert_eq!(list["pairings"][0]["status"], "pending");
    assert!(!s.broker.ctl(&["pairing", "approve", "NOPE42"]).status.success());
    assert!(s
        .broker
        .ctl(&["pairing", "approve", &code.to_lowercase()])
        .status
        .success());
    let sent = s.tg.wait_sent(2, Duration::from_secs(10));
    assert!(text_of(&sent[1]).contains("approved"), "{}", sent[1]);

    s.tg.send_text(333, "now?");
    let sent = s.tg.wait_sent(3, Duration::from_secs(20));
    assert_eq!(text_of(&sent[2]), "welcome aboard");
    assert_eq!(s.broker.audit("pairing_requested").len(), 1);
}

#[test]
fn a_long_reply_is_split_at_the_limit() {
    let long: String = (0..2500).map(|i| format!("w{i} ")).collect();
    let s = start(vec![Step::Text(long.clone())], json!({}));
    s.wait_connected();
    s.tg.send_text(ALICE, "write a lot");
    let sent = s.tg.wait_sent(3, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    let sent_all = s.tg.sent();
    assert_eq!(sent_all.len(), sent.len().max(sent_all.len()));
    let mut joined = String::new();
    for m in &sent_all {
        let t = text_of(m);
        assert!(t.chars().count() <= 4096, "{} chars", t.chars().count());
        joined.push_str(&t);
        joined.push(' ');
    }
    for i in [0, 1234, 2499] {
        assert!(joined.contains(&format!("w{i} ")), "w{i} lost");
    }
    // Only the first part is threaded under the question.
    assert!(sent_all[0].get("reply_parameters").is_some());
    assert!(sent_all[1].get("reply_parameters").is_none());
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

#[test]
fn killed_before_the_ack_the_message_is_answered_exactly_once() {
    let s = start(vec![Step::Text("once".into()), Step::Text("twice!".into())], json!({}));
    s.wait_connected();
    let old = s.channeld_pid();
    let broker = Pid::from_raw(s.broker.child.id() as i32);
    // Freeze the broker: the channel daemon can fetch the update but never
    // gets its ack.
    kill(broker, Signal::SIGSTOP).unwrap();
    let update = s.tg.send_text(ALICE, "exactly once please");
    s.tg.wait_served(update, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(200));
    kill(Pid::from_raw(old), Signal::SIGKILL).unwrap();
    kill(broker, Signal::SIGCONT).unwrap();
    // The restarted daemon fetches the same update again (offset not moved).
    s.broker
        .wait_until("channeld restarted", Duration::from_secs(20), |st| {
            st["processes"].as_array().is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["name"] == "channel:telegram" && p["pid"].as_i64().is_some_and(|p| p != old as i64))
            })
        });
    let sent = s.tg.wait_sent(1, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(1));
    let sent_all = s.tg.sent();
    assert_eq!(sent_all.len(), 1, "answered {} times: {sent_all:?}", sent_all.len());
    assert_eq!(text_of(&sent[0]), "once");
    assert_eq!(s.llm.requests().len(), 1);
    let served = s.tg.polls().iter().filter(|(_, ids)| ids.contains(&update)).count();
    assert!(served >= 2, "the update was not redelivered ({served})");
}

#[test]
fn a_reply_pending_while_the_daemon_is_down_is_delivered_after_the_restart() {
    let s = start(
        vec![Step::Delay(
            Duration::from_secs(2),
            Box::new(Step::Text("worth the wait".into())),
        )],
        json!({}),
    );
    s.wait_connected();
    s.tg.send_text(ALICE, "slow question");
    s.llm.wait_requests(1, Duration::from_secs(20));
    kill(Pid::from_raw(s.channeld_pid()), Signal::SIGKILL).unwrap();
    let sent = s.tg.wait_sent(1, Duration::from_secs(30));
    assert_eq!(text_of(&sent[0]), "worth the wait");
    s.broker.wait_until("outbox drained", Duration::from_secs(10), |st| {
        st["queues"]["outboxPending"] == 0
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(s.tg.sent().len(), 1);
}

/// Every readable region of a process's memory.
fn memory_of(pid: i32) -> Vec<u8> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut out = Vec::new();
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let (range, perms) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if !perms.starts_with('r') || line.contains("[vvar]") || line.contains("[vsyscall]") {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else { continue };
        let (a, b) = (u64::from_str_radix(a, 16).unwrap(), u64::from_str_radix(b, 16).unwrap());
        let mut buf = vec![0u8; (b - a) as usize];
        if mem.seek(SeekFrom::Start(a)).is_ok() && mem.read_exact(&mut buf).is_ok() {
            out.extend_from_slice(&buf);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn the_channel_daemon_holds_only_its_own_credential() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: reading another process's memory needs root (CI runs as root)");
        return;
    }
    let s = start(vec![Step::Text("ok".into())], json!({}));
    s.wait_connected();
    s.tg.send_text(ALICE, "hi");
    s.tg.wait_sent(1, Duration::from_secs(20));
    let pid = s.channeld_pid();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let memory = memory_of(pid);
    assert!(memory.len() > 1 << 20, "read only {} bytes of memory", memory.len());
    for secret in [LLM_KEY, DISCORD_TOKEN] {
        assert!(
            !contains(&environ, secret) && !contains(&cmdline, secret),
            "{secret} in environ/cmdline"
        );
        assert!(!contains(&memory, secret), "{secret} is in the channel daemon's memory");
    }
    // The scan can see what is there: its own token is in memory.
    assert!(contains(&memory, TOKEN), "the memory scan is blind");
    assert!(!contains(&environ, TOKEN) && !contains(&cmdline, TOKEN));
    // It runs under its own user when that exists (CI creates it).
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    if let Ok(Some(chan)) = nix::unistd::User::from_name("oxibot-chan") {
        let uid_line = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .unwrap_or_default()
            .to_string();
        assert!(
            uid_line.split_whitespace().skip(1).all(|u| u == chan.uid.to_string()),
            "{uid_line}"
        );
    }
    // And its sandbox is on.
    assert!(
        status.contains("NoNewPrivs:\t1") && status.contains("Seccomp:\t2"),
        "{status}"
    );
}

#[test]
fn malformed_platform_payloads_are_skipped() {
    let s = start(vec![Step::Text("still fine".into())], json!({}));
    s.wait_connected();
    let id = s.tg.next_update_id();
    s.tg.inject_raw(json!({"update_id": id, "mystery_kind": {"weird": [1, 2, {"x": null}]}}));
    s.tg.send_text(ALICE, "after the junk");
    let sent = s.tg.wait_sent(1, Duration::from_secs(20));
    assert_eq!(text_of(&sent[0]), "still fine");
    let st = s.broker.status();
    let p = st["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "channel:telegram")
        .unwrap()
        .clone();
    assert_eq!(p["restarts"], 0, "the daemon crashed: {p}");
}

#[test]
fn a_rejected_token_stops_the_channel_with_a_clear_error() {
    let s = start_with_token(vec![], json!({}), "999:the-real-token");
    s.broker.wait_until("channel stopped", Duration::from_secs(20), |st| {
        st["processes"].as_array().is_some_and(|ps| {
            ps.iter().any(|p| {
                p["name"] == "channel:telegram"
                    && p["lastExit"]
                        .as_str()
                        .is_some_and(|e| e.contains("configuration error"))
            })
        })
    });
    let st = s.broker.status();
    let ch = st["channels"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "telegram"))
        .unwrap_or_else(|| panic!("no telegram channel status: {st}\n{}", s.broker.log_text()))
        .clone();
    assert!(ch["lastError"].as_str().unwrap_or_default().contains("401"), "{ch}");
    let out = String::from_utf8_lossy(&s.broker.ctl(&["status"]).stdout).to_string();
    assert!(out.contains("401 Unauthorized"), "{out}");
    std::thread::sleep(Duration::from_secs(1));
    let p = st["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "channel:telegram")
        .unwrap()
        .clone();
    assert_eq!(p["restarts"], 0, "a bad token must not be retried forever: {p}");
}
