//! WhatsApp end to end: fake bridge ↔ oxibot-channeld (tokio-tungstenite)
//! ↔ broker ↔ fake LLM.

use std::time::Duration;

use oxibot_tests::consts::{CONNECT, LLM_KEY};
use oxibot_tests::fake_llm::{FakeLlm, Step};
use oxibot_tests::fake_whatsapp::FakeBridge;
use oxibot_tests::harness::Broker;
use oxibot_tests::platform::BRIDGE_TOKEN;
use serde_json::{json, Value};

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
    let secrets = json!({"providers": {"openai": {"apiKey": LLM_KEY}},
                         "channels": {"whatsapp": {"bridgeToken": token}}});
    let broker = Broker::start(&llm.base_url, json!({"channels": {"whatsapp": settings}}), secrets);
    Setup { llm, bridge, broker }
}

impl Setup {
    fn wait_connected(&self) {
        self.broker.wait_until("whatsapp connected", CONNECT, |s| {
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
fn bridge_status_and_error_frames_reach_oxibotctl_status() {
    let s = start(vec![Step::Text("fine".into())], json!({}), BRIDGE_TOKEN);
    s.wait_connected();
    s.bridge.push_raw(json!({"type": "status", "status": "disconnected"}));
    let st = s.broker.wait_until("whatsapp down", Duration::from_secs(10), |st| {
        st["channels"][0]["connected"] == false
    });
    assert_eq!(st["channels"][0]["lastError"], "the bridge lost WhatsApp", "{st}");
    s.bridge
        .push_raw(json!({"type": "error", "error": "phone offline for a moment"}));
    s.bridge.push_raw(json!({"type": "status", "status": "connected"}));
    s.wait_connected();
    s.bridge.receive(ALICE, "back?");
    let sent = s.bridge.wait_sent(1, Duration::from_secs(20));
    assert_eq!(sent[0]["text"], "fine");
    let st = s.broker.status();
    assert_eq!(st["channels"][0]["counters"]["disconnects"], 1, "{st}");
    assert!(
        s.broker.log_text().contains("phone offline for a moment"),
        "the bridge's error was not logged"
    );
}
