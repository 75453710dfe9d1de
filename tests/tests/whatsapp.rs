//! WhatsApp end to end: fake bridge ↔ oxibot-channeld (tokio-tungstenite)
//! ↔ broker ↔ fake LLM.

use std::time::Duration;

use oxibot_tests::fake_llm::Step;
use oxibot_tests::platform::WhatsApp;
use oxibot_tests::run::Run;
use serde_json::json;

const ALICE: &str = "4915100000001@s.whatsapp.net";

/// WhatsApp on its fake bridge with `ALICE` allowed.
fn start(script: Vec<Step>) -> Run<WhatsApp> {
    Run::<WhatsApp>::builder(script)
        .allow([ALICE.to_string()])
        .start()
        .expect("the fake bridge always starts")
}

#[test]
fn an_allowed_user_is_answered_and_the_message_acked() {
    let r = start(vec![Step::Text("**hi** from [OxiBot](https://x.y)".into())]);
    r.wait_connected();
    let id = r.p.fake.receive(ALICE, "hello");
    let sent = r.p.fake.wait_sent(1, Duration::from_secs(20));
    assert_eq!(sent[0]["to"], ALICE);
    assert_eq!(sent[0]["text"], "*hi* from OxiBot (https://x.y)");
    assert!(r.p.fake.acked().contains(&id));
    r.wait_outbox_drained();
}

#[test]
fn an_unknown_user_is_refused_and_audited() {
    let r = start(vec![]);
    r.wait_connected();
    r.p.fake.receive("4900000000000@s.whatsapp.net", "hi");
    r.broker.wait_audit("access_denied", "4900000000000@s.whatsapp.net");
    assert!(r.llm.requests().is_empty());
}

#[test]
fn bridge_status_and_error_frames_reach_oxibotctl_status() {
    let r = start(vec![Step::Text("fine".into())]);
    r.wait_connected();
    r.p.fake.push_raw(json!({"type": "status", "status": "disconnected"}));
    let st = r.broker.wait_until("whatsapp down", Duration::from_secs(10), |st| {
        st["channels"][0]["connected"] == false
    });
    assert_eq!(st["channels"][0]["lastError"], "the bridge lost WhatsApp", "{st}");
    r.p.fake
        .push_raw(json!({"type": "error", "error": "phone offline for a moment"}));
    r.p.fake.push_raw(json!({"type": "status", "status": "connected"}));
    r.wait_connected();
    r.p.fake.receive(ALICE, "back?");
    let sent = r.p.fake.wait_sent(1, Duration::from_secs(20));
    assert_eq!(sent[0]["text"], "fine");
    let st = r.broker.status();
    assert_eq!(st["channels"][0]["counters"]["disconnects"], 1, "{st}");
    assert!(
        r.broker.log_text().contains("phone offline for a moment"),
        "the bridge's error was not logged"
    );
}

const VOICE: &[u8] = b"OggS\x00\x02 a tiny voice note \x00\x01 not really";

/// A voice note is asked of the bridge after the broker admitted the
/// sender, saved into the workspace, and transcribed for the model.
#[test]
fn a_voice_note_is_fetched_saved_and_transcribed() {
    let r = Run::<WhatsApp>::builder(vec![Step::EchoUser])
        .allow([ALICE.to_string()])
        .config(|llm| {
            json!({"transcription": {"provider": "groq", "model": "whisper-test"},
                   "providers": {"groq": {"apiBase": format!("{llm}/groq/v1")}}})
        })
        .secrets(json!({"providers": {"groq": {"apiKey": "gsk-test-0123456789"}}}))
        .start()
        .expect("the fake bridge always starts");
    r.wait_connected();
    r.p.fake
        .receive_media(ALICE, "", "note.ogg", "audio/ogg; codecs=opus", VOICE);
    let sent = r.p.fake.wait_sent(1, Duration::from_secs(20));
    let answer = sent[0]["text"].as_str().unwrap_or_default();
    assert!(answer.contains(oxibot_tests::fake_llm::TRANSCRIPT), "{answer}");
    assert_eq!(r.llm.transcriptions().len(), 1);
    let saved = std::fs::read_dir(r.broker.workspace.join("inbox"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("note"))
        .expect("the voice note was not saved");
    assert_eq!(std::fs::read(saved).unwrap(), VOICE);
}

/// A stranger's medium is never asked for; one announced over 20 MiB is
/// refused by its announced length, before any of it is fetched, and the
/// model is told.
#[test]
fn strangers_media_and_oversized_media_are_not_fetched() {
    let r = start(vec![Step::EchoUser]);
    r.wait_connected();
    r.p.fake
        .receive_media("4900000000000@s.whatsapp.net", "", "x.jpg", "image/jpeg", &[1; 4096]);
    r.broker.wait_audit("access_denied", "4900000000000@s.whatsapp.net");
    r.p.fake.receive_huge_media(ALICE, "film.mp4", 30 << 20);
    let sent = r.p.fake.wait_sent(1, Duration::from_secs(20));
    let told = sent[0]["text"].as_str().unwrap_or_default();
    assert!(
        told.contains("film.mp4") && told.contains("cannot come through"),
        "{told}"
    );
    assert!(r.p.fake.downloads().is_empty(), "{:?}", r.p.fake.downloads());
}
