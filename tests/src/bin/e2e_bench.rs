//! Prints the figures the foundation issue asks for, measured on the real
//! binaries against the instant fake LLM:
//! - wall time of `oxibotctl agent -m` (process start included), p50/p99;
//! - one agent turn over an open ctl connection (broker overhead alone);
//! - a turn with one `exec` tool call round trip through toold;
//! - idle RSS of the broker and of toold.
//!
//! Run: `cargo build --workspace && cargo run -p oxibot-tests --bin e2e-bench`

use std::time::{Duration, Instant};

use oxibot_proto::messages::{CtlReply, CtlRequest};
use oxibot_proto::{connect_handshake, Conn, Role};
use oxibot_tests::bench::report;
use oxibot_tests::fake_llm::{FakeLlm, Step};
use oxibot_tests::harness::{rss_kib, Broker};
use serde_json::json;

const N: usize = 200;

/// One agent turn over an open control connection.
async fn turn(conn: &mut Conn<CtlReply, CtlRequest>, session: String) -> Duration {
    let t = Instant::now();
    conn.send(&CtlRequest::Agent {
        session,
        message: "hi".into(),
    })
    .await
    .unwrap();
    let reply = conn.recv().await.unwrap();
    assert!(matches!(reply, CtlReply::AgentReply { .. }), "{reply:?}");
    t.elapsed()
}

fn main() {
    let llm = FakeLlm::start(vec![]);
    let broker = Broker::start(
        &llm.base_url,
        json!({}),
        json!({"providers": {"openai": {"apiKey": "sk-bench-000000"}}}),
    );
    std::thread::sleep(Duration::from_secs(1));
    let broker_pid = broker.child.id() as i32;
    let toold_pid = broker.process_pid("toold").unwrap_or(0);
    println!(
        "idle RSS: broker {} KiB, toold {} KiB",
        rss_kib(broker_pid),
        rss_kib(toold_pid)
    );

    let mut cli = Vec::new();
    for i in 0..N {
        llm.push(Step::Text("ok".into()));
        let t = Instant::now();
        let out = broker.ctl(&["agent", "--session", &format!("cli{i}"), "-m", "hi"]);
        cli.push(t.elapsed());
        assert!(out.status.success());
    }
    report("oxibotctl agent -m (process + turn)", cli);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (direct, with_tool) = rt.block_on(async {
        let stream = tokio::net::UnixStream::connect(broker.ctl_socket()).await.unwrap();
        let mut conn: Conn<CtlReply, CtlRequest> = connect_handshake(stream, Role::Ctl, Role::Broker).await.unwrap();
        let mut direct = Vec::new();
        for i in 0..N {
            llm.push(Step::Text("ok".into()));
            direct.push(turn(&mut conn, format!("d{i}")).await);
        }
        let mut with_tool = Vec::new();
        for i in 0..N {
            llm.push(Step::Tool {
                name: "exec".into(),
                args: json!({"command": "true"}),
            });
            llm.push(Step::Text("ok".into()));
            with_tool.push(turn(&mut conn, format!("t{i}")).await);
        }
        (direct, with_tool)
    });
    report("agent turn over ctl.sock (no tools)", direct);
    report("agent turn with one exec tool call", with_tool);
    println!(
        "RSS after the run: broker {} KiB, toold {} KiB",
        rss_kib(broker_pid),
        rss_kib(toold_pid)
    );
}
