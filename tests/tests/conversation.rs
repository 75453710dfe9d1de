//! End to end: oxibotctl → broker → fake LLM → toold → back, over real
//! sockets with the real binaries.

use std::time::{Duration, Instant};

use oxibot_tests::consts::LLM_KEY;
use oxibot_tests::fake_llm::{FakeLlm, Step};
use oxibot_tests::harness::{secrets, Broker};
use oxibot_tests::poll::{self, POLL};
use serde_json::{json, Value};

fn tool(name: &str, args: Value) -> Step {
    Step::Tool {
        name: name.into(),
        args,
    }
}

fn write_read_script() -> Vec<Step> {
    vec![
        tool(
            "write_file",
            json!({"path": "notes/hello.txt", "content": "hi from oxibot"}),
        ),
        tool("read_file", json!({"path": "notes/hello.txt"})),
        Step::EchoLastTool,
    ]
}

#[test]
fn openai_conversation_writes_then_reads_a_file() {
    let llm = FakeLlm::start(write_read_script());
    let broker = Broker::start(&llm.base_url, json!({}), secrets(json!({})));
    let started = Instant::now();
    let out = broker.ctl(&["agent", "--session", "s1", "-m", "save a note"]);
    let elapsed = started.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "tool said: hi from oxibot");
    eprintln!("oxibotctl agent -m wall time against the fake LLM: {elapsed:?}");

    // The file is on disk, written by toold.
    let on_disk = std::fs::read_to_string(broker.workspace.join("notes/hello.txt")).unwrap();
    assert_eq!(on_disk, "hi from oxibot");

    // The session holds the whole turn, each tool result after its call.
    let msgs = broker.messages("s1");
    let roles: Vec<&str> = msgs.iter().map(|m| m.0.as_str()).collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant", "tool", "assistant"]);
    let first_calls: Value = serde_json::from_str(msgs[1].2.as_deref().unwrap()).unwrap();
    assert_eq!(first_calls[0]["name"], "write_file");
    assert_eq!(msgs[2].3.as_deref(), Some(first_calls[0]["id"].as_str().unwrap()));
    assert!(msgs[2].1.contains("wrote 14 bytes"), "{}", msgs[2].1);
    assert_eq!(msgs[4].1, "hi from oxibot");
    assert_eq!(msgs[5].1, "tool said: hi from oxibot");

    // The wire: three requests, each with our key and only to our base URL;
    // the second carries the first tool result under the right id.
    let reqs = llm.requests();
    assert_eq!(reqs.len(), 3);
    for r in &reqs {
        assert_eq!(r.path, "/v1/chat/completions");
        assert_eq!(r.header("authorization"), Some(format!("Bearer {LLM_KEY}").as_str()));
        assert_eq!(r.body["temperature"], 0.0);
        assert_eq!(r.body["max_tokens"], 512);
    }
    let tools: Vec<&str> = reqs[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        tools,
        [
            "exec",
            "read_file",
            "write_file",
            "edit_file",
            "list_dir",
            "find_files",
            "grep",
            "apply_patch",
            // The broker's own; a console session without a search key.
            "web_fetch",
            "message",
            "cron",
            "spawn",
            "time"
        ]
    );
    let second = reqs[1].body["messages"].as_array().unwrap();
    let tool_msg = second.iter().find(|m| m["role"] == "tool").unwrap();
    assert_eq!(tool_msg["tool_call_id"], "call_1");
    assert_eq!(second[0]["role"], "system");

    // Token usage was recorded for the session: 2 tool steps + final answer.
    let (prompt, completion): (i64, i64) = broker
        .db()
        .query_row(
            "SELECT prompt_tokens, completion_tokens FROM sessions WHERE id = 's1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((prompt, completion), (11 + 11 + 13, 7 + 7 + 5));

    // The next turn sees the history.
    llm.push(Step::Text("again".into()));
    assert_eq!(broker.agent("s1", "and now?").unwrap(), "again");
    let last = llm.requests().pop().unwrap();
    assert_eq!(last.body["messages"].as_array().unwrap().len(), 1 + 6 + 1);
}

#[test]
fn anthropic_conversation_writes_then_reads_a_file() {
    let llm = FakeLlm::start(write_read_script());
    let key = "sk-ant-TESTKEY-abcdef123456";
    let patch = json!({
        "agents": {"defaults": {"model": "claude-test", "provider": "anthropic"}},
        "providers": {"anthropic": {"apiBase": llm.base_url}}
    });
    let broker = Broker::start(
        &llm.base_url,
        patch,
        json!({"providers": {"anthropic": {"apiKey": key}}}),
    );
    assert_eq!(broker.agent("a1", "save a note").unwrap(), "tool said: hi from oxibot");
    assert_eq!(
        std::fs::read_to_string(broker.workspace.join("notes/hello.txt")).unwrap(),
        "hi from oxibot"
    );

    let reqs = llm.requests();
    assert_eq!(reqs.len(), 3);
    for r in &reqs {
        assert_eq!(r.path, "/v1/messages");
        assert_eq!(r.header("x-api-key"), Some(key));
        assert_eq!(
            r.header("authorization"),
            None,
            "an Anthropic key must not be sent as a Bearer token"
        );
        assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
        // The stable prefix (the tools, the system prompt up to the time)
        // is marked for the prompt cache; the time is after the mark.
        let system = r.body["system"].as_array().unwrap();
        assert!(system[0]["text"].as_str().unwrap().contains("OxiBot"));
        assert_eq!(system[0]["cache_control"]["type"], "ephemeral");
        assert!(system[1]["text"].as_str().unwrap().starts_with("\n## Now\n"));
        assert!(system[1].get("cache_control").is_none());
        assert_eq!(r.body["tools"][0]["input_schema"]["type"], "object");
        let tools = r.body["tools"].as_array().unwrap();
        assert_eq!(tools.last().unwrap()["cache_control"]["type"], "ephemeral");
    }
    // Anthropic's shape: tool_use in the assistant turn, tool_result in the next user turn.
    let msgs = reqs[1].body["messages"].as_array().unwrap();
    assert_eq!(msgs[1]["role"], "assistant");
    assert_eq!(msgs[1]["content"][1]["type"], "tool_use");
    assert_eq!(msgs[1]["content"][1]["input"]["path"], "notes/hello.txt");
    assert_eq!(msgs[2]["role"], "user");
    assert_eq!(msgs[2]["content"][0]["type"], "tool_result");
    assert_eq!(msgs[2]["content"][0]["tool_use_id"], msgs[1]["content"][1]["id"]);

    let roles: Vec<String> = broker.messages("a1").into_iter().map(|m| m.0).collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant", "tool", "assistant"]);
}

#[test]
fn rate_limit_with_retry_after_is_honoured() {
    let llm = FakeLlm::start(vec![
        Step::Status {
            code: 429,
            retry_after: Some("1".into()),
            body: "slow down".into(),
        },
        Step::Text("after the wait".into()),
    ]);
    let broker = Broker::start(&llm.base_url, json!({}), secrets(json!({})));
    assert_eq!(broker.agent("r", "hi").unwrap(), "after the wait");
    let reqs = llm.requests();
    assert_eq!(reqs.len(), 2);
    // The configured backoff is 50 ms; only Retry-After explains a 1 s gap.
    let gap = reqs[1].at - reqs[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "retried after {gap:?}, before Retry-After: 1"
    );
}

#[test]
fn server_errors_fall_back_to_the_next_model() {
    let llm = FakeLlm::start(vec![Step::Text("from the fallback".into())]);
    llm.fail_model("gpt-primary");
    let patch = json!({"agents": {"defaults": {"model": "gpt-primary", "fallbackModels": ["gpt-fallback"]}}});
    let broker = Broker::start(&llm.base_url, patch, secrets(json!({})));
    assert_eq!(broker.agent("f", "hi").unwrap(), "from the fallback");
    let models: Vec<String> = llm.requests().iter().map(|r| r.model().to_string()).collect();
    // maxRetries 2: three tries of the primary, then the fallback.
    assert_eq!(models, ["gpt-primary", "gpt-primary", "gpt-primary", "gpt-fallback"]);
}

#[test]
fn every_model_failing_is_a_clear_error_and_the_broker_stays_up() {
    let llm = FakeLlm::start(vec![Step::Garbage("<html>proxy error</html>".into())]);
    llm.fail_model("gpt-fallback");
    let patch = json!({"agents": {"defaults": {"fallbackModels": ["gpt-fallback"], "maxRetries": 0}}});
    let broker = Broker::start(&llm.base_url, patch, secrets(json!({})));
    let err = broker.agent("e", "hi").unwrap_err();
    assert!(err.contains("every model failed"), "{err}");
    assert!(
        err.contains("gpt-test") && err.contains("gpt-fallback") && err.contains("HTTP 500"),
        "{err}"
    );
    assert!(!err.contains(LLM_KEY));
    let status = broker.status();
    assert!(status["lastError"].as_str().unwrap().contains("every model failed"));
}

#[test]
fn sessions_do_not_wait_on_each_other() {
    let llm = FakeLlm::start(vec![
        Step::Delay(Duration::from_secs(4), Box::new(Step::Text("slow".into()))),
        Step::Text("fast".into()),
    ]);
    let broker = Broker::start(&llm.base_url, json!({}), secrets(json!({})));
    let slow = broker
        .ctl_command(&["agent", "--session", "slow", "-m", "hi"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The slow session's request is now in flight, holding its session lock.
    llm.wait_requests(1, Duration::from_secs(10));
    let started = Instant::now();
    assert_eq!(broker.agent("fast", "hi").unwrap(), "fast");
    let fast_took = started.elapsed();
    assert!(
        fast_took < Duration::from_secs(3),
        "session 'fast' waited {fast_took:?} for session 'slow'"
    );
    let slow_out = slow.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&slow_out.stdout).trim(), "slow");
}

#[test]
fn max_tool_iterations_and_repeated_calls_are_stopped() {
    // Three distinct calls and a limit of three: never a final answer.
    let llm = FakeLlm::start(vec![
        tool("list_dir", json!({"path": "."})),
        tool("list_dir", json!({"path": "./"})),
        tool("list_dir", json!({"path": "./."})),
    ]);
    let patch = json!({"agents": {"defaults": {"maxToolIterations": 3}}});
    let broker = Broker::start(&llm.base_url, patch, secrets(json!({})));
    let reply = broker.agent("m", "loop").unwrap();
    assert!(reply.contains("stopped after 3 tool steps"), "{reply}");
    assert_eq!(llm.requests().len(), 3);

    for _ in 0..3 {
        llm.push(tool("exec", json!({"command": "true"})));
    }
    let reply = broker.agent("m2", "repeat").unwrap();
    assert!(reply.contains("repeating the same tool call"), "{reply}");
    // The third identical call was not run: its result says so.
    let msgs = broker.messages("m2");
    let results: Vec<&str> = msgs.iter().filter(|m| m.0 == "tool").map(|m| m.1.as_str()).collect();
    assert_eq!(results.len(), 3);
    assert!(results[0].contains("[exit code: 0]"));
    assert!(results[2].contains("identical arguments"), "{}", results[2]);
}

#[test]
fn chat_is_a_conversation_on_stdin() {
    let llm = FakeLlm::start(vec![
        Step::Text("first answer".into()),
        Step::Text("second answer".into()),
    ]);
    let broker = Broker::start(&llm.base_url, json!({}), secrets(json!({})));
    let mut chat = broker
        .ctl_command(&["--json", "chat", "--session", "console:me"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let stdin = chat.stdin.as_mut().unwrap();
        stdin.write_all(b"hello\n\nhow are you?\n/quit\nnever sent\n").unwrap();
    }
    let out = chat.wait_with_output().unwrap();
    assert!(out.status.success());
    let replies: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        replies,
        [json!({"reply": "first answer"}), json!({"reply": "second answer"})]
    );
    // One session, both turns, and the second request carried the first turn.
    let roles: Vec<String> = broker.messages("console:me").into_iter().map(|m| m.0).collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
    assert_eq!(llm.requests()[1].body["messages"].as_array().unwrap().len(), 4);
}

#[test]
fn sigterm_stops_the_broker_and_its_children() {
    let llm = FakeLlm::start(vec![]);
    let mut broker = Broker::start(&llm.base_url, json!({}), secrets(json!({})));
    let toold = broker.process_pid("toold").unwrap();
    let pid = nix::unistd::Pid::from_raw(broker.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    poll::until(Duration::from_secs(10), POLL, || (!broker.is_running()).then_some(()))
        .expect("the broker ignored SIGTERM");
    assert!(broker.child.wait().unwrap().success());
    // toold is gone too (its /proc entry disappears once it is reaped).
    let gone = |p: i32| {
        !std::path::Path::new(&format!("/proc/{p}")).exists()
            || std::fs::read_to_string(format!("/proc/{p}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true)
    };
    assert!(gone(toold), "toold {toold} outlived the broker");
    assert!(
        !broker.runtime.join("ctl.sock").exists(),
        "the broker left its socket behind"
    );
}
