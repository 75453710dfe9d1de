//! Round trips broker → toold → broker, measured on the real, jailed tool
//! daemon over its real socket, with this process playing the broker:
//! - `exec true`, next to spawning `/bin/sh -c true` directly (no jail) in
//!   the same run;
//! - `read_file` of a 4 KiB file.
//!
//! Run: `cargo build --workspace && cargo run -p oxibot-tests --bin tool-bench`
//! (add `--release` to both for production figures). As root, toold becomes
//! `oxibot-tool`, which must exist; otherwise it uses a user namespace.

use std::time::{Duration, Instant};

use oxibot_proto::messages::{ToolCall, ToolOutcome, ToolReply, ToolRequest};
use oxibot_proto::{accept_handshake, Conn, Role};

const WARMUP: usize = 50;
const N: usize = 2000;

fn stats(name: &str, mut v: Vec<Duration>) -> Duration {
    v.sort();
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{name:<36} n={:<5} p50={:>8.1} µs  p99={:>8.1} µs",
        v.len(),
        p(0.5).as_secs_f64() * 1e6,
        p(0.99).as_secs_f64() * 1e6
    );
    p(0.5)
}

async fn round_trip(conn: &mut Conn<ToolReply, ToolRequest>, id: u64, call: ToolCall) -> Duration {
    let t = Instant::now();
    conn.send(&ToolRequest::Call { id, call }).await.expect("send");
    let ToolReply::Result { id: got, outcome } = conn.recv().await.expect("recv") else {
        panic!("toold sent MCP output to a benchmark that started no server")
    };
    let elapsed = t.elapsed();
    assert_eq!(got, id);
    if let ToolOutcome::Failed { message } = outcome {
        panic!("tool failed: {message}");
    }
    elapsed
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let workspace = dir.path().join("workspace");
    std::fs::create_dir(&workspace).expect("workspace");
    std::fs::write(workspace.join("4k.txt"), "x".repeat(4096)).expect("file");
    let sock = dir.path().join("tool.sock");
    let sandbox = std::env::var("OXIBOT_BENCH_SANDBOX").unwrap_or_else(|_| "on".into());

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = tokio::net::UnixListener::bind(&sock).expect("bind");
        let mut toold = tokio::process::Command::new(oxibot_tests::harness::bin("oxibot-toold"))
            .arg("--socket")
            .arg(&sock)
            .arg("--workspace")
            .arg(&workspace)
            .args(["--sandbox", &sandbox])
            .kill_on_drop(true)
            .spawn()
            .expect("spawn toold");
        let (stream, _) = listener.accept().await.expect("accept");
        let mut conn: Conn<ToolReply, ToolRequest> = accept_handshake(stream, Role::Broker, Role::Tool)
            .await
            .expect("handshake");
        println!("toold sandbox={sandbox}, {N} round trips each after {WARMUP} warm-up calls");

        let exec = || ToolCall::Exec {
            command: "true".into(),
            working_dir: None,
            timeout_secs: 10,
            egress: None,
        };
        let read = || ToolCall::ReadFile { path: "4k.txt".into() };
        let mut id = 0;
        for _ in 0..WARMUP {
            id += 1;
            round_trip(&mut conn, id, exec()).await;
            id += 1;
            round_trip(&mut conn, id, read()).await;
        }
        let mut exec_times = Vec::with_capacity(N);
        let mut direct_times = Vec::with_capacity(N);
        for _ in 0..N {
            id += 1;
            exec_times.push(round_trip(&mut conn, id, exec()).await);
            let t = Instant::now();
            let status = std::process::Command::new("/bin/sh")
                .args(["-c", "true"])
                .status()
                .expect("sh");
            direct_times.push(t.elapsed());
            assert!(status.success());
        }
        let mut read_times = Vec::with_capacity(N);
        for _ in 0..N {
            id += 1;
            read_times.push(round_trip(&mut conn, id, read()).await);
        }
        let direct = stats("spawn /bin/sh -c true (direct, no jail)", direct_times);
        let exec = stats("exec true via toold", exec_times);
        stats("read_file 4 KiB via toold", read_times);
        println!(
            "exec p50 / direct p50 = {:.2}x",
            exec.as_secs_f64() / direct.as_secs_f64()
        );
        drop(conn);
        let _ = toold.wait().await;
    });
}
