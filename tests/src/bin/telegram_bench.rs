//! End-to-end latency of one Telegram message through the whole system with
//! an instant fake LLM: from the update being available at the fake Bot API
//! to the reply's `sendMessage` arriving there. 1,000 messages, p50/p99.
//! Also prints the idle RSS of every channel daemon (e-mail when the test
//! mail servers run).
//!
//! Run: `cargo build --workspace && cargo run -p oxibot-tests --bin telegram-bench`

use std::time::{Duration, Instant};

use oxibot_tests::fake_discord::FakeDiscord;
use oxibot_tests::fake_llm::{FakeLlm, Step};
use oxibot_tests::fake_slack::FakeSlack;
use oxibot_tests::fake_telegram::FakeTelegram;
use oxibot_tests::fake_whatsapp::FakeBridge;
use oxibot_tests::harness::{rss_kib, Broker};
use serde_json::json;

const N: usize = 1000;
const TOKEN: &str = "123456:bench-token";

/// The first process whose parent is `pid` (the jail under the outside toold).
fn child_of(pid: i32) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.filter_map(Result::ok).find_map(|e| {
        let child: i32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        let ppid: i32 = stat.rsplit(')').next()?.split_whitespace().nth(1)?.parse().ok()?;
        (ppid == pid).then_some(child)
    })
}

fn main() {
    let llm = FakeLlm::start(vec![]);
    let tg = FakeTelegram::start(TOKEN);
    let bridge = FakeBridge::start("bench-bridge-token");
    let discord = FakeDiscord::start("bench-discord-token");
    let slack = FakeSlack::start("xoxb-bench", "xapp-bench");
    let mut config = json!({"channels": {
        "telegram": {"enabled": true, "apiBase": tg.base_url, "allowedUsers": ["*"]},
        "whatsapp": {"enabled": true, "bridgeUrl": bridge.url, "allowedUsers": ["*"]},
        "discord": {"enabled": true, "apiBase": discord.api_base, "allowedUsers": ["*"]},
        "slack": {"enabled": true, "apiBase": slack.api_base, "allowedUsers": ["*"]}
    }});
    if oxibot_tests::mail::servers_up() {
        config["channels"]["email"] = json!({
            "enabled": true, "imapHost": "127.0.0.1", "imapPort": oxibot_tests::mail::IMAP_PORT,
            "imapUsername": "bench", "imapUseSsl": false, "smtpHost": "127.0.0.1",
            "smtpPort": oxibot_tests::mail::SMTP_PORT, "smtpUseTls": false, "fromAddress": "bench@oxibot.test",
            "allowedUsers": ["*"]
        });
    }
    let channels = config["channels"].as_object().map(|c| c.len()).unwrap_or(0);
    let secrets = json!({"providers": {"openai": {"apiKey": "sk-bench-000000"}},
                         "channels": {"telegram": {"token": TOKEN}, "whatsapp": {"bridgeToken": "bench-bridge-token"},
                                      "discord": {"token": "bench-discord-token"},
                                      "slack": {"botToken": "xoxb-bench", "appToken": "xapp-bench"},
                                      "email": {"imapPassword": oxibot_tests::mail::PASSWORD}}});
    let broker = Broker::start(&llm.base_url, config, secrets);
    broker.wait_until("channels connected", Duration::from_secs(30), |s| {
        s["channels"]
            .as_array()
            .is_some_and(|c| c.len() == channels && c.iter().all(|c| c["connected"] == true))
    });
    std::thread::sleep(Duration::from_secs(2));
    for name in [
        "channel:telegram",
        "channel:discord",
        "channel:slack",
        "channel:whatsapp",
        "channel:email",
        "toold",
    ] {
        if let Some(pid) = broker.process_pid(name) {
            println!("idle RSS {name:<18} {:>6} KiB", rss_kib(pid));
        }
    }
    if let Some(outer) = broker.process_pid("toold") {
        if let Some(jail) = child_of(outer) {
            println!("idle RSS {:<18} {:>6} KiB", "toold (jail pid 1)", rss_kib(jail));
        }
    }
    println!("idle RSS {:<18} {:>6} KiB", "broker", rss_kib(broker.child.id() as i32));

    let mut samples = Vec::with_capacity(N);
    for i in 0..N {
        llm.push(Step::Text(format!("reply {i}")));
        let before = tg.sent().len();
        let t = Instant::now();
        tg.send_text(1000 + (i as i64 % 50), &format!("message {i}"));
        loop {
            if tg.sent().len() > before {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "message {i} was never answered");
            std::thread::sleep(Duration::from_micros(100));
        }
        samples.push(t.elapsed());
    }
    samples.sort();
    let p = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "telegram message → reply, instant LLM   n={N}  p50={:.2} ms  p99={:.2} ms",
        p(0.5).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3
    );
}
