//! The fixed part of every model call: the system prompt and the tool
//! schemas a first "hello" carries, in bytes and in estimated tokens (4
//! bytes a token: no tokenizer is reachable offline), without MCP servers,
//! with two (`tests/mcp/fake_server.py`) listed by name as they are now,
//! and with both servers' schemas loaded, as every call carried them
//! before they were loaded on first use.
//!
//! Run: `cargo build --workspace && cargo run -p oxibot-tests --bin prompt-bench`

use std::time::{Duration, Instant};

use oxibot_tests::assistant::{text, tool};
use oxibot_tests::fake_llm::FakeLlm;
use oxibot_tests::harness::{secrets, Broker};
use serde_json::{json, Value};

const SERVER: &str = include_str!("../../mcp/fake_server.py");

fn server() -> Value {
    let code: Vec<&str> = SERVER
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect();
    json!({"command": "/usr/bin/python3", "args": ["-c", code.join("\n")]})
}

fn report(what: &str, body: &Value) {
    let system = body["messages"][0]["content"].as_str().unwrap_or_default().len();
    let tools = body["tools"].to_string().len();
    let count = body["tools"].as_array().map_or(0, Vec::len);
    println!(
        "{what:<44} system {system:>6} B  tools {tools:>6} B ({count:>2} tools)  fixed {:>6} B ≈ {:>5} tokens",
        system + tools,
        (system + tools) / 4
    );
}

fn main() {
    // Without MCP servers.
    let llm = FakeLlm::start(vec![text("hi")]);
    let broker = Broker::start(&llm.base_url, json!({}), secrets(json!({})));
    broker.agent("bench-plain", "hello").expect("a reply");
    report("first \"hello\", no MCP server", &llm.requests()[0].body);
    drop(broker);

    // Two servers: listed by name, then loaded.
    let llm = FakeLlm::start(vec![
        text("hi"),
        tool("mcp_load", json!({"server": "alpha"})),
        tool("mcp_load", json!({"server": "beta"})),
        text("loaded"),
    ]);
    let broker = Broker::start(
        &llm.base_url,
        json!({"tools": {"mcpServers": {"alpha": server(), "beta": server()}}}),
        secrets(json!({})),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while String::from_utf8_lossy(&broker.ctl(&["mcp", "list"]).stdout)
        .matches("ready")
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "the servers did not start:\n{}",
            broker.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    broker.agent("bench-mcp", "hello").expect("a reply");
    broker.agent("bench-mcp", "load both").expect("a reply");
    let reqs = llm.requests();
    report("first \"hello\", 2 MCP servers listed by name", &reqs[0].body);
    report("2 MCP servers loaded (every call, before)", &reqs[3].body);
}
