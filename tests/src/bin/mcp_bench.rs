//! One MCP tool call's round trip through the whole path — the broker's
//! MCP client (rmcp), the relay through toold, a stdio server in the jail
//! (`tests/mcp/fake_server.py`, its `echo` tool) and back — over an open
//! ctl connection (`RunTool`, as `oxibotctl tool run` sends it), next to
//! an `exec true` through the same path; and the idle RSS of the server,
//! of toold's jail and of the broker, before and after the calls.
//!
//! Run: `cargo build --workspace && cargo run -p oxibot-tests --bin mcp-bench`
//! (add `--release` to both for production figures).

use std::time::{Duration, Instant};

use oxibot_proto::messages::{CtlReply, CtlRequest};
use oxibot_proto::{connect_handshake, Conn, Role};
use oxibot_tests::harness::{rss_kib, secrets, Broker};
use serde_json::json;

const WARMUP: usize = 20;
const N: usize = 500;
const SERVER: &str = include_str!("../../mcp/fake_server.py");

fn report(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{name:<40} n={:<4} p50={:>8.3} ms  p99={:>8.3} ms",
        v.len(),
        p(0.5).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3
    );
}

async fn run_tool(conn: &mut Conn<CtlReply, CtlRequest>, name: &str, args: &serde_json::Value) -> Duration {
    let t = Instant::now();
    conn.send(&CtlRequest::RunTool {
        name: name.into(),
        arguments_json: args.to_string(),
    })
    .await
    .expect("send");
    let reply = conn.recv().await.expect("recv");
    let elapsed = t.elapsed();
    assert!(matches!(reply, CtlReply::ToolResult { ok: true, .. }), "{reply:?}");
    elapsed
}

/// The host pid of the server: the process whose command line holds the
/// fake server's name.
fn server_pid() -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let text = String::from_utf8_lossy(&cmdline);
        (text.starts_with("/usr/bin/python3") && text.contains("oxibot-test-server")).then_some(pid)
    })
}

/// toold's jail: the child of the toold the broker started (pid 1 inside).
fn jail_pid(toold: i32) -> Option<i32> {
    let children = std::fs::read_to_string(format!("/proc/{toold}/task/{toold}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

fn main() {
    let code: Vec<&str> = SERVER
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect();
    let broker = Broker::start(
        "http://127.0.0.1:9",
        json!({"tools": {"mcpServers": {"bench": {
            "command": "/usr/bin/python3", "args": ["-c", code.join("\n")]
        }}}}),
        secrets(json!({})),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(&broker.ctl(&["mcp", "list"]).stdout).contains("ready") {
        assert!(
            Instant::now() < deadline,
            "the server did not start:\n{}",
            broker.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    let broker_pid = broker.child.id() as i32;
    let jail = broker.process_pid("toold").and_then(jail_pid).unwrap_or(0);
    let server = server_pid().unwrap_or(0);
    let rss = |when: &str| {
        println!(
            "RSS {when}: MCP server (python3) {} KiB, toold's jail {} KiB, broker {} KiB",
            rss_kib(server),
            rss_kib(jail),
            rss_kib(broker_pid)
        )
    };
    rss("idle");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (mcp, exec) = rt.block_on(async {
        let stream = tokio::net::UnixStream::connect(broker.ctl_socket()).await.expect("ctl");
        let mut conn: Conn<CtlReply, CtlRequest> = connect_handshake(stream, Role::Ctl, Role::Broker)
            .await
            .expect("handshake");
        let echo = json!({"text": "ping"});
        let exec = json!({"command": "true"});
        for _ in 0..WARMUP {
            run_tool(&mut conn, "mcp_bench_echo", &echo).await;
            run_tool(&mut conn, "exec", &exec).await;
        }
        let mut mcp = Vec::new();
        let mut execs = Vec::new();
        for _ in 0..N {
            mcp.push(run_tool(&mut conn, "mcp_bench_echo", &echo).await);
            execs.push(run_tool(&mut conn, "exec", &exec).await);
        }
        (mcp, execs)
    });
    report("MCP tool call (echo) through the jail", mcp);
    report("exec true, same path", exec);
    rss("after the calls");
}
