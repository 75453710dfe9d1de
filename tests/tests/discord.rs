//! Discord end to end: fake REST API + gateway ↔ oxibot-channeld (serenity)
//! ↔ broker ↔ fake LLM.

use std::time::Duration;

use oxibot_tests::consts::{LLM_KEY, SLOW};
use oxibot_tests::fake_discord::FakeDiscord;
use oxibot_tests::fake_llm::{FakeLlm, Step};
use oxibot_tests::harness::Broker;
use oxibot_tests::platform::DISCORD_TOKEN;
use serde_json::{json, Value};

const ALICE: u64 = 4242;
const DM: u64 = 7001;
const GUILD: u64 = 8001;
const GUILD_CHANNEL: u64 = 8002;

fn start(script: Vec<Step>, server_token: &str) -> (FakeLlm, FakeDiscord, Broker) {
    let llm = FakeLlm::start(script);
    let discord = FakeDiscord::start(server_token);
    let settings = json!({"enabled": true, "apiBase": discord.api_base, "allowedUsers": [ALICE.to_string()]});
    let secrets = json!({"providers": {"openai": {"apiKey": LLM_KEY}},
                         "channels": {"discord": {"token": DISCORD_TOKEN}}});
    let broker = Broker::start(&llm.base_url, json!({"channels": {"discord": settings}}), secrets);
    (llm, discord, broker)
}

fn connected(broker: &Broker) {
    broker.wait_until("discord connected", SLOW, |s| {
        s["channels"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["name"] == "discord" && c["connected"] == true))
    });
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
    let (llm, discord, broker) = start(vec![slow], DISCORD_TOKEN);
    connected(&broker);
    let id = discord.post(DM, None, ALICE, "hi", false);
    let sent = discord.wait_sent(1, Duration::from_secs(20));
    assert_eq!(sent[0].0, DM.to_string());
    assert_eq!(content(&sent[0]), "hello from the bot");
    assert_eq!(
        sent[0].1["message_reference"]["message_id"],
        json!(id.to_string()),
        "{}",
        sent[0].1
    );
    assert!(llm.requests()[0].body.to_string().contains("hi"));
    assert!(discord.typing().contains(&DM.to_string()));
}

#[test]
fn guild_messages_need_a_mention_and_strangers_are_refused() {
    let (llm, discord, broker) = start(vec![Step::Text("at your service".into())], DISCORD_TOKEN);
    connected(&broker);
    discord.post(GUILD_CHANNEL, Some(GUILD), ALICE, "chatting", false);
    discord.post(DM, None, 999, "let me in", false);
    broker.wait_audit("access_denied", "user 999");
    discord.post(GUILD_CHANNEL, Some(GUILD), ALICE, "<@900000000000000001> help", true);
    let sent = discord.wait_sent(1, Duration::from_secs(20));
    assert_eq!(sent[0].0, GUILD_CHANNEL.to_string());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(llm.requests().len(), 1);
}

#[test]
fn attachments_are_downloaded_and_saved_into_the_workspace() {
    let (llm, discord, broker) = start(vec![Step::Text("thanks".into())], DISCORD_TOKEN);
    connected(&broker);
    let csv = b"name,qty\nbolts,40\n";
    discord.post_file(DM, ALICE, "inventory attached", "stock.csv", "text/csv", csv);
    discord.wait_sent(1, Duration::from_secs(20));
    let request = llm.requests()[0].body.to_string();
    assert!(
        request.contains("inventory attached") && request.contains("inbox/stock.csv"),
        "{request}"
    );
    assert_eq!(std::fs::read(broker.workspace.join("inbox/stock.csv")).unwrap(), csv);
}

#[test]
fn messages_sent_while_the_daemon_is_down_are_fetched_after_the_restart() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let (llm, discord, broker) = start(
        vec![Step::Text("first".into()), Step::Text("caught up".into())],
        DISCORD_TOKEN,
    );
    connected(&broker);
    discord.post(DM, None, ALICE, "hello", false);
    discord.wait_sent(1, Duration::from_secs(20));
    let old = broker.process_pid("channel:discord").unwrap();
    kill(Pid::from_raw(old), Signal::SIGKILL).unwrap();
    oxibot_tests::poll::wait_for("the gateway session to end", Duration::from_secs(10), || {
        (discord.live_sessions() == 0).then_some(())
    });
    // Nobody is listening on the gateway: only the history has it.
    let missed = discord.post(DM, None, ALICE, "are you there?", false);
    let sent = discord.wait_sent(2, SLOW);
    assert_eq!(content(&sent[1]), "caught up");
    assert_eq!(sent[1].1["message_reference"]["message_id"], json!(missed.to_string()));
    assert!(llm.requests()[1].body.to_string().contains("are you there?"));
    let queries = discord.history_queries();
    assert!(queries.iter().any(|q| q.contains("after=")), "{queries:?}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(discord.sent().len(), 2, "answered twice: {:?}", discord.sent());
}

/// The window that the chaos test can only hit by luck, hit on purpose:
/// Discord takes the reply, and the daemon is killed before it can tell
/// the broker. The restarted daemon sends the part again with the same
/// nonce, and Discord (`enforce_nonce`) answers with the first message
/// instead of posting a second.
#[test]
fn a_reply_resent_after_a_kill_is_posted_once() {
    let (_llm, discord, broker) = start(vec![Step::Text("only once, please".into())], DISCORD_TOKEN);
    connected(&broker);
    discord.stall_next_create();
    discord.post(DM, None, ALICE, "hi", false);
    discord.wait_sent(1, Duration::from_secs(20));
    let daemon = broker.process_pid("channel:discord").expect("the daemon's pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon), nix::sys::signal::Signal::SIGKILL).unwrap();
    oxibot_tests::poll::wait_for("the resend", SLOW, || (discord.nonce_repeats() == 1).then_some(()));
    broker.wait_until("the reply counted as delivered", Duration::from_secs(20), |s| {
        s["queues"]["outboxPending"] == 0
    });
    let sent = discord.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(content(&sent[0]), "only once, please");
    assert!(
        sent[0].1["nonce"].as_str().is_some_and(|n| n.len() <= 25),
        "{}",
        sent[0].1
    );
}
