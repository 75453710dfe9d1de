//! Throughput: a burst of 10,000 Telegram messages from 100 chats through
//! the whole system (fake Bot API ↔ oxibot-channeld ↔ broker, with durable
//! state: WAL, each inbound committed before its ack) and an instant fake
//! LLM. Prints messages per second and the p50/p99 latency from the update
//! being available to its reply's sendMessage, and the RSS of the broker and
//! the daemon before, just after and 35 s after (one heap trim).
//!
//! Run (release binaries, as deployed):
//! `cargo build --release --workspace --all-targets && target/release/throughput-bench`
//! Options: `--messages N` (10000), `--chats N` (100), `--perf SECONDS`
//! (record the broker with `perf record -g` for that long during the burst),
//! `--soak SECONDS` then `--rate N` (20 msg/s): after the burst, a steady
//! load for that long, with the RSS every minute and once it is over.

use std::time::{Duration, Instant};

use oxibot_tests::fake_llm::{FakeLlm, Step};
use oxibot_tests::fake_telegram::FakeTelegram;
use oxibot_tests::harness::{rss_kib, Broker};
use serde_json::json;

const TOKEN: &str = "123456:bench-token";

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let messages = arg("--messages", 10_000) as usize;
    let chats = arg("--chats", 100) as i64;
    let perf_secs = arg("--perf", 0);
    let soak_secs = arg("--soak", 0);
    let rate = arg("--rate", 20).max(1);
    let llm = FakeLlm::start(vec![]);
    // Every request is answered at once.
    llm.always("", Step::Text("ok".into()));
    let tg = FakeTelegram::start(TOKEN);
    let config = json!({"channels": {"telegram": {"enabled": true, "apiBase": tg.base_url, "allowedUsers": ["*"]}}});
    let secrets = json!({"providers": {"openai": {"apiKey": "sk-bench-000000"}},
                         "channels": {"telegram": {"token": TOKEN}}});
    let broker = Broker::start(&llm.base_url, config, secrets);
    broker.wait_until("telegram connected", Duration::from_secs(30), |s| {
        s["channels"]
            .as_array()
            .is_some_and(|c| c.iter().all(|c| c["connected"] == true))
    });
    std::thread::sleep(Duration::from_secs(1));
    let broker_pid = broker.child.id() as i32;
    let channel_pid = broker.process_pid("channel:telegram").unwrap_or(0);
    println!(
        "idle RSS: broker {} KiB, telegram daemon {} KiB",
        rss_kib(broker_pid),
        rss_kib(channel_pid)
    );

    let perf = (perf_secs > 0).then(|| {
        std::process::Command::new("perf")
            .args(["record", "-F", "999", "-g", "-o", "/tmp/oxibot-broker.perf", "-p"])
            .arg(broker_pid.to_string())
            .args(["--", "sleep", &perf_secs.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("perf")
    });

    let started = Instant::now();
    for i in 0..messages {
        tg.send_text(10_000 + i as i64 % chats, &format!("message {i}"));
    }
    let injected = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600);
    while tg.sent_count() < messages {
        assert!(
            Instant::now() < deadline,
            "only {} of {messages} answered in 600 s",
            tg.sent_count()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = started.elapsed();
    let mut latencies: Vec<Duration> = tg.reply_times().iter().map(|(a, b)| b.duration_since(*a)).collect();
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e3;
    println!(
        "burst of {messages} messages from {chats} chats (injected in {:.0} ms): all answered in {:.2} s = {:.0} msg/s; \
         latency update → reply p50 {:.0} ms, p99 {:.0} ms",
        injected.as_secs_f64() * 1e3,
        took.as_secs_f64(),
        messages as f64 / took.as_secs_f64(),
        p(0.5),
        p(0.99)
    );
    let rss = |when: &str| {
        println!(
            "RSS {when}: broker {} KiB, telegram daemon {} KiB",
            rss_kib(broker_pid),
            rss_kib(channel_pid)
        )
    };
    std::thread::sleep(Duration::from_secs(2));
    rss("2 s after the burst");
    // One trim period (oxibot_runtime::heap::TRIM_EVERY) and a little more.
    std::thread::sleep(Duration::from_secs(35));
    rss("35 s after the burst");

    if soak_secs > 0 {
        // A steady rate from the same chats, for as long as asked.
        let started = Instant::now();
        let mut sent = messages;
        let mut next_report = 60;
        while started.elapsed() < Duration::from_secs(soak_secs) {
            tg.send_text(10_000 + sent as i64 % chats, &format!("message {sent}"));
            sent += 1;
            std::thread::sleep(Duration::from_secs_f64(1.0 / rate as f64));
            if started.elapsed().as_secs() >= next_report {
                rss(&format!("after {next_report} s of soak ({} messages)", sent - messages));
                next_report += 60;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while tg.sent_count() < sent && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        println!(
            "soak: {} messages at {rate}/s over {soak_secs} s, {} answered",
            sent - messages,
            tg.sent_count() - messages
        );
        std::thread::sleep(Duration::from_secs(35));
        rss("35 s after the soak");
    }
    if let Some(mut perf) = perf {
        let _ = perf.wait();
        println!("perf data: /tmp/oxibot-broker.perf (perf report -i /tmp/oxibot-broker.perf --no-children)");
    }
}
