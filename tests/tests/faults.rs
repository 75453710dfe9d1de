//! Faults and hostile peers: garbage frames, wrong uids, a killed tool
//! daemon, leaked secrets, broken configuration.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use oxibot_tests::consts::{CONNECT, LLM_KEY};
use oxibot_tests::fake_llm::{FakeLlm, Step};
use oxibot_tests::harness::{bin, secrets, Broker};
use oxibot_tests::poll::{self, POLL_COSTLY};
use serde_json::{json, Value};

const NOBODY: u32 = 65534;

fn tool(name: &str, args: Value) -> Step {
    Step::Tool {
        name: name.into(),
        args,
    }
}

/// Sends raw bytes and reports whether the broker closed the connection.
fn send_raw_and_expect_close(path: &std::path::Path, bytes: &[u8]) {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut buf = [0u8; 64];
    // EOF (0) or a reset: either way the broker hung up without answering.
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the broker did not close the connection: {other:?}"),
    }
}

#[test]
fn garbage_and_oversized_frames_on_tool_sock_are_closed_and_audited() {
    if !nix::unistd::geteuid().is_root() {
        return oxibot_tests::harness::skip("tool.sock admits only root and the tool user (CI runs as root)");
    }
    let llm = FakeLlm::start(vec![Step::Text("still here".into())]);
    let mut broker = Broker::start_unsupervised(&llm.base_url, json!({}), secrets(json!({})));
    broker.spawn_toold();
    let sock = broker.runtime.join("tool.sock");

    // A length prefix of 4 GiB - 1: refused from the prefix, before allocating.
    send_raw_and_expect_close(&sock, &[0xff, 0xff, 0xff, 0xff]);
    broker.wait_audit("protocol_violation", "exceeds the 1048576-byte limit");
    // A well-sized frame of garbage.
    send_raw_and_expect_close(&sock, b"\x00\x00\x00\x08garbage!");
    broker.wait_audit("protocol_violation", "handshake: malformed message");
    // A valid frame that is a Hello with the wrong magic.
    send_raw_and_expect_close(&sock, b"\x00\x00\x00\x07NOPE\x01\x00\x02");
    broker.wait_audit("protocol_violation", "bad magic");

    // The broker is up, the real toold is still connected and works.
    let status = broker.status();
    assert_eq!(status["toolConnected"], true, "{status}");
    assert_eq!(broker.agent("g", "hi").unwrap(), "still here");
}

fn run_as_nobody(cmd: &mut std::process::Command) -> std::process::Output {
    cmd.uid(NOBODY).gid(NOBODY).output().unwrap()
}

#[test]
fn connections_from_the_wrong_uid_are_refused() {
    if !nix::unistd::geteuid().is_root() {
        return oxibot_tests::harness::skip("needs root to connect as nobody (CI runs as root)");
    }
    let llm = FakeLlm::start(vec![]);
    let mut broker = Broker::start_unsupervised(&llm.base_url, json!({}), secrets(json!({})));
    broker.spawn_toold();
    // Open the file permissions, so that only the broker's SO_PEERCRED check
    // stands between nobody and the sockets.
    std::fs::set_permissions(&broker.runtime, std::fs::Permissions::from_mode(0o755)).unwrap();
    for s in ["ctl.sock", "tool.sock", "channel.sock"] {
        std::fs::set_permissions(broker.runtime.join(s), std::fs::Permissions::from_mode(0o666)).unwrap();
    }

    // oxibotctl as nobody: connected, then refused.
    let others = oxibot_tests::harness::bin_dir_for_others();
    let out = run_as_nobody(
        std::process::Command::new(others.join("oxibotctl"))
            .arg("--socket")
            .arg(broker.ctl_socket())
            .arg("status"),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("handshake"), "{err}");
    let entry = broker.wait_audit("peer_refused", "ctl.sock");
    assert!(entry.contains(&format!("peer uid {NOBODY}")), "{entry}");
    assert!(entry.contains("oxibot-admin"), "{entry}");

    // A tool daemon as nobody on tool.sock: refused, and it exits.
    let workspace = broker.workspace.display().to_string();
    let sock = broker.runtime.join("tool.sock").display().to_string();
    let out = run_as_nobody(std::process::Command::new(others.join("oxibot-toold")).args([
        "--socket",
        &sock,
        "--workspace",
        &workspace,
        "--sandbox",
        "off",
    ]));
    assert!(!out.status.success());
    let entry = broker.wait_audit("peer_refused", "tool.sock");
    assert!(entry.contains(&format!("peer uid {NOBODY}")), "{entry}");
    // The real toold was not displaced.
    assert_eq!(broker.status()["toolConnected"], true);
}

#[test]
fn killing_toold_mid_tool_call_gives_a_clear_error_and_it_restarts() {
    let llm = FakeLlm::start(vec![tool("exec", json!({"command": "sleep 25"})), Step::EchoLastTool]);
    let broker = Broker::start(&llm.base_url, json!({}), secrets(json!({})));
    let toold = broker.process_pid("toold").expect("toold pid in status");

    let agent = broker
        .ctl_command(&["agent", "--session", "k", "-m", "run something slow"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    llm.wait_requests(1, Duration::from_secs(10));
    // Give toold a moment to start the command.
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(toold), nix::sys::signal::Signal::SIGKILL).unwrap();
    let killed_at = Instant::now();

    let out = agent.wait_with_output().unwrap();
    let reply = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        reply.contains("tool said: Error: the tool daemon stopped while running this tool"),
        "{reply}"
    );
    assert!(
        killed_at.elapsed() < Duration::from_secs(15),
        "the user waited {:?}",
        killed_at.elapsed()
    );

    // The supervisor restarted it, and tools work again.
    let status = broker.wait_until("toold restarted", CONNECT, |s| {
        s["toolConnected"] == true
            && s["processes"].as_array().is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["name"] == "toold" && p["restarts"].as_u64() >= Some(1) && p["pid"] != toold)
            })
    });
    assert!(status["processes"].to_string().contains("signal: 9"), "{status}");
    llm.push(tool("exec", json!({"command": "echo back"})));
    llm.push(Step::EchoLastTool);
    assert_eq!(broker.agent("k2", "again").unwrap(), "tool said: back\n[exit code: 0]");
}

#[test]
fn a_secret_echoed_by_a_tool_is_redacted_before_the_llm_and_the_reply() {
    let llm = FakeLlm::start(vec![
        tool("exec", json!({"command": "cat leaked.txt"})),
        tool("read_file", json!({"path": "leaked.txt"})),
        Step::EchoLastTool,
    ]);
    let broker = Broker::start(&llm.base_url, json!({}), secrets(json!({})));
    std::fs::write(broker.workspace.join("leaked.txt"), format!("the key is {LLM_KEY}")).unwrap();

    let reply = broker.agent("leak", "show me the file").unwrap();
    assert_eq!(reply, "tool said: the key is [REDACTED]");
    // What the LLM saw: never the key in a body (only in our own Authorization header).
    for r in llm.requests() {
        assert!(
            !r.body.to_string().contains(LLM_KEY),
            "the key reached the LLM: {}",
            r.body
        );
    }
    // Nor in the stored session.
    for m in broker.messages("leak") {
        assert!(!m.1.contains(LLM_KEY), "the key was stored: {}", m.1);
    }
    let audits = broker.audit("secret_redacted");
    assert!(audits.iter().any(|a| a.contains("exec output")), "{audits:?}");
    assert!(audits.iter().any(|a| a.contains("read_file output")), "{audits:?}");
    assert!(!broker.log_text().contains(LLM_KEY), "the key reached the broker log");
}

#[test]
fn the_child_environment_and_argv_hold_no_secret() {
    let llm = FakeLlm::start(vec![
        tool(
            "exec",
            json!({"command": "env; cat /proc/$PPID/environ | tr '\\0' '\\n'"}),
        ),
        Step::EchoLastTool,
    ]);
    let broker = Broker::start(&llm.base_url, json!({}), secrets(json!({})));
    let toold = broker.process_pid("toold").unwrap();
    let environ = std::fs::read(format!("/proc/{toold}/environ")).unwrap();
    let cmdline = std::fs::read(format!("/proc/{toold}/cmdline")).unwrap();
    for blob in [&environ, &cmdline] {
        assert!(!String::from_utf8_lossy(blob).contains(LLM_KEY));
    }
    // Only the variables the supervisor passes on, nothing of the broker's.
    let names: Vec<String> = String::from_utf8_lossy(&environ)
        .split('\0')
        .filter(|v| !v.is_empty())
        .map(|v| v.split('=').next().unwrap_or_default().to_string())
        .collect();
    for name in &names {
        assert!(
            ["PATH", "LANG", "RUST_LOG", "OXIBOT_LOG"].contains(&name.as_str()),
            "toold inherited {name}"
        );
    }
    let reply = broker.agent("env", "env").unwrap();
    assert!(reply.contains("PATH=") && !reply.contains(LLM_KEY), "{reply}");
}

#[test]
fn an_environment_override_secret_never_reaches_the_children() {
    // The key arrives by environment only; toold must not inherit it.
    let llm = FakeLlm::start(vec![Step::Text("ok".into())]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        json!({
            "runtimeDir": dir.path().join("run"), "stateDir": dir.path().join("state"),
            "secretsFile": dir.path().join("none.json"), "supervise": true,
            "agents": {"defaults": {"workspace": dir.path().join("ws"), "model": "gpt-x", "provider": "openai"}},
            "providers": {"openai": {"apiBase": format!("{}/v1", llm.base_url)}},
            "tools": {"sandbox": "off"}
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(dir.path().join("none.json"), "{}").unwrap();
    std::fs::set_permissions(dir.path().join("none.json"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut child = std::process::Command::new(bin("oxibot-broker"))
        .arg("--config")
        .arg(&config)
        .env("OXIBOT_PROVIDERS__OPENAI__API_KEY", LLM_KEY)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ctl = dir.path().join("run/ctl.sock");
    let mut last = Value::Null;
    let toold = poll::until(CONNECT, POLL_COSTLY, || {
        let out = std::process::Command::new(bin("oxibotctl"))
            .args(["--json", "--socket"])
            .arg(&ctl)
            .arg("status")
            .output()
            .unwrap();
        let s: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let pid = s["processes"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == "toold")?["pid"].as_i64());
        if let (Some(pid), true) = (pid, s["toolConnected"] == true) {
            return Some(pid);
        }
        last = s;
        None
    })
    .unwrap_or_else(|| panic!("broker did not come up: {last}"));
    let environ = std::fs::read(format!("/proc/{toold}/environ")).unwrap();
    // The key did reach the one place it belongs: the provider's endpoint.
    let out = std::process::Command::new(bin("oxibotctl"))
        .arg("--socket")
        .arg(&ctl)
        .args(["agent", "-m", "hi"])
        .output()
        .unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    assert!(
        !String::from_utf8_lossy(&environ).contains(LLM_KEY),
        "the key leaked into toold's environment"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    let reqs = llm.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].header("authorization"),
        Some(format!("Bearer {LLM_KEY}").as_str())
    );
}

#[test]
fn broken_config_and_open_secrets_stop_the_start_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, "{\n  \"agents\": {\"defaults\": {\"model\": \"gpt-x\",}}\n}").unwrap();
    let out = std::process::Command::new(bin("oxibot-broker"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("config.json") && err.contains("line 2"), "{err}");

    let secrets = dir.path().join("secrets.json");
    std::fs::write(&secrets, oxibot_tests::harness::secrets(json!({})).to_string()).unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(
        &config,
        json!({"secretsFile": secrets, "agents": {"defaults": {"model": "gpt-x"}}}).to_string(),
    )
    .unwrap();
    let out = std::process::Command::new(bin("oxibot-broker"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("chmod 600 {}", secrets.display())), "{err}");
    assert!(!err.contains(LLM_KEY), "{err}");
}

#[test]
fn toold_refuses_to_start_when_its_jail_cannot_be_built() {
    if !nix::unistd::geteuid().is_root() {
        return oxibot_tests::harness::skip("the failing step is provoked as root (CI runs as root)");
    }
    let llm = FakeLlm::start(vec![]);
    let broker = Broker::start_unsupervised(&llm.base_url, json!({}), secrets(json!({})));
    let out = std::process::Command::new(bin("oxibot-toold"))
        .args(["--socket"])
        .arg(broker.runtime.join("tool.sock"))
        .arg("--workspace")
        .arg(&broker.workspace)
        .args(["--sandbox", "on", "--user", "no-such-tool-user"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to start"), "{err}");
    assert!(err.contains("step \"look up the tool user\""), "{err}");
    assert!(err.contains("no-such-tool-user\" does not exist"), "{err}");
    assert!(err.contains("\"sandbox\": \"off\""), "{err}");
}

#[test]
fn config_check_reports_what_the_broker_would_refuse_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.json");
    std::fs::write(&secrets, r#"{"providers": {"openai": {"apiKey": "sk-x-0123456789"}}}"#).unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let check = |transcription: Value| {
        let config = json!({"secretsFile": secrets, "agents": {"defaults": {"model": "gpt-4o"}},
                            "transcription": transcription});
        let path = dir.path().join("config.json");
        std::fs::write(&path, config.to_string()).unwrap();
        std::process::Command::new(bin("oxibotctl"))
            .args(["config", "check", "--config"])
            .arg(&path)
            .output()
            .unwrap()
    };
    let good = check(json!({"provider": "groq", "model": "whisper-large-v3-turbo"}));
    assert!(good.status.success(), "{good:?}");
    let bad = check(json!({"provider": "anthropic", "model": "whisper"}));
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("no OpenAI-compatible /audio/transcriptions"),
        "{stderr}"
    );
}

/// The attack as seen: one `read_file` with a 5,000-byte path made toold
/// exit ("bad request from the broker, exiting: path is 5000 bytes"), and
/// another chat's running `sleep` died with it. Now the broker checks the
/// request before sending it: a tool error for that call alone.
#[test]
fn a_request_over_the_tool_daemons_limits_is_a_tool_error_and_other_commands_live_on() {
    let llm = FakeLlm::start(vec![]);
    let broker = Broker::start(&llm.base_url, json!({}), secrets(json!({})));
    let toold = broker.process_pid("toold").expect("toold pid in status");
    let slow = {
        let cmd = broker
            .ctl_command(&[
                "--json",
                "tool",
                "run",
                "exec",
                r#"{"command": "sleep 3; echo survived"}"#,
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        cmd
    };
    let path = "a".repeat(5000);
    for (name, args) in [
        ("read_file", json!({"path": path})),
        ("write_file", json!({"path": path, "content": "x"})),
        ("list_dir", json!({"path": path})),
        ("grep", json!({"pattern": path, "path": "."})),
    ] {
        let (ok, out) = broker.tool(name, args);
        assert!(!ok, "{name}: {out}");
        assert!(out.contains("not sent to the tool daemon"), "{name}: {out}");
    }
    let out = slow.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("survived"), "the other command died: {out}");
    assert_eq!(broker.process_pid("toold"), Some(toold), "toold restarted");
}
