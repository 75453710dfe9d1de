//! The admin's side of a running broker: `oxibotctl` exit statuses,
//! sessions, the audit log and its filters, and the health endpoint.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use oxibot_tests::consts::CONNECT;
use oxibot_tests::fake_llm::{FakeLlm, Step};
use oxibot_tests::harness::{secrets, Broker};
use serde_json::{json, Value};

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stdout_json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("no JSON: {}", String::from_utf8_lossy(&out.stdout)))
}

/// `status` exits 3 while anything the configuration asks for is down,
/// says what, exits 0 once everything is up, and 1 when the broker is gone;
/// a usage error is 2.
#[test]
fn status_exits_3_while_anything_is_down() {
    if !nix::unistd::geteuid().is_root() {
        return oxibot_tests::harness::skip("needs root: toold is started as its unit does");
    }
    let llm = FakeLlm::start(vec![]);
    // A channel that is enabled, whose daemon never comes.
    let patch = json!({"channels": {"telegram": {"enabled": true, "allowedUsers": ["1"]}}});
    let mut secrets = secrets(json!({}));
    secrets["channels"] = json!({"telegram": {"token": "1:x"}});
    let mut b = Broker::start_unsupervised(&llm.base_url, patch, secrets);

    let out = b.ctl(&["--json", "status"]);
    assert_eq!(code(&out), 3, "{}", String::from_utf8_lossy(&out.stdout));
    let problems = stdout_json(&out)["problems"].to_string();
    assert!(problems.contains("tool daemon is not connected"), "{problems}");
    assert!(problems.contains("channel telegram is not connected"), "{problems}");
    let text = b.ctl(&["status"]);
    assert_eq!(code(&text), 3);
    assert!(String::from_utf8_lossy(&text.stdout).contains("state: DEGRADED"));
    let list = b.ctl(&["channels", "list"]);
    assert_eq!(code(&list), 3);
    assert!(String::from_utf8_lossy(&list.stdout).contains("DISCONNECTED"));

    b.spawn_toold();
    let out = b.ctl(&["--json", "status"]);
    assert_eq!(code(&out), 3, "the channel is still down");
    assert!(!stdout_json(&out)["problems"].to_string().contains("tool daemon"));

    assert_eq!(code(&b.ctl(&["no-such-command"])), 2);
    let gone = std::process::Command::new(oxibot_tests::harness::bin("oxibotctl"))
        .arg("--socket")
        .arg(b.runtime.join("no-such.sock"))
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(code(&gone), 1);
    assert!(String::from_utf8_lossy(&gone.stderr).contains("the broker is not running"));
}

#[test]
fn status_exits_0_when_everything_is_up() {
    let llm = FakeLlm::start(vec![]);
    let b = Broker::start(&llm.base_url, json!({}), secrets(json!({})));
    b.wait_tool_connected();
    let out = b.ctl(&["status"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
}

/// Sessions can be listed, read and reset; the audit log can be filtered
/// by kind, channel and time; every admin action is audited.
#[test]
fn sessions_and_the_audit_log_from_oxibotctl() {
    let llm = FakeLlm::start(vec![
        Step::Tool {
            name: "exec".into(),
            args: json!({"command": "echo from-the-jail"}),
        },
        Step::EchoLastTool,
    ]);
    let b = Broker::start(&llm.base_url, json!({}), secrets(json!({})));
    b.wait_tool_connected();
    let reply = b.agent("cli:admin", "run it").unwrap();
    assert!(reply.contains("from-the-jail"), "{reply}");

    let list = stdout_json(&b.ctl(&["--json", "sessions", "list"]));
    let session = list["sessions"]
        .as_array()
        .and_then(|l| l.iter().find(|s| s["session"] == "cli:admin"))
        .cloned()
        .unwrap_or_else(|| panic!("{list}"));
    assert!(session["messages"].as_u64().unwrap_or(0) >= 4, "{session}");

    let shown = stdout_json(&b.ctl(&["--json", "sessions", "show", "cli:admin"]));
    let texts = shown["messages"].to_string();
    assert!(texts.contains("run it") && texts.contains("from-the-jail"), "{texts}");
    let last_two = stdout_json(&b.ctl(&["--json", "sessions", "show", "cli:admin", "-n", "2"]));
    assert_eq!(last_two["messages"].as_array().map(Vec::len), Some(2));

    let unknown = b.ctl(&["sessions", "show", "cli:nobody"]);
    assert_eq!(code(&unknown), 1);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no session cli:nobody"));

    // The tool call is in the audit log, under its session's channel.
    let calls = stdout_json(&b.ctl(&["--json", "audit", "tail", "--kind", "tool_call", "--channel", "cli"]));
    let entries = calls["entries"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 1, "{calls}");
    assert!(entries[0]["detail"].as_str().unwrap_or("").contains("exec"), "{calls}");
    let none = stdout_json(&b.ctl(&[
        "--json",
        "audit",
        "tail",
        "--kind",
        "tool_call",
        "--channel",
        "telegram",
    ]));
    assert_eq!(none["entries"], json!([]));
    let future = stdout_json(&b.ctl(&["--json", "audit", "tail", "--since", "0s", "--kind", "tool_call"]));
    assert!(future["entries"].as_array().is_some_and(|e| e.len() <= 1));
    assert_eq!(code(&b.ctl(&["audit", "tail", "--since", "yesterday"])), 1);

    assert_eq!(code(&b.ctl(&["sessions", "reset", "cli:admin"])), 0);
    let after = stdout_json(&b.ctl(&["--json", "sessions", "show", "cli:admin"]));
    assert_eq!(after["messages"], json!([]));
    let reset = stdout_json(&b.ctl(&["--json", "audit", "tail", "--kind", "session_reset"]));
    assert!(reset["entries"].to_string().contains("cli:admin"), "{reset}");
}

/// `audit follow` prints what is written after it started, filtered.
#[test]
fn audit_follow_prints_new_entries_as_they_come() {
    let llm = FakeLlm::start(vec![]);
    let b = Broker::start(&llm.base_url, json!({}), secrets(json!({})));
    let mut follow = b
        .ctl_command(&["--json", "audit", "follow", "--kind", "user_decided", "-n", "0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // Unknown channel: refused, nothing audited.
    assert_eq!(code(&b.ctl(&["users", "allow", "nosuch", "42"])), 1);
    let b_config = b.config_path();
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&b_config).unwrap()).unwrap();
    config["channels"] = json!({"telegram": {"enabled": false}, "email": {"enabled": false}});
    std::fs::write(&b_config, config.to_string()).unwrap();
    assert_eq!(code(&b.ctl(&["reload"])), 0);
    assert_eq!(code(&b.ctl(&["users", "deny", "telegram", "666"])), 0);
    // A From header nobody vouched for cannot be allowed: anyone can write it.
    let refused = b.ctl(&["users", "allow", "email", "unverified:eve@example.com"]);
    assert_eq!(code(&refused), 1);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("authservId"),
        "{refused:?}"
    );
    // An address is one user however the admin spells it.
    assert_eq!(code(&b.ctl(&["users", "deny", "email", " Bob@Example.COM "])), 0);
    std::thread::sleep(Duration::from_millis(2500));
    let _ = follow.kill();
    let _ = follow.wait();
    let mut printed = String::new();
    follow.stdout.take().unwrap().read_to_string(&mut printed).unwrap();
    let lines: Vec<Value> = printed.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert_eq!(lines.len(), 2, "{printed}");
    assert_eq!(lines[0]["user"], "666");
    assert_eq!(lines[0]["channel"], "telegram");
    assert_eq!(lines[1]["user"], "bob@example.com");
    assert_eq!(lines[1]["channel"], "email");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

fn http(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn get(port: u16, path: &str) -> String {
    http(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
    )
}

/// The health endpoint: off by default; on, /healthz, /readyz (503 with
/// the reasons until toold is connected) and Prometheus metrics that count
/// what happened. Malformed and oversized requests get 400, not a hang.
#[test]
fn health_endpoint_answers_readiness_and_metrics() {
    let llm = FakeLlm::start(vec![
        Step::Tool {
            name: "exec".into(),
            args: json!({"command": "true"}),
        },
        Step::Text("done".into()),
    ]);
    let port = free_port();
    let b = Broker::start(
        &llm.base_url,
        json!({"health": {"enabled": true, "port": port}}),
        secrets(json!({})),
    );
    let healthz = get(port, "/healthz");
    assert!(healthz.starts_with("HTTP/1.1 200"), "{healthz}\n{}", b.log_text());
    b.wait_tool_connected();
    let ready = get(port, "/readyz");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    b.agent("cli:metrics", "go").unwrap();
    let metrics = get(port, "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(metrics.contains("text/plain; version=0.0.4"), "{metrics}");
    for needle in [
        "oxibot_ready 1",
        "oxibot_tool_calls_total{tool=\"exec\",outcome=\"ok\"} 1",
        "oxibot_provider_requests_total{provider=\"openai\",outcome=\"ok\"} 2",
        "oxibot_provider_latency_seconds_count{provider=\"openai\"} 2",
        "oxibot_links_established_total{peer=\"toold\"} 1",
    ] {
        assert!(metrics.contains(needle), "{needle} missing:\n{metrics}");
    }
    assert!(get(port, "/nope").starts_with("HTTP/1.1 404"));
    assert!(http(port, b"POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
    assert!(http(port, b"\x16\x03\x01garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
    let huge = format!("GET /healthz HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    assert!(http(port, huge.as_bytes()).starts_with("HTTP/1.1 400"));
}

#[test]
fn readyz_says_what_is_missing() {
    if !nix::unistd::geteuid().is_root() {
        return oxibot_tests::harness::skip("needs root: the broker runs without its daemons");
    }
    let llm = FakeLlm::start(vec![]);
    let port = free_port();
    let b = Broker::start_unsupervised(
        &llm.base_url,
        json!({"health": {"enabled": true, "port": port}}),
        secrets(json!({})),
    );
    let ready = get(port, "/readyz");
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(ready.contains("the tool daemon is not connected"), "{ready}");
    assert!(get(port, "/metrics").contains("oxibot_ready 0"));
    drop(b);
}

/// The monitoring port's HTTP is parsed by oxibot-healthd, never by the
/// broker that holds every secret: with healthd stopped (SIGSTOP) nobody
/// answers, though the broker runs on; healthd itself is sandboxed
/// (no_new_privs, seccomp), has no secret in its environment, and when
/// the broker runs as root it is not root.
#[test]
fn the_health_endpoint_is_parsed_outside_the_broker() {
    let llm = FakeLlm::start(vec![]);
    let (b, port) = with_health(&llm);
    let status = wait_healthd(&b);
    let pid = pid_in(&status, "healthd") as i32;
    assert!(get(port, "/healthz").starts_with("HTTP/1.1 200"));

    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(proc_status.contains("\nNoNewPrivs:\t1"), "{proc_status}");
    assert!(proc_status.contains("\nSeccomp:\t2"), "{proc_status}");
    if nix::unistd::geteuid().is_root() {
        let uid_line = proc_status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(
            !uid_line.split_whitespace().skip(1).any(|u| u == "0"),
            "healthd runs as root: {uid_line}"
        );
    }
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&environ).contains("sk-"),
        "a key in healthd's environment"
    );

    // Stopped, nobody answers: the broker does not read the port itself.
    let healthd = nix::unistd::Pid::from_raw(pid);
    oxibot_tests::poll::stop_process(pid);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
    let mut buf = [0u8; 64];
    let unanswered = s.read(&mut buf);
    assert!(
        matches!(&unanswered, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut),
        "something other than healthd answered: {unanswered:?}"
    );
    assert!(b.status()["brokerPid"].as_i64().is_some(), "the broker runs on");
    nix::sys::signal::kill(healthd, nix::sys::signal::Signal::SIGCONT).unwrap();
    let mut answer = String::new();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// What a supervised child inherits is what the broker placed for it: its
/// link, a passed port, /dev/null as stdout (never the broker's journal
/// stream or the admin's terminal) — not a descriptor the broker was
/// itself started with.
#[test]
fn children_inherit_only_their_own_descriptors() {
    use std::os::fd::IntoRawFd;
    // The attack's starting point: a file left open, inheritable, by
    // whatever started the broker.
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("left-open-by-the-starter");
    std::fs::write(&marker, "not for the daemons").unwrap();
    let opened = std::fs::File::open(&marker).unwrap().into_raw_fd();
    // High, as a wrapper's would be: not where a child's own descriptors go.
    let fd = nix::fcntl::fcntl(opened, nix::fcntl::FcntlArg::F_DUPFD(100)).unwrap();
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty())).unwrap();

    let llm = FakeLlm::start(vec![]);
    let (b, _port) = with_health(&llm);
    b.wait_tool_connected();
    let status = wait_healthd(&b);
    let pid_of = |name: &str| pid_in(&status, name);
    let links = |pid: i64| -> Vec<(String, String)> {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| {
                let e = e.ok()?;
                let target = std::fs::read_link(e.path()).ok()?;
                Some((
                    e.file_name().to_string_lossy().into_owned(),
                    target.display().to_string(),
                ))
            })
            .collect()
    };
    let marked = marker.display().to_string();
    let broker_pid = status["brokerPid"].as_i64().unwrap();
    assert!(
        links(broker_pid).iter().any(|(_, t)| *t == marked),
        "the broker was started with the file open (the premise)"
    );
    for child in ["healthd", "toold"] {
        let fds = links(pid_of(child));
        assert!(
            !fds.iter().any(|(_, t)| *t == marked),
            "{child} inherited the starter's file: {fds:?}"
        );
        let stdout = fds.iter().find(|(n, _)| n == "1").map(|(_, t)| t.clone());
        assert_eq!(stdout.as_deref(), Some("/dev/null"), "{child}'s stdout: {fds:?}");
    }
}

/// A broker with the health endpoint on a free port.
fn with_health(llm: &FakeLlm) -> (Broker, u16) {
    let port = free_port();
    let b = Broker::start(
        &llm.base_url,
        json!({"health": {"enabled": true, "port": port}}),
        secrets(json!({})),
    );
    (b, port)
}

/// The status once healthd runs.
fn wait_healthd(b: &Broker) -> Value {
    b.wait_until("healthd running", CONNECT, |s| {
        s["processes"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["name"] == "healthd" && p["pid"].is_number()))
    })
}

/// A process's pid in a status.
fn pid_in(status: &Value, name: &str) -> i64 {
    status["processes"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name)?["pid"].as_i64())
        .unwrap_or_else(|| panic!("no {name} in {status}"))
}

/// `tool exec` passes its words as given (quoting included) and exits
/// with the command's own status.
#[test]
fn tool_exec_keeps_argv_and_exits_with_the_commands_status() {
    let llm = FakeLlm::start(vec![]);
    let broker = Broker::start(&llm.base_url, json!({}), secrets(json!({})));
    broker.wait_tool_connected();
    let out = broker.ctl(&["tool", "exec", "--", "sh", "-c", "echo one; echo two"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("one\ntwo\n"), "{text}");
    assert_eq!(code(&out), 0, "{text}");
    assert_eq!(code(&broker.ctl(&["tool", "exec", "--", "false"])), 1);
    assert_eq!(code(&broker.ctl(&["tool", "exec", "--", "sh", "-c", "exit 7"])), 7);
    // One word is a command line, as the shell reads it.
    let out = broker.ctl(&["tool", "exec", "--", "echo a | tr a b"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("b\n"), "{out:?}");
    assert_eq!(code(&out), 0);
}

/// A connection that closes before saying anything (a second broker's
/// liveness probe) is no protocol violation; garbage still is.
#[test]
fn a_liveness_probe_is_not_a_violation_and_garbage_is() {
    let llm = FakeLlm::start(vec![]);
    let broker = Broker::start(&llm.base_url, json!({}), secrets(json!({})));
    drop(std::os::unix::net::UnixStream::connect(broker.ctl_socket()).unwrap());
    {
        let mut garbage = std::os::unix::net::UnixStream::connect(broker.ctl_socket()).unwrap();
        garbage.write_all(&[0, 0, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap();
    }
    let violation = broker.wait_audit("protocol_violation", "ctl.sock");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        broker.audit("protocol_violation").len(),
        1,
        "the probe was counted: {violation}"
    );
}

/// A command that ran out of time is audited as `timeout`, not `ok`, and
/// `tool exec` exits 124 as timeout(1) does.
#[test]
fn a_timed_out_command_is_audited_as_a_timeout() {
    let llm = FakeLlm::start(vec![]);
    let broker = Broker::start(
        &llm.base_url,
        json!({"tools": {"exec": {"timeout": 1}}}),
        secrets(json!({})),
    );
    broker.wait_tool_connected();
    let out = broker.ctl(&["tool", "exec", "--", "sleep", "5"]);
    assert_eq!(code(&out), 124, "{}", String::from_utf8_lossy(&out.stdout));
    let entry = broker.wait_audit("tool_call", "exec");
    assert!(entry.contains("→ timeout"), "{entry}");
}
