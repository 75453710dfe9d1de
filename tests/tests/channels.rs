//! What every channel must do, tested once and run for all five: the real
//! broker and `oxibot-channeld` against each platform (fake servers for
//! Telegram, Discord, Slack and WhatsApp; the real Dovecot and OpenSMTPD
//! for e-mail). Platform-specific behaviour is tested in each platform's
//! own file.

use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oxibot_tests::consts::{LLM_KEY, SLOW};
use oxibot_tests::fake_llm::Step;
use oxibot_tests::platform::{Discord, Email, Platform, Slack, Telegram, WhatsApp};
use oxibot_tests::run::Run;
use serde_json::{json, Value};

const OTHER_TOKEN: &str = "other-channel-token-NOT-FOR-YOU-42";

/// Starts `P` and a broker with only `P` enabled, `alice` allowed, plus
/// `access` merged into the channel's settings.
fn start<P: Platform>(script: Vec<Step>, access: Value, accept_credential: bool) -> Option<Run<P>> {
    // Another channel's credential sits in the same secrets file; it must
    // never reach this channel's daemon.
    let other = if P::NAME == "telegram" { "discord" } else { "telegram" };
    Run::<P>::builder(script)
        .accept_credential(accept_credential)
        .settings(move |_| access)
        .secrets(json!({"channels": {other: {"token": OTHER_TOKEN}}}))
        .start()
}

/// The one-time code in the bot's answer to an unknown user.
fn pairing_code(reply: &str) -> String {
    let code: String = reply
        .split("pairing code is ")
        .nth(1)
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(6)
        .collect();
    assert_eq!(code.len(), 6, "no pairing code in {reply:?}");
    code
}

fn pairing_gives_a_code_that_the_admin_approves<P: Platform>() {
    let access = json!({"dmPolicy": "pairing"});
    let Some(r) = start::<P>(vec![Step::Text("welcome aboard".into())], access, true) else {
        return;
    };
    r.wait_connected();
    r.p.send("stranger", "hello?");
    let reply = r.p.wait_replies("stranger", 1, SLOW).remove(0);
    let code = pairing_code(&reply);
    assert!(reply.contains(&format!("oxibotctl pairing approve {code}")), "{reply}");
    assert!(r.llm.requests().is_empty(), "an unpaired message reached the model");

    let list: Value = serde_json::from_slice(&r.broker.ctl(&["--json", "pairing", "list"]).stdout).unwrap();
    assert_eq!(list["pairings"][0]["code"], code.as_str(), "{list}");
    assert_eq!(list["pairings"][0]["sender"], r.p.user("stranger").as_str());
    assert_eq!(list["pairings"][0]["status"], "pending");
    assert!(!r.broker.ctl(&["pairing", "approve", "NOPE42"]).status.success());
    let approve = r.broker.ctl(&["pairing", "approve", &code.to_lowercase()]);
    assert!(approve.status.success(), "{approve:?}");
    let replies = r.p.wait_replies("stranger", 2, SLOW);
    assert!(replies[1].contains("approved"), "{replies:?}");

    r.p.send("stranger", "now?");
    let replies = r.p.wait_replies("stranger", 3, SLOW);
    assert_eq!(replies[2], "welcome aboard");
    assert_eq!(r.broker.audit("pairing_requested").len(), 1);
    // A denied code is gone for good.
    r.p.send("mallory", "me too");
    let code = pairing_code(&r.p.wait_replies("mallory", 1, SLOW)[0]);
    assert!(r.broker.ctl(&["pairing", "deny", &code]).status.success());
    assert!(!r.broker.ctl(&["pairing", "approve", &code]).status.success());
}

fn a_long_reply_is_split_at_the_limit<P: Platform>() {
    // Multi-byte words and a code block in the middle: no part may cut
    // either.
    let code_block: String = (0..40).map(|i| format!("let x{i} = {i};\n")).collect();
    let words = |r: std::ops::Range<usize>| r.map(|i| format!("wé{i} ")).collect::<String>();
    let long = format!("{}\n\n```\n{code_block}```\n\n{}", words(0..1500), words(1500..3000));
    let Some(r) = start::<P>(vec![Step::Text(long)], json!({}), true) else {
        return;
    };
    r.wait_connected();
    r.p.send("alice", "write a lot");
    let expected = if P::LIMIT.is_some() { 2 } else { 1 };
    r.p.wait_replies("alice", expected, SLOW);
    r.wait_outbox_drained();
    let parts = r.p.replies("alice");
    match P::LIMIT {
        Some(limit) => {
            assert!(parts.len() >= 5, "{} parts", parts.len());
            for part in &parts {
                assert!(
                    part.chars().count() <= limit,
                    "{} chars > {limit}",
                    part.chars().count()
                );
                assert!(P::code_blocks_whole(part), "a part cuts a code block:\n{part}");
            }
        }
        None => assert_eq!(parts.len(), 1, "split where the platform has no limit"),
    }
    let joined = parts.join(" ") + " ";
    let mut at = 0;
    for i in 0..3000 {
        // The word, then whitespace (Markdown drops a paragraph's trailing space).
        let word = format!("wé{i}");
        let found = joined[at..]
            .match_indices(&word)
            .find(|(k, _)| joined[at + k + word.len()..].starts_with(char::is_whitespace))
            .map(|(k, _)| k)
            .unwrap_or_else(|| panic!("{word:?} lost or out of order"));
        at += found;
    }
    assert!(joined.contains("let x39 = 39;"));
}

fn a_reply_pending_while_the_daemon_is_down_is_delivered_after_the_restart<P: Platform>() {
    let slow = Step::Delay(Duration::from_secs(2), Box::new(Step::Text("worth the wait".into())));
    let Some(r) = start::<P>(vec![slow], json!({}), true) else {
        return;
    };
    r.wait_connected();
    r.p.send("alice", "slow question");
    r.llm.wait_requests(1, SLOW);
    kill(Pid::from_raw(r.channeld_pid()), Signal::SIGKILL).unwrap();
    let replies = r.p.wait_replies("alice", 1, SLOW);
    assert_eq!(replies[0], "worth the wait");
    r.wait_outbox_drained();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(r.p.replies("alice").len(), 1);
    assert!(r.process()["restarts"].as_u64() >= Some(1), "{}", r.process());
    // The counters saw it all, across the restart. The platform may show
    // the reply a moment before the daemon's report of it reaches the
    // broker (seen on a loaded machine), so the count is waited for; a
    // report that never comes fails here with the broker's log.
    r.broker
        .wait_until("the delivery counted", Duration::from_secs(10), |st| {
            st["channels"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["name"] == P::NAME))
                .is_some_and(|c| c["counters"]["sent"] == 1)
        });
    let counters = r.channel_status()["counters"].clone();
    assert_eq!(counters["received"], 1, "{counters}");
    assert_eq!(counters["sent"], 1, "{counters}");
    assert!(counters["disconnects"].as_u64() >= Some(1), "{counters}");
    let text = String::from_utf8_lossy(&r.broker.ctl(&["status"]).stdout).to_string();
    assert!(text.contains("received 1, refused 0, sent 1"), "{text}");
}

fn killed_before_the_ack_the_message_is_answered_exactly_once<P: Platform>() {
    let script = vec![
        Step::Text("first".into()),
        Step::Text("once".into()),
        Step::Text("twice!".into()),
    ];
    let Some(r) = start::<P>(script, json!({}), true) else {
        return;
    };
    r.wait_connected();
    // One exchange first: the chat is known to the broker.
    r.p.send("alice", "hello");
    r.p.wait_replies("alice", 1, SLOW);
    r.wait_outbox_drained();
    let old = r.channeld_pid();
    let broker = Pid::from_raw(r.broker.child.id() as i32);
    // Freeze the broker: the daemon gets the message but never its ack.
    oxibot_tests::poll::stop_process(broker.as_raw());
    let id = r.p.send("alice", "exactly once please");
    r.p.wait_fetched(&id);
    assert_ne!(r.p.committed(&id), Some(true), "committed before the broker's ack");
    kill(Pid::from_raw(old), Signal::SIGKILL).unwrap();
    kill(broker, Signal::SIGCONT).unwrap();
    let replies = r.p.wait_replies("alice", 2, SLOW);
    std::thread::sleep(Duration::from_secs(2));
    let all = r.p.replies("alice");
    assert_eq!(all.len(), 2, "answered more than once: {all:?}");
    assert_eq!(replies[1], "once");
    assert_eq!(r.llm.requests().len(), 2);
    assert_ne!(r.p.committed(&id), Some(false), "never committed after the answer");
    assert_ne!(r.process()["pid"], json!(old));
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

fn the_daemon_holds_only_its_own_credential<P: Platform>() {
    if !nix::unistd::geteuid().is_root() {
        return oxibot_tests::harness::skip("reading another process's memory needs root (CI runs as root)");
    }
    let Some(r) = start::<P>(vec![Step::Text("ok".into())], json!({}), true) else {
        return;
    };
    r.wait_connected();
    r.p.send("alice", "hi");
    r.p.wait_replies("alice", 1, SLOW);
    let pid = r.channeld_pid();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let memory = memory_of(pid);
    assert!(memory.len() > 1 << 20, "read only {} bytes of memory", memory.len());
    for secret in [LLM_KEY, OTHER_TOKEN] {
        assert!(
            !contains(&environ, secret) && !contains(&cmdline, secret),
            "{secret} in environ/cmdline"
        );
        assert!(!contains(&memory, secret), "{secret} is in the channel daemon's memory");
    }
    // The scan can see what is there: its own credential is in memory,
    // though never in its environment or arguments.
    let own = r.p.credential_marker();
    assert!(contains(&memory, &own), "the memory scan is blind");
    assert!(!contains(&environ, &own) && !contains(&cmdline, &own));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    // Its own user: not root, not the broker's, not another channel's.
    let user = format!("oxibot-{}", P::NAME);
    let own = nix::unistd::User::from_name(&user)
        .unwrap()
        .unwrap_or_else(|| panic!("user {user} does not exist (scripts/test.sh creates it)"));
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap_or_default();
    assert!(
        uid_line.split_whitespace().skip(1).all(|u| u == own.uid.to_string()),
        "{uid_line}"
    );
    assert!(
        status.contains("NoNewPrivs:\t1") && status.contains("Seccomp:\t2"),
        "{status}"
    );
}

fn malformed_platform_payloads_are_skipped<P: Platform>() {
    let Some(r) = start::<P>(vec![Step::Text("still fine".into())], json!({}), true) else {
        return;
    };
    r.wait_connected();
    r.p.send_malformed();
    r.p.send("alice", "after the junk");
    let replies = r.p.wait_replies("alice", 1, SLOW);
    assert_eq!(replies[0], "still fine");
    assert_eq!(r.llm.requests().len(), 1, "junk reached the model");
    assert_eq!(r.process()["restarts"], 0, "the daemon crashed: {}", r.process());
}

fn a_rejected_credential_stops_the_channel_with_a_clear_error<P: Platform>() {
    let Some(r) = start::<P>(vec![], json!({}), false) else {
        return;
    };
    r.broker.wait_until("the channel to stop", SLOW, |_| {
        r.process()["lastExit"]
            .as_str()
            .is_some_and(|e| e.contains("configuration error"))
    });
    let out = String::from_utf8_lossy(&r.broker.ctl(&["status"]).stdout).to_string();
    assert!(out.contains(r.p.rejection_words()), "{out}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        r.process()["restarts"],
        0,
        "a refused credential must not be retried forever: {}",
        r.process()
    );
}

macro_rules! every_channel {
    ($($test:ident),* $(,)?) => {
        every_channel!(@platform telegram, Telegram, $($test),*);
        every_channel!(@platform discord, Discord, $($test),*);
        every_channel!(@platform slack, Slack, $($test),*);
        every_channel!(@platform email, Email, $($test),*);
        every_channel!(@platform whatsapp, WhatsApp, $($test),*);
    };
    (@platform $module:ident, $platform:ident, $($test:ident),*) => {
        mod $module {
            use super::$platform;
            $(
                #[test]
                fn $test() {
                    super::$test::<$platform>();
                }
            )*
        }
    };
}

every_channel!(
    pairing_gives_a_code_that_the_admin_approves,
    a_long_reply_is_split_at_the_limit,
    a_reply_pending_while_the_daemon_is_down_is_delivered_after_the_restart,
    killed_before_the_ack_the_message_is_answered_exactly_once,
    the_daemon_holds_only_its_own_credential,
    malformed_platform_payloads_are_skipped,
    a_rejected_credential_stops_the_channel_with_a_clear_error,
);
