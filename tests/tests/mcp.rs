//! MCP servers, end to end: a stdio server (`tests/mcp/fake_server.py`)
//! runs in the jail, is listed, and its tools are called through the
//! broker's MCP client. Then what the issue asks of the jail around it:
//! its secrets out of reach of the commands and of another server, its
//! code and state read-only to commands, its network its own, a crash
//! that does not hang a turn, tools that may not pose as built-in ones.

use std::time::{Duration, Instant};

use oxibot_tests::both_modes;
use oxibot_tests::harness::{secrets, skip, Broker, Mode};
use serde_json::{json, Value};

const SERVER: &str = include_str!("../mcp/fake_server.py");
const ALPHA_TOKEN: &str = "alpha-token-3d1f0c9b7e";
const BETA_TOKEN: &str = "beta-token-8a2e4d6f1c";

fn server(extra_args: &[&str], more: Value) -> Value {
    // Without its comments: an argument is at most 4096 bytes.
    let code: Vec<&str> = SERVER
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect();
    let mut args = vec![json!("-c"), json!(code.join("\n"))];
    args.extend(extra_args.iter().map(|a| json!(a)));
    let mut s = json!({"command": "/usr/bin/python3", "args": args, "toolTimeout": 10});
    oxibot_tests::harness::merge(&mut s, more);
    s
}

/// A broker with servers `alpha` and `beta` (each with a secret of its
/// own) and whatever `more` adds, in `mode`; None (printed) when the mode
/// cannot run here.
fn broker(mode: Mode, more: Value) -> Option<Broker> {
    let run_as = match mode.run_as() {
        Ok(r) => r,
        Err(why) => {
            skip(&why);
            return None;
        }
    };
    let mut config = json!({"tools": {"mcpServers": {
        // Their env, TOKEN, comes from the secrets file only.
        "alpha": server(&[], json!({})),
        "beta": server(&[], json!({})),
    }}});
    oxibot_tests::harness::merge(&mut config, more);
    let secrets = secrets(json!({"tools": {"mcpServers": {
        "alpha": {"env": {"TOKEN": ALPHA_TOKEN}},
        "beta": {"env": {"TOKEN": BETA_TOKEN}},
    }}}));
    Some(Broker::start_as("http://127.0.0.1:9", config, secrets, run_as))
}

/// `oxibotctl --json mcp list`, by server name.
fn list(broker: &Broker) -> Value {
    let out = broker.ctl(&["--json", "mcp", "list"]);
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("no JSON: {}", String::from_utf8_lossy(&out.stderr)));
    let mut by_name = serde_json::Map::new();
    for s in v["servers"].as_array().cloned().unwrap_or_default() {
        by_name.insert(s["name"].as_str().unwrap_or_default().to_string(), s);
    }
    Value::Object(by_name)
}

fn wait_for(broker: &Broker, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let l = list(broker);
        if cond(&l) {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {l:#}\n{}",
            broker.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ready(broker: &Broker, names: &[&str]) -> Value {
    wait_for(broker, "the servers to be ready", |l| {
        names.iter().all(|n| l[*n]["state"] == "ready")
    })
}

/// Calls an MCP tool through the broker; the tool must have answered.
fn call(broker: &Broker, tool: &str, args: Value) -> String {
    let (ok, out) = broker.tool(tool, args);
    assert!(ok, "{tool} failed: {out}");
    out
}

fn has(out: &str, needle: &str) {
    assert!(out.contains(needle), "expected {needle:?} in:\n{out}");
}

fn sha256(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

both_modes!(a_server_is_listed_and_called_and_its_secret_is_its_own, |mode| {
    let Some(broker) = broker(mode, json!({})) else { return };
    let l = ready(&broker, &["alpha", "beta"]);
    assert_eq!(l["alpha"]["transport"], "stdio (in the jail)");
    let tools: Vec<&str> = l["alpha"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        tools.contains(&"mcp_alpha_echo") && tools.contains(&"mcp_alpha_read"),
        "{tools:?}"
    );

    // Called, and wrapped as a stranger's words.
    let out = call(&broker, "mcp_alpha_echo", json!({"text": "hello from the test"}));
    has(&out, "<untrusted_web_content_");
    has(&out, "source=\"MCP server alpha, tool echo\"");
    has(&out, "hello from the test");
    let row = broker.wait_audit("tool_call", "mcp_alpha_echo");
    has(&row, "mcp_alpha_echo");

    // Each server has its own secret, from the secrets file.
    has(
        &call(&broker, "mcp_alpha_secret_digest", json!({"name": "TOKEN"})),
        &sha256(ALPHA_TOKEN),
    );
    has(
        &call(&broker, "mcp_beta_secret_digest", json!({"name": "TOKEN"})),
        &sha256(BETA_TOKEN),
    );
    let pid = |name: &str| -> String {
        let out = call(&broker, &format!("mcp_{name}_pid"), json!({}));
        out.lines()
            .find(|l| l.trim().parse::<u32>().is_ok())
            .unwrap()
            .trim()
            .to_string()
    };
    let (alpha, beta) = (pid("alpha"), pid("beta"));

    // A command cannot read a server's environment or memory, write into
    // its input (Landlock: another domain), nor signal it.
    let out = broker.exec(&format!(
        "cat /proc/{alpha}/environ; echo; head -c 1 /proc/{alpha}/mem; echo '{{}}' > /proc/{alpha}/fd/0; kill -9 {alpha}"
    ));
    // (The broker would scrub the token from the output: not seeing it
    // proves nothing, the refusals do.)
    assert!(!out.contains(ALPHA_TOKEN) && !out.contains("[REDACTED]"), "{out}");
    assert_eq!(out.matches("Permission denied").count(), 3, "{out}");
    has(&out, "Operation not permitted");
    // Nor another server; nor can it see alpha's calls (its input and
    // output pipes).
    for what in ["environ", "fd/0", "fd/1"] {
        let out = call(
            &broker,
            "mcp_beta_read",
            json!({"path": format!("/proc/{alpha}/{what}")}),
        );
        has(&out, "error: Permission denied");
    }
    // Nor the broker's secrets or memory: not in the jail at all.
    let secrets_file = broker.dir.path().join("secrets.json");
    let out = call(&broker, "mcp_alpha_read", json!({"path": secrets_file}));
    has(&out, "error: No such file or directory");
    let out = call(
        &broker,
        "mcp_alpha_read",
        json!({"path": format!("/proc/{}/mem", broker.child.id())}),
    );
    assert!(
        out.contains("error: No such file") || out.contains("error: Permission denied"),
        "{out}"
    );
    // The server still runs, untouched by the command's kill.
    has(
        &call(&broker, "mcp_alpha_echo", json!({"text": "still here"})),
        "still here",
    );

    // Its state directory is its own: written by it, read by no command
    // and no other server.
    has(
        &call(
            &broker,
            "mcp_alpha_write",
            json!({"path": "token.txt", "text": ALPHA_TOKEN}),
        ),
        "ok",
    );
    let out = broker.exec("ls /mcp; cat /mcp/*/token.txt; echo planted > /mcp/0/x; echo planted > /mcp/1/x");
    // (The broker would scrub the token from the output: not seeing it
    // proves nothing, the refusals do.)
    assert!(!out.contains(ALPHA_TOKEN) && !out.contains("[REDACTED]"), "{out}");
    assert_eq!(out.matches("Permission denied").count(), 3, "{out}");
    let reads: Vec<String> = (0..2)
        .map(|slot| {
            call(
                &broker,
                "mcp_beta_read",
                json!({"path": format!("/mcp/{slot}/token.txt")}),
            )
        })
        .collect();
    assert!(reads.iter().all(|r| !r.contains("[REDACTED]")), "{reads:?}");
    assert!(
        reads.iter().any(|r| r.contains("error: Permission denied")),
        "{reads:?}"
    );
    // A command may take the modes away (same user; Landlock does not
    // cover chmod), but the server gets them back with its next message.
    let out = broker.exec("chmod 000 /mcp/0 /mcp/1 /mcp/0/token.txt /mcp/1/token.txt 2>&1; echo done");
    has(&out, "done");
    has(
        &call(&broker, "mcp_alpha_write", json!({"path": "more.txt", "text": "x"})),
        "ok",
    );
    // Its files too, not only its directory.
    has(&call(&broker, "mcp_alpha_read", json!({"path": "token.txt"})), "ok: ");
    // Its code is read-only to commands.
    let out = broker.exec("echo planted >> /usr/bin/python3; touch /opt/planted");
    let refused = out.matches("Read-only file system").count() + out.matches("Permission denied").count();
    assert_eq!(refused, 2, "{out}");
    let _ = beta;
});

both_modes!(a_crashing_server_does_not_hang_the_turn_and_comes_back, |mode| {
    let Some(broker) = broker(mode, json!({})) else { return };
    ready(&broker, &["alpha", "beta"]);
    // What it started, in its session and out of it, ends with it.
    let pid = |detach: bool| -> String {
        let out = call(&broker, "mcp_alpha_fork", json!({"detach": detach}));
        out.lines()
            .find(|l| l.trim().parse::<u32>().is_ok())
            .unwrap()
            .trim()
            .to_string()
    };
    let (child, escaped) = (pid(false), pid(true));
    // Looked at from the other server: an exec would kill what it left
    // behind in a session of its own anyway, when it ends.
    let alive = |pid: &str| {
        let out = call(&broker, "mcp_beta_read", json!({"path": format!("/proc/{pid}/stat")}));
        if out.contains("ok: ") && !out.contains(" Z ") {
            "alive"
        } else {
            "gone"
        }
    };
    assert_eq!(alive(&child), "alive");
    assert_eq!(alive(&escaped), "alive");
    let started = Instant::now();
    let (ok, out) = broker.tool("mcp_alpha_crash", json!({}));
    assert!(!ok, "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the call hung: {:?}",
        started.elapsed()
    );
    has(&out, "MCP server \"alpha\"");
    // While it restarts, a call says so at once, in the broker's words
    // (its stderr is the admin's to read, not the model's).
    let (ok, out) = broker.tool("mcp_alpha_echo", json!({"text": "too early"}));
    if !ok {
        has(&out, "is not running");
        assert!(!out.contains("crashing on purpose"), "{out}");
    }
    // Its end, in the list; then it runs again.
    let l = wait_for(&broker, "the crash to be recorded", |l| {
        l["alpha"]["restarts"].as_u64() >= Some(1)
    });
    let error = l["alpha"]["lastError"].as_str().unwrap_or_default().to_string();
    has(&error, "exited with code 3");
    has(&error, "crashing on purpose");
    ready(&broker, &["alpha"]);
    has(&call(&broker, "mcp_alpha_echo", json!({"text": "back"})), "back");
    assert_eq!(alive(&child), "gone");
    assert_eq!(alive(&escaped), "gone");
    broker.wait_audit("mcp_server", "MCP server alpha stopped: exited with code 3");
});

#[test]
fn a_server_may_not_pose_as_a_built_in_tool_or_flood_the_prompt() {
    let Some(broker) = broker(
        Mode::RootStarted,
        json!({"tools": {"mcpServers": {"evil": server(&["--hostile"], json!({}))}}}),
    ) else {
        return;
    };
    let l = ready(&broker, &["evil"]);
    let refused: Vec<String> = l["evil"]["refused"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r.as_str().map(String::from))
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    has(&refused[0], "exec: \"exec\" is the name of a built-in tool");
    has(&refused[1], "novel: its description is 102400 bytes");
    let tools = l["evil"]["tools"].to_string();
    has(&tools, "mcp_evil_echo");
    assert!(!tools.contains("exec") && !tools.contains("novel"), "{tools}");
    // As the admin reads it.
    let out = broker.ctl(&["mcp", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    has(&text, "refused: exec: \"exec\" is the name of a built-in tool");
}

fn upstream(body: &'static str) -> u16 {
    oxibot_tests::upstream::plain(body).0
}

both_modes!(
    a_server_reaches_its_own_hosts_through_the_door_and_commands_do_not,
    |mode| {
        let for_alpha = upstream("hello alpha");
        let for_commands = upstream("hello commands");
        let Some(broker) = broker(
            mode,
            json!({"tools": {
                "exec": {"allowedHosts": [format!("127.0.0.1:{for_commands}")]},
                "web": {"allowPrivate": ["127.0.0.1"]},
                "mcpServers": {"alpha": {"allowedHosts": [format!("127.0.0.1:{for_alpha}")]}},
            }}),
        ) else {
            return;
        };
        broker.wait_audit("link_established", "egress daemon connected");
        ready(&broker, &["alpha", "beta"]);
        let url = |port: u16| json!({"url": format!("http://127.0.0.1:{port}/")});
        // Its own host, through the door, filed under the server.
        has(
            &call(&broker, "mcp_alpha_fetch", url(for_alpha)),
            "status 200: hello alpha",
        );
        let row = broker.wait_audit("egress", &format!(":{for_alpha} allowed"));
        has(&row, "mcp:alpha");
        has(&row, "MCP server alpha");
        // Not the commands' host: its list is its own.
        let out = call(&broker, "mcp_alpha_fetch", url(for_commands));
        has(&out, "is not in this MCP server's allowedHosts");
        // A command cannot reach the server's host, nor another server.
        let out = broker.exec(&format!("curl -sS --max-time 10 http://127.0.0.1:{for_alpha}/"));
        has(&out, "is not in tools.exec.allowedHosts");
        assert!(!out.contains("hello alpha"), "{out}");
        has(&call(&broker, "mcp_beta_fetch", url(for_alpha)), "error:");
        // The commands still reach theirs.
        has(
            &broker.exec(&format!("curl -sS --max-time 10 http://127.0.0.1:{for_commands}/")),
            "hello commands",
        );
    }
);

/// A Streamable HTTP MCP server on the host's loopback, speaking JSON
/// answers (no event stream): `lookup` answers whether the request came
/// with `Authorization: Bearer <token>`.
fn http_server(token: &'static str) -> u16 {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut out = stream;
                loop {
                    let mut head = Vec::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push(line.trim_end().to_string());
                    }
                    let header = |name: &str| {
                        head.iter()
                            .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)))
                            .map(|(_, v)| v.trim().to_string())
                    };
                    let length: usize = header("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
                    let mut body = vec![0u8; length];
                    reader.read_exact(&mut body).unwrap();
                    let authorized = header("authorization").as_deref() == Some(&format!("Bearer {token}"));
                    let (status, answer) = if !head[0].starts_with("POST") {
                        ("405 Method Not Allowed", String::new())
                    } else {
                        let msg: Value = serde_json::from_slice(&body).unwrap_or_default();
                        let id = msg["id"].clone();
                        let result = match msg["method"].as_str().unwrap_or_default() {
                            _ if id.is_null() => None,
                            "initialize" => Some(json!({
                                "protocolVersion": msg["params"]["protocolVersion"],
                                "capabilities": {"tools": {}},
                                "serverInfo": {"name": "remote", "version": "1"}
                            })),
                            "tools/list" => Some(json!({"tools": [
                                {"name": "lookup", "description": "Looks up.", "inputSchema": {"type": "object"}}
                            ]})),
                            "tools/call" => Some(json!({"content": [{"type": "text",
                                "text": if authorized { "remote answer, authorized" } else { "remote answer, NO token" }}]})),
                            _ => Some(json!({})),
                        };
                        match result {
                            None => ("202 Accepted", String::new()),
                            Some(r) => ("200 OK", json!({"jsonrpc": "2.0", "id": id, "result": r}).to_string()),
                        }
                    };
                    let _ = write!(
                        out,
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nMcp-Session-Id: s-1\r\n\
                         Content-Length: {}\r\n\r\n{answer}",
                        answer.len()
                    );
                }
            });
        }
    });
    port
}

#[test]
fn an_http_server_is_reached_through_the_guard_with_its_headers() {
    let port = http_server("remote-token-6b1d");
    let url = format!("http://127.0.0.1:{port}/mcp");
    let servers = json!({"mcpServers": {"remote": {"url": url}}});
    // Loopback is refused by the guard unless tools.web.allowPrivate lists it.
    let broker = Broker::start(
        "http://127.0.0.1:9",
        json!({"tools": servers}),
        secrets(
            json!({"tools": {"mcpServers": {"remote": {"headers": {"Authorization": "Bearer remote-token-6b1d"}}}}}),
        ),
    );
    let l = wait_for(&broker, "the guard's refusal", |l| {
        l["remote"]["restarts"].as_u64() >= Some(1)
    });
    let error = l["remote"]["lastError"].as_str().unwrap_or_default().to_string();
    has(&error, "could not be reached");
    has(&error, "allowPrivate");
    drop(broker);

    let mut config = json!({"tools": servers});
    config["tools"]["web"] = json!({"allowPrivate": ["127.0.0.1"]});
    let broker = Broker::start(
        "http://127.0.0.1:9",
        config,
        secrets(
            json!({"tools": {"mcpServers": {"remote": {"headers": {"Authorization": "Bearer remote-token-6b1d"}}}}}),
        ),
    );
    let l = ready(&broker, &["remote"]);
    assert_eq!(l["remote"]["transport"], "http (from the broker, through the guard)");
    let out = call(&broker, "mcp_remote_lookup", json!({}));
    has(&out, "remote answer, authorized");
    has(&out, "<untrusted_web_content_");
    broker.wait_audit("mcp_server", "MCP server remote reached at http://127.0.0.1");
}

/// A process family that keeps forking, each child taking over when its
/// parent is killed: a kill per listed pid misses the child born after
/// the listing. Started by a command in a session of its own, while an
/// MCP server runs (so that the end of the command cannot kill the whole
/// jail at once).
const HYDRA: &str = r#"
import os, sys, time
def master():
    while True:
        try:
            pid = os.fork()
        except OSError:
            time.sleep(0.01)
            continue
        if pid == 0:
            parent = os.getppid()
            time.sleep(0.003)
            if os.getppid() != parent:
                master()
            os._exit(0)
        time.sleep(0.001)
        try:
            os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pass
if os.fork() == 0:
    os.setsid()
    master()
"#;

/// The process limit counts every process of the tool user on the host,
/// other tests' jails included: a test that fills it keeps its own low.
fn low_process_limit() -> Value {
    json!({"tools": {"exec": {"maxProcesses": 48}}})
}

both_modes!(a_family_that_keeps_forking_does_not_outlive_its_command, |mode| {
    let Some(broker) = broker(mode, low_process_limit()) else {
        return;
    };
    ready(&broker, &["alpha"]);
    std::fs::write(broker.workspace.join("hydra.py"), HYDRA).unwrap();
    // And a process whose name is not text (a sweep that read its stat as
    // UTF-8 did not see it).
    let ghost = r#"cp /bin/sleep "/tmp/x$(printf '\377')"; setsid "/tmp/x$(printf '\377')" 1000.123 </dev/null >/dev/null 2>&1 &"#;
    let count = "grep -l -e 'hydra[.]py' -e '1000[.]123' /proc/[0-9]*/cmdline 2>/dev/null | wc -l";
    // Running while its command runs.
    let out = broker.exec(&format!(
        "python3 hydra.py </dev/null >/dev/null 2>&1; {ghost} sleep 0.5; {count}; grep -l '1000[.]123' /proc/[0-9]*/cmdline | wc -l"
    ));
    let counts: Vec<u32> = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
    // (The shell running this counts once in each.)
    assert!(
        counts.len() == 2 && counts[0] > counts[1] && counts[1] >= 2,
        "not all started: {out}"
    );
    // Gone once it ended, for good.
    for _ in 0..3 {
        let out = broker.exec(&format!("sleep 0.3; {count}"));
        assert_eq!(out.lines().next().map(str::trim), Some("0"), "{out}");
    }
    // The server lives on.
    has(&call(&broker, "mcp_alpha_echo", json!({"text": "alive"})), "alive");
});

/// Fills the process limit, every process in the command's own session,
/// and holds it for a few seconds.
const FILL: &str = r#"
import os, time
n = 0
while True:
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(6)
        os._exit(0)
    n += 1
print("forked", n)
time.sleep(6)
"#;

#[test]
fn a_command_that_fills_the_process_limit_gets_other_calls_an_answer_not_a_hang() {
    let Some(broker) = broker(Mode::RootStarted, low_process_limit()) else {
        return;
    };
    ready(&broker, &["alpha"]);
    std::fs::write(broker.workspace.join("fill.py"), FILL).unwrap();
    // tokio's blocking threads idle out after 10 s: none is left to take
    // work when the limit is full.
    std::thread::sleep(Duration::from_secs(11));
    let broker = std::sync::Arc::new(broker);
    let filler = {
        let broker = broker.clone();
        std::thread::spawn(move || broker.exec("python3 fill.py"))
    };
    std::thread::sleep(Duration::from_secs(2));
    // Another chat's command: refused at once (the limit is every
    // command's), answered either way — never left hanging.
    let started = Instant::now();
    let (ok, out) = broker.tool("exec", json!({"command": "echo victim"}));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}: {out}",
        started.elapsed()
    );
    assert!(
        ok && out.contains("victim") || out.contains("Resource temporarily unavailable"),
        "{out}"
    );
    has(&filler.join().unwrap(), "forked");
    // toold lived through it, and so did the server.
    has(&broker.exec("echo after"), "after");
    has(&call(&broker, "mcp_alpha_echo", json!({"text": "alive"})), "alive");
    assert!(!broker.log_text().contains("panicked"), "{}", broker.log_text());
}

/// The names of the tools a model request offered (OpenAI's shape).
fn offered(body: &Value) -> Vec<String> {
    body["tools"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|d| d["function"]["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_first_hello_lists_servers_by_name_and_loading_one_brings_its_schemas() {
    use oxibot_tests::assistant::{text, tool};
    use oxibot_tests::fake_llm::FakeLlm;
    let llm = FakeLlm::start(vec![
        tool("mcp_load", json!({"server": "alpha"})),
        tool("mcp_alpha_echo", json!({"text": "loaded and called"})),
        text("done"),
    ]);
    let run_as = match Mode::RootStarted.run_as() {
        Ok(r) => r,
        Err(why) => {
            skip(&why);
            return;
        }
    };
    let config = json!({"tools": {"mcpServers": {"alpha": server(&[], json!({})), "beta": server(&[], json!({}))}}});
    let secrets = secrets(json!({"tools": {"mcpServers": {
        "alpha": {"env": {"TOKEN": ALPHA_TOKEN}}, "beta": {"env": {"TOKEN": BETA_TOKEN}},
    }}}));
    let broker = Broker::start_as(&llm.base_url, config, secrets, run_as);
    ready(&broker, &["alpha", "beta"]);
    assert_eq!(broker.agent("console-lazy", "hello").unwrap(), "done");
    let reqs = llm.requests();
    assert_eq!(reqs.len(), 3);
    // The first call names the servers' tools but carries no schema of theirs.
    let first = offered(&reqs[0].body);
    assert!(first.contains(&"mcp_load".to_string()), "{first:?}");
    assert!(
        !first
            .iter()
            .any(|n| n.starts_with("mcp_alpha_") || n.starts_with("mcp_beta_")),
        "{first:?}"
    );
    let listing = reqs[0].body["tools"].to_string();
    has(&listing, "alpha: ");
    has(&listing, "beta: ");
    has(&listing, " echo ");
    // After the load: alpha's tools in full, beta's still by name.
    let second = offered(&reqs[1].body);
    assert!(second.contains(&"mcp_alpha_echo".to_string()), "{second:?}");
    assert!(!second.iter().any(|n| n.starts_with("mcp_beta_")), "{second:?}");
    assert!(second.contains(&"mcp_load".to_string()));
    let result = oxibot_tests::fake_llm::last_tool_result(&reqs[2].body, false).unwrap_or_default();
    has(&result, "loaded and called");
    let bytes = |b: &Value| b["tools"].to_string().len();
    println!(
        "tool schemas per call: {} bytes before loading, {} after loading alpha",
        bytes(&reqs[0].body),
        bytes(&reqs[1].body)
    );
}
