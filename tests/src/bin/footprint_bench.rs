//! Footprint: how fast OxiBot starts and how much memory it holds idle.
//!
//! Starts the broker (supervising toold and the Telegram and WhatsApp
//! daemons, against local fakes) with a `NOTIFY_SOCKET` as systemd would
//! give it, and prints the time from its exec to `READY=1`, to toold's
//! link and to every channel connected; then, after a few seconds idle,
//! the RSS, PSS and anonymous memory of each process and their sums. `--rounds N` repeats the start
//! (10) and prints the median and worst.
//!
//! Run (release binaries, as deployed):
//! `cargo build --release --workspace --all-targets && target/release/footprint-bench`

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use oxibot_tests::fake_llm::FakeLlm;
use oxibot_tests::fake_telegram::FakeTelegram;
use oxibot_tests::fake_whatsapp::FakeBridge;
use oxibot_tests::harness::{new_dir, rss_kib, Broker, Launch};
use serde_json::{json, Value};

const TOKEN: &str = "123456:footprint-token";
const BRIDGE_TOKEN: &str = "bridge-token-0123456789";

struct Start {
    ready: Duration,
    toold: Duration,
    channels: Duration,
}

fn all_connected(s: &Value) -> bool {
    s["toolConnected"] == true
        && s["channels"]
            .as_array()
            .is_some_and(|c| c.len() == 2 && c.iter().all(|c| c["connected"] == true))
}

fn start_once(llm: &FakeLlm, tg: &FakeTelegram, wa: &FakeBridge, measure_rss: bool) -> Start {
    let dir = new_dir();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
    notify.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let config = json!({"channels": {
        "telegram": {"enabled": true, "apiBase": tg.base_url, "allowedUsers": ["*"]},
        "whatsapp": {"enabled": true, "bridgeUrl": wa.url, "allowedUsers": ["*"]}}});
    let secrets = json!({"providers": {"openai": {"apiKey": "sk-footprint-000000"}},
                         "channels": {"telegram": {"token": TOKEN}, "whatsapp": {"bridgeToken": BRIDGE_TOKEN}}});
    let how = Launch {
        env: vec![("NOTIFY_SOCKET".into(), notify_path.display().to_string())],
        ..Launch::default()
    };
    let exec = Instant::now();
    let broker = Broker::launch_in(dir, &llm.base_url, config, secrets, how);
    let mut buf = [0u8; 256];
    let ready = loop {
        let n = notify.recv(&mut buf).expect("READY=1 within 20 s");
        if buf[..n].split(|b| *b == b'\n').any(|l| l == b"READY=1") {
            break exec.elapsed();
        }
    };
    let (mut toold, mut channels) = (None, None);
    while channels.is_none() {
        assert!(exec.elapsed() < Duration::from_secs(30), "not connected within 30 s");
        let s = broker.status();
        if toold.is_none() && s["toolConnected"] == true {
            toold = Some(exec.elapsed());
        }
        if all_connected(&s) {
            channels = Some(exec.elapsed());
        }
    }
    if measure_rss {
        // Idle: what start-up allocated and let go has settled.
        std::thread::sleep(Duration::from_secs(5));
        let broker_pid = broker.child.id() as i32;
        let mut pids = vec![("broker".to_string(), broker_pid)];
        let status = broker.status();
        for p in status["processes"].as_array().into_iter().flatten() {
            if let (Some(name), Some(pid)) = (
                p["name"].as_str(),
                p["pid"].as_i64().filter(|p| *p != i64::from(broker_pid)),
            ) {
                pids.push((name.to_string(), pid as i32));
                // toold's jailed half is its child.
                for child in children(pid as i32) {
                    pids.push((format!("{name} (jail)"), child));
                }
            }
        }
        let mib = |kib: u64| kib as f64 / 1024.0;
        let mut totals = [0u64; 3];
        println!("  idle                      RSS      PSS  anonymous (MiB)");
        for (name, pid) in pids {
            let kib = rss_kib(pid);
            let (pss, anon) = (rollup_kib(pid, "Pss:"), rollup_kib(pid, "Anonymous:"));
            for (t, v) in totals.iter_mut().zip([kib, pss, anon]) {
                *t += v;
            }
            println!(
                "  {name:<22} {:>6.1}   {:>6.1}   {:>6.1}",
                mib(kib),
                mib(pss),
                mib(anon)
            );
        }
        println!(
            "  total                  {:>6.1}   {:>6.1}   {:>6.1}",
            mib(totals[0]),
            mib(totals[1]),
            mib(totals[2])
        );
    }
    Start {
        ready,
        toold: toold.unwrap_or_default(),
        channels: channels.unwrap_or_default(),
    }
}

/// A field of /proc/PID/smaps_rollup, in KiB. PSS shares each page among
/// the processes that map it (the glibc and binary pages five processes
/// share count once in total); "Anonymous" is the memory of the process's
/// own (heap, stacks).
fn rollup_kib(pid: i32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The pids whose parent is `pid`.
fn children(pid: i32) -> Vec<i32> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) else {
        return Vec::new();
    };
    text.split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(10);
    let llm = FakeLlm::start(vec![]);
    let tg = FakeTelegram::start(TOKEN);
    let wa = FakeBridge::start(BRIDGE_TOKEN);
    let mut starts = Vec::new();
    for round in 0..rounds.max(1) {
        starts.push(start_once(&llm, &tg, &wa, round == 0));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let report = |what: &str, pick: fn(&Start) -> Duration| {
        let mut v: Vec<Duration> = starts.iter().map(pick).collect();
        v.sort();
        println!(
            "exec → {what:<22} median {:>6.1} ms, worst {:>6.1} ms ({} starts)",
            ms(v[v.len() / 2]),
            ms(v[v.len() - 1]),
            v.len()
        );
    };
    report("READY=1", |s| s.ready);
    report("toold linked", |s| s.toold);
    report("every channel connected", |s| s.channels);
}
