//! WhatsApp end to end: fake bridge ↔ oxibot-channeld (tokio-tungstenite)
//! ↔ broker ↔ fake LLM.

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oxibot_tests::fake_llm::{FakeLlm, Step};
use oxibot_tests::fake_whatsapp::FakeBridge;
use oxibot_tests::harness::Broker;
use serde_json::{json, Value};

const BRIDGE_TOKEN: &str = "bridge-token-0123456789";
const ALICE: &str = "4915100000001@s.whatsapp.net";

struct Setup {
    llm: FakeLlm,
    bridge: FakeBridge,
    broker: Broker,
}

fn start(script: Vec<Step>, channel: Value, token: &str) -> Setup {
    let llm = FakeLlm::start(script);
    let bridge = FakeBridge::start(BRIDGE_TOKEN);
    let mut settings = json!({"enabled": true, "bridgeUrl": bridge.url, "allowedUsers": [ALICE]});
    oxibot_tests::harness::merge(&mut settings, channel);
    let secrets = json!({"providers": {"openai": {"apiKey": "sk-llm-0000000000"}},
                         "channels": {"whatsapp": {"bridgeToken": token}}});
    let broker = Broker::start(&llm.base_url, json!({"channels": {"whatsapp": settings}}), secrets);
    Setup { llm, bridge, broker }
}

impl Setup {
    fn wait_connected(&self) {
        self.broker
            .wait_until("whatsapp connected", Duration::from_secs(20), |s| {
                s["channels"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["name"] == "whatsapp" && c["connected"] == true))
            });
    }
}

#[test]
fn an_allowed_user_is_answered_and_the_message_acked() {
    let s = start(
        vec![Step::Text("**hi** from [OxiBot](https://x.y)".into())],
        json!({}),
        BRIDGE_TOKEN,
    );
    s.wait_connected();
    let id = s.bridge.receive(ALICE, "hello");
    let sent = s.bridge.wait_sent(1, Duration::from_secs(20));
    assert_eq!(sent[0]["to"], ALICE);
    assert_eq!(sent[0]["text"], "*hi* from OxiBot (https://x.y)");
    assert!(s.bridge.acked().contains(&id));
    s.broker.wait_until("outbox drained", Duration::from_secs(10), |st| {
        st["queues"]["outboxPending"] == 0
    });
}

#[test]
fn an_unknown_user_is_refused_and_audited() {
    let s = start(vec![], json!({}), BRIDGE_TOKEN);
    s.wait_connected();
    s.bridge.receive("4900000000000@s.whatsapp.net", "hi");
    s.broker.wait_audit("access_denied", "4900000000000@s.whatsapp.net");
    assert!(s.llm.requests().is_empty());
}

#[test]
fn a_long_reply_is_split() {
    let long: String = (0..2000).map(|i| format!("w{i} ")).collect();
    let s = start(vec![Step::Text(long)], json!({}), BRIDGE_TOKEN);
    s.wait_connected();
    s.bridge.receive(ALICE, "talk");
    let sent = s.bridge.wait_sent(2, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    let all = s.bridge.sent();
    assert!(all.len() >= sent.len());
    let joined: String = all
        .iter()
        .map(|m| format!("{} ", m["text"].as_str().unwrap_or_default()))
        .collect();
    for m in &all {
        assert!(m["text"].as_str().unwrap_or_default().chars().count() <= 4096);
    }
    assert!(joined.contains("w0 ") && joined.contains("w1999"));
}

#[test]
fn killed_before_the_ack_the_message_is_answered_exactly_once() {
    let s = start(
        vec![Step::Text("once".into()), Step::Text("twice!".into())],
        json!({}),
        BRIDGE_TOKEN,
    );
    s.wait_connected();
    let old = s.broker.process_pid("channel:whatsapp").unwrap();
    let broker = Pid::from_raw(s.broker.child.id() as i32);
    kill(broker, Signal::SIGSTOP).unwrap();
    let id = s.bridge.receive(ALICE, "exactly once");
    std::thread::sleep(Duration::from_millis(300));
    kill(Pid::from_raw(old), Signal::SIGKILL).unwrap();
    kill(broker, Signal::SIGCONT).unwrap();
    let sent = s.bridge.wait_sent(1, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        s.bridge.sent().len(),
        1,
        "answered more than once: {:?}",
        s.bridge.sent()
    );
    assert_eq!(sent[0]["text"], "once");
    assert!(s.bridge.connections() >= 2, "the daemon never reconnected");
    assert!(s.bridge.acked().contains(&id));
    assert_eq!(s.llm.requests().len(), 1);
}

#[test]
fn malformed_frames_are_skipped() {
    let s = start(vec![Step::Text("fine".into())], json!({}), BRIDGE_TOKEN);
    s.wait_connected();
    s.bridge.push_raw(json!({"type": "message", "sender": 42}));
    s.bridge.push_raw(json!({"type": "who-knows", "x": [1]}));
    s.bridge.receive(ALICE, "still there?");
    let sent = s.bridge.wait_sent(1, Duration::from_secs(20));
    assert_eq!(sent[0]["text"], "fine");
    assert_eq!(
        s.broker.status()["processes"]
            .to_string()
            .matches("\"restarts\":0")
            .count(),
        3
    );
}

#[test]
fn a_wrong_bridge_token_stops_the_channel() {
    let s = start(vec![], json!({}), "not-the-token");
    s.broker.wait_until("channel stopped", Duration::from_secs(20), |st| {
        st["processes"].as_array().is_some_and(|ps| {
            ps.iter().any(|p| {
                p["name"] == "channel:whatsapp" && p["lastExit"].as_str().is_some_and(|e| e.contains("configuration"))
            })
        })
    });
    assert!(s.bridge.auth_failures() >= 1);
    let st = s.broker.status();
    let ch = st["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "whatsapp")
        .unwrap()
        .clone();
    assert!(
        ch["lastError"].as_str().unwrap_or_default().contains("bridgeToken"),
        "{ch}"
    );
}
