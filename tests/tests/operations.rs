//! Running OxiBot as a service: readiness and the watchdog (sd_notify),
//! reload without a restart (SIGHUP, `oxibotctl reload`, `oxibotctl secrets
//! set`), and a broken edit that leaves the running configuration alone.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use oxibot_tests::consts::SLOW;
use oxibot_tests::fake_llm::{FakeLlm, Step};
use oxibot_tests::fake_telegram::FakeTelegram;
use oxibot_tests::harness::{new_dir, Broker, Launch};
use oxibot_tests::platform::TELEGRAM_TOKEN;
use serde_json::json;

const KEY_A: &str = "sk-ops-FIRST-KEY-000000";
const KEY_B: &str = "sk-ops-ROTATED-KEY-11111";

fn secrets(key: &str) -> serde_json::Value {
    json!({"providers": {"openai": {"apiKey": key}}, "channels": {"telegram": {"token": TELEGRAM_TOKEN}}})
}

fn authorization(llm: &FakeLlm, n: usize) -> String {
    llm.requests()[n]
        .header("authorization")
        .unwrap_or_default()
        .to_string()
}

/// `oxibotctl secrets set` rotates a key: written atomically (mode kept),
/// and the very next request uses it, with no restart.
#[test]
fn a_rotated_key_is_used_at_once_without_a_restart() {
    let llm = FakeLlm::start(vec![Step::Text("one".into()), Step::Text("two".into())]);
    let b = Broker::start(&llm.base_url, json!({}), secrets(KEY_A));
    b.agent("s", "hi").unwrap();
    assert_eq!(authorization(&llm, 0), format!("Bearer {KEY_A}"));
    let pid = b.child.id();

    let mut set = b
        .ctl_command(&["secrets", "set", "providers.openai.apiKey", "--config"])
        .arg(b.config_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = set.stdin.take().unwrap();
        writeln!(stdin, "{KEY_B}").unwrap();
    }
    let out = set.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.contains("reloaded"), "{said}");
    assert!(!said.contains(KEY_B), "the value must not be echoed: {said}");
    let file = b.dir.path().join("secrets.json");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);

    b.agent("s", "again").unwrap();
    assert_eq!(authorization(&llm, 1), format!("Bearer {KEY_B}"));
    assert_eq!(b.child.id(), pid);
    assert!(b.status()["uptimeSecs"].is_number(), "the broker is the same and up");
    // The new key is scrubbed like the old one.
    let names = b.ctl(&["secrets", "list", "--config", &b.config_path().display().to_string()]);
    let listed = String::from_utf8_lossy(&names.stdout);
    assert!(
        listed.contains("providers.openai.apiKey") && !listed.contains(KEY_B),
        "{listed}"
    );
}

/// A broken edit followed by SIGHUP: the reload is refused with the reason,
/// the broker keeps running on what it had.
#[test]
fn a_broken_config_on_reload_leaves_the_running_one() {
    let llm = FakeLlm::start(vec![Step::Text("still here".into())]);
    let b = Broker::start(&llm.base_url, json!({}), secrets(KEY_A));
    std::fs::write(b.config_path(), "{ this is not json").unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(b.child.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    oxibot_tests::poll::wait_for("the refused reload in the log", SLOW, || {
        b.log_text()
            .contains("reload refused, the running configuration stays")
            .then_some(())
    });
    assert!(b.log_text().contains("not valid JSON"), "{}", b.log_text());
    assert_eq!(b.agent("s", "hi").unwrap(), "still here");
    assert_eq!(authorization(&llm, 0), format!("Bearer {KEY_A}"));
    let out = b.ctl(&["reload"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("reload refused"));
}

/// A channel's new settings reach its daemon on reload: its link is closed,
/// it reconnects and gets them (here a wider allow-list).
#[test]
fn channel_settings_reach_the_daemon_on_reload() {
    let tg = FakeTelegram::start(TELEGRAM_TOKEN);
    let llm = FakeLlm::start(vec![Step::Text("welcome, 1002".into())]);
    let settings = |users: serde_json::Value| json!({"enabled": true, "apiBase": tg.base_url, "allowedUsers": users});
    let b = Broker::start(
        &llm.base_url,
        json!({"channels": {"telegram": settings(json!(["1001"]))}}),
        secrets(KEY_A),
    );
    b.wait_channel_connected("telegram", SLOW);
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b.config_path()).unwrap()).unwrap();
    config["channels"]["telegram"] = settings(json!(["1001", "1002"]));
    std::fs::write(b.config_path(), config.to_string()).unwrap();
    let out = b.ctl(&["reload"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("new settings for telegram"),
        "{said}"
    );
    b.wait_until("telegram reconnected", SLOW, |s| {
        s["processes"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["name"] == "channel:telegram" && p["restarts"] == 1))
            && s["channels"][0]["connected"] == true
    });
    tg.send_text(1002, "hello?");
    assert_eq!(tg.wait_sent(1, SLOW)[0]["text"], "welcome, 1002");
}

/// Readiness and the watchdog, as systemd's `Type=notify` and
/// `WatchdogSec=` see them.
#[test]
fn ready_and_watchdog_reach_the_service_manager() {
    let dir = new_dir();
    let notify = dir.path().join("notify.sock");
    let listener = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    listener.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let llm = FakeLlm::start(vec![]);
    let how = Launch {
        env: vec![
            ("NOTIFY_SOCKET".into(), notify.display().to_string()),
            ("WATCHDOG_USEC".into(), "400000".into()),
        ],
        ..Launch::default()
    };
    let _b = Broker::start_in(dir, &llm.base_url, json!({}), secrets(KEY_A), how);
    let mut heard = Vec::new();
    let mut buf = [0u8; 256];
    while heard.iter().filter(|m: &&String| m.as_str() == "WATCHDOG=1").count() < 3 {
        let n = listener.recv(&mut buf).expect("no notification within 10 s");
        heard.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    assert_eq!(heard[0], "READY=1", "{heard:?}");
}
